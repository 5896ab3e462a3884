"""The quality keys travel from the config to the fit (and bad values name the key)."""

from __future__ import annotations

import pytest
from requests import fit_request

from transfer.data.config import AugmentConfig
from transfer.errors import UserError
from transfer.training.config import HeadConfig, SchedulerConfig, TrainerConfig


def test_quality_keys_reach_the_train_config(tmp_path):
    req = fit_request(
        tmp_path,
        "trainer.patience=3",
        "trainer.monitor=val/loss",
        "head.class_weights=balanced",
        "augment.mixup=0.2",
        "augment.cutmix=1.0",
        "scheduler.warmup_epochs=0.25",
    )
    t = req.cfg
    assert (t.trainer.monitor, t.trainer.patience, t.trainer.select_fraction, t.trainer.select_on) == (
        "val/loss",
        3,
        0.2,
        "inner",
    )
    assert t.head.class_weights == "balanced" and (t.augment.mixup, t.augment.cutmix) == (0.2, 1.0)
    assert t.scheduler.warmup_epochs == 0.25
    lightning = t.trainer.lightning_args()
    assert not {"patience", "monitor", "select_fraction", "select_on", "compile"} & set(lightning)  # not Trainer args
    assert req.presets["partial"].lp_init and req.presets["full"].lp_init and not req.presets["scratch"].lp_init


def test_defaults_are_the_good_ones(tmp_path):
    t = fit_request(tmp_path).cfg
    assert (t.trainer.monitor, t.trainer.patience, t.head.class_weights) == ("none", 10, "auto")
    assert t.scheduler.warmup_epochs == 0.1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainerConfig(patience=-1), "trainer.patience=-1: must be >= 0"),
        (lambda: TrainerConfig(monitor="val/f1"), "trainer.monitor='val/f1': choose one of val/acc, val/loss, none"),
        (lambda: TrainerConfig(select_fraction=1.0), "trainer.select_fraction=1.0: must be in (0, 1)"),
        (
            lambda: HeadConfig(class_weights="inverse"),
            "head.class_weights='inverse': choose one of auto, none, balanced",
        ),
        (lambda: AugmentConfig(mixup=-0.2), "augment.mixup=-0.2: must be >= 0"),
        (lambda: SchedulerConfig(warmup_epochs=1.5), "scheduler.warmup_epochs=1.5: an integer epoch count"),
    ],
)
def test_bad_values_name_the_key(make, message):
    """Each group's dataclass checks its own fields: the library and the command line get the same line."""
    import re

    with pytest.raises(UserError, match=re.escape(message)):
        make()

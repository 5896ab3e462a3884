"""The quality keys travel from the config to the fit (and bad values name the key)."""

from __future__ import annotations

import pytest
from requests import fit_request

from transfer.app.schema import validate
from transfer.errors import UserError


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
    t = req.train
    assert (t.selection.monitor, t.selection.patience, t.selection.fraction, t.select_on) == (
        "val/loss",
        3,
        0.2,
        "inner",
    )
    assert t.class_weights == "balanced" and (t.mix.mixup, t.mix.cutmix) == (0.2, 1.0)
    assert t.scheduler.warmup_epochs == 0.25
    assert not {"patience", "monitor", "select_fraction", "select_on"} & set(t.trainer)  # not Trainer arguments
    assert req.presets["partial"].lp_init and req.presets["full"].lp_init and not req.presets["scratch"].lp_init


def test_defaults_are_the_good_ones(tmp_path):
    t = fit_request(tmp_path).train
    assert (t.selection.monitor, t.selection.patience, t.class_weights) == ("val/acc", 10, "auto")
    assert t.scheduler.warmup_epochs == 0.1


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"trainer": {"patience": -1}}, "trainer.patience=-1: must be >= 0"),
        ({"trainer": {"monitor": "val/f1"}}, "trainer.monitor='val/f1': choose one of val/acc, val/loss, none"),
        ({"trainer": {"select_fraction": 1.0}}, "trainer.select_fraction=1.0: must be between 0 and 1"),
        ({"head": {"class_weights": "inverse"}}, "head.class_weights='inverse': choose one of auto, none, balanced"),
        ({"augment": {"mixup": -0.2}}, "augment.mixup=-0.2: must be >= 0"),
        ({"scheduler": {"warmup_epochs": 1.5}}, "scheduler.warmup_epochs=1.5: an integer epoch count"),
    ],
)
def test_bad_values_name_the_key(cfg, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        validate(cfg)

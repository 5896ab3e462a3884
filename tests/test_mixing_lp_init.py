"""Mixup / cutmix in the fine-tuning step (soft targets), LP-FT (fine-tuning starts from the probe's head), and the
warmup given as a fraction of the epochs."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from configs import train_config
from features_helpers import lenet
from torch import nn

import transfer.training.lp_init as lp_init
import transfer.training.module as module_mod
from transfer.data.config import AugmentConfig
from transfer.data.task import load_digits_task
from transfer.features import FeatureConfig
from transfer.training.config import Regime, SchedulerConfig, TrainConfig
from transfer.training.fit import RunOptions, fit_classifier
from transfer.training.mixing import BatchMixer
from transfer.training.module import TransferModule
from transfer.training.optim import lr_factor, warmup_epochs

PARTIAL = Regime("partial", frozen_stages=1)


class _Body(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)  # B x 12


def test_mixup_step_trains_on_soft_targets(monkeypatch):
    seen = {}
    real = module_mod.soft_cross_entropy

    def spy(logits, target, weight=None):
        seen["target"] = target
        return real(logits, target, weight)

    monkeypatch.setattr(module_mod, "soft_cross_entropy", spy)
    torch.manual_seed(0)
    cfg = train_config(label_smoothing=0.1, augment=AugmentConfig(mixup=0.4))
    module = TransferModule(_Body(), nn.Linear(12, 3), 3, PARTIAL, cfg)
    x, y = torch.randn(5, 3, 2, 2), torch.tensor([0, 1, 2, 1, 0])  # odd batch: the last image is not mixed
    np.random.seed(0)
    module.train()
    loss, _, _ = module.model_step((x, y))
    target = seen["target"]
    assert target.shape == (5, 3)
    torch.testing.assert_close(target.sum(1), torch.ones(5))
    assert float(target[:4].max()) < 0.9  # mixed and smoothed: no row is one-hot
    torch.testing.assert_close(target[4], torch.tensor([1 - 0.1 + 0.1 / 3, 0.1 / 3, 0.1 / 3]))
    np.random.seed(0)
    mixed, expected = BatchMixer(AugmentConfig(mixup=0.4), 3, 0.1)(x, y)
    torch.testing.assert_close(target, expected)
    torch.testing.assert_close(loss, real(module(mixed), expected))
    seen.clear()
    module.eval()
    loss, _, _ = module.model_step((x, y))  # no mixing outside training
    assert "target" not in seen
    torch.testing.assert_close(loss, F.cross_entropy(module(x), y, label_smoothing=0.1))


def test_cached_features_are_never_mixed():
    cfg = train_config(augment=AugmentConfig(mixup=0.4, cutmix=1.0))
    module = TransferModule(None, nn.Linear(12, 3), 3, Regime("frozen"), cfg)
    assert module.mixer is None


def _digits():
    task = load_digits_task([0, 1, 2], 10, lenet().preprocessing)
    train_idx, test_idx = task.split(0)
    return task.images.subset(train_idx), task.images.subset(test_idx)


class _StartHead(pl.Callback):
    def on_train_start(self, trainer, module) -> None:
        self.state = {k: v.detach().cpu().clone() for k, v in module.head.state_dict().items()}


def _cfg(tmp_path, **kw) -> TrainConfig:
    kw.setdefault("epochs", 1)
    kw.setdefault("augment", AugmentConfig(mirror=False, crop="none"))
    features = FeatureConfig(cache_dir=str(tmp_path), progress=False, views=1)
    return train_config(lr=0.02, batch_size=8, accelerator="cpu", features=features, **kw)


@pytest.mark.slow
def test_lp_init_starts_fine_tuning_from_the_probes_head(tmp_path, monkeypatch):
    probed = {}
    engine = lp_init.train_head

    def recording_probe(head, *args, **kwargs):
        result = engine(head, *args, **kwargs)
        probed.update({k: v.detach().cpu().clone() for k, v in head.state_dict().items()})
        return result

    monkeypatch.setattr(lp_init, "train_head", recording_probe)  # LP-FT's call into the head engine
    train, test = _digits()
    start = _StartHead()
    torch.manual_seed(0)
    head = nn.Linear(84, 3)
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    cfg = _cfg(tmp_path, solver="sgd")  # an epoch-trained probe: 5 epochs
    regime = Regime("partial", frozen_stages=1, lp_init=True)
    run = RunOptions(callbacks=[start], lp_epochs=5)
    fit_classifier(lenet(), head, regime, train, test, cfg, quiet=True, run=run)
    assert probed, "the probe did not run"
    for k in initial:
        torch.testing.assert_close(start.state[k], probed[k])
        assert not torch.equal(start.state[k], initial[k])


def test_a_tiny_fit_with_mixup_and_cutmix_runs(tmp_path):
    train, test = _digits()
    cfg = _cfg(tmp_path, augment=AugmentConfig(mixup=0.4, cutmix=1.0), epochs=2)
    out = fit_classifier(lenet(), nn.Linear(84, 3), PARTIAL, train, test, cfg, quiet=True)
    assert out.val_probs.shape == (len(test), 3)
    assert out.selected_by.startswith("last epoch of the schedule")  # 10 images per class: too few to choose


def test_warmup_as_a_fraction_of_the_epochs():
    spec = SchedulerConfig("cosine", warmup_epochs=0.1)
    assert warmup_epochs(spec, 60) == 6 and warmup_epochs(spec, 10) == 1 and warmup_epochs(spec, 3) == 1
    assert warmup_epochs(SchedulerConfig(warmup_epochs=4), 60) == 4
    assert lr_factor(spec, 5, 60) == pytest.approx(6 / 7)  # the last warmup epoch
    assert lr_factor(spec, 6, 60) == pytest.approx(1.0)  # the cosine starts at the full rate

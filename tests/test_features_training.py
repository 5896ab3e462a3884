"""Heads trained on the cache: the same accuracy as through the frozen backbone; reruns and sweeps hit the cache."""

from __future__ import annotations

import logging
import re

import pytest
import pytorch_lightning as pl
import torch
from configs import train_config
from features_helpers import lenet
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transfer.data.augment import AugmentConfig, build_eval_transform
from transfer.data.task import load_digits_task
from transfer.errors import UserError
from transfer.features import FeatureConfig
from transfer.model.classifier import Classifier
from transfer.training.config import Regime, TrainConfig
from transfer.training.fit import RunOptions, fit_classifier, make_trainer, predict_probs
from transfer.training.module import TransferModule
from transfer.training.regimes import apply_regime

FROZEN = Regime("frozen", frozen_stages=None, body_lr_factor=0.0)


def _task():
    task = load_digits_task([0, 1, 2], 10, lenet().preprocessing)
    train_idx, test_idx = task.split(0)
    return task.images.subset(train_idx), task.images.subset(test_idx)


ONCE = RunOptions(validate_each_epoch=False)


def _cfg(tmp_path, augment: AugmentConfig | None = None, **features) -> TrainConfig:
    return train_config(
        epochs=8,
        lr=0.02,
        batch_size=8,
        monitor="none",  # every image trains, the last epoch is kept: what the naive loop does
        solver="sgd",  # the naive loop is SGD epochs: the head engine must match it exactly
        accelerator="cpu",
        augment=augment or AugmentConfig(),
        features=FeatureConfig(cache_dir=str(tmp_path / "cache"), progress=False, **{"views": 1, **features}),
    )


def _head() -> nn.Module:
    torch.manual_seed(1)
    return nn.Linear(84, 3)


def _accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs.argmax(1) == labels).float().mean())


def test_head_on_cache_matches_head_through_the_frozen_backbone(tmp_path):
    train, test = _task()
    cfg = _cfg(tmp_path)
    cached = fit_classifier(lenet(), _head(), FROZEN, train, test, cfg, run=ONCE)

    # the naive way: the frozen backbone runs in the training loop on every batch of every epoch
    pl.seed_everything(0, verbose=False)
    body, head = lenet(), _head()
    apply_regime(body, FROZEN)
    tf = build_eval_transform(body.preprocessing)
    loader = DataLoader(
        TensorDataset(tf(train.pixels), train.labels),
        batch_size=8,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    module = TransferModule(body, head, 3, FROZEN, cfg)
    make_trainer({"max_epochs": 8, "accelerator": "cpu"}, None, quiet=True).fit(module, loader)
    test_loader = DataLoader(TensorDataset(tf(test.pixels), test.labels), batch_size=64)
    naive = predict_probs(Classifier(body, head), test_loader, torch.device("cpu"))

    acc_cached, acc_naive = _accuracy(cached.val_probs, test.labels), _accuracy(naive, test.labels)
    assert acc_cached > 0.5  # the head learned something
    assert abs(acc_cached - acc_naive) <= 0.01
    torch.testing.assert_close(cached.classifier.head.weight, head.weight, rtol=1e-3, atol=1e-4)


def test_second_fit_hits_the_cache(tmp_path, caplog):
    train, test = _task()
    caplog.set_level(logging.INFO, logger="transfer")
    for _ in range(2):
        cfg = _cfg(tmp_path, AugmentConfig(mirror=True), views="flip")
        fit_classifier(lenet(), _head(), FROZEN, train, test, cfg, run=ONCE)
    hits = [r.getMessage() for r in caplog.records if "feature cache hit" in r.getMessage()]
    assert f"feature cache hit: {2 * len(train)} of {2 * len(train)} image-views" in hits  # train: 2 views
    assert f"feature cache hit: {len(test)} of {len(test)} image-views" in hits


def test_fit_refuses_an_earlier_stage_with_a_pointer_to_the_probe(tmp_path):
    train, test = _task()
    with pytest.raises(UserError, match=r"features.stage=c5: .*command=features"):
        fit_classifier(lenet(), _head(), FROZEN, train, test, _cfg(tmp_path, stage="c5"), run=ONCE)


@pytest.mark.slow
def test_hydra_sweep_over_heads_extracts_once(tmp_path, run_cli):
    cache = tmp_path / "fc"
    weights = tmp_path / "lenet.safetensors"  # fixed weights: random ones would differ per job (and rightly miss)
    save_file(lenet(3).state_dict(), str(weights))
    r = run_cli(
        "-m",
        "head.lr=0.001,0.01",
        "source=null",
        f"backbone.weights={weights}",
        "study.regimes=null",
        "study.seeds=null",
        "study.probe_stages=null",  # the stage probe's own extractions would be counted too
        "data.shots=5",
        "trainer.max_epochs=2",
        f"features.cache_dir={cache}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    extracted = re.findall(r"feature cache: 0 of (\d+) image-views cached, extracted (\d+)", out)
    hits = re.findall(r"feature cache hit: (\d+) of (\d+) image-views", out)
    assert len(extracted) == 2, out[-3000:]  # job 0: train and test sets extracted once
    job1 = out[out.index("#1 :") :]
    assert "extracted" not in job1 and len(re.findall("feature cache hit", job1)) >= 2  # job 1: served from the cache
    assert all(a == b for a, b in hits) and {n for n, _ in extracted} <= {n for n, _ in hits}


def test_disabled_cache_trains_the_same_and_writes_nothing(tmp_path):
    train, test = _task()
    on = fit_classifier(lenet(), _head(), FROZEN, train, test, _cfg(tmp_path), run=ONCE)
    off_cfg = _cfg(tmp_path / "off", enabled=False)
    off = fit_classifier(lenet(), _head(), FROZEN, train, test, off_cfg, run=ONCE)
    assert not (tmp_path / "off").exists()
    torch.testing.assert_close(on.val_probs, off.val_probs)

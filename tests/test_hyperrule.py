"""scheduler=hyperrule: BiT's fine-tune length from the number of training images, steps turned into epochs."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
from configs import train_config
from features_helpers import lenet
from torch import nn

from transfer.data.config import AugmentConfig
from transfer.data.task import load_digits_task
from transfer.training.config import Regime, SchedulerConfig, TrainerConfig
from transfer.training.fit import RunOptions, fit_classifier
from transfer.training.hyperrule import apply_hyperrule, global_batch, hyperrule


def test_the_recipe_comments_arithmetic():
    rule = hyperrule(240, 32, 0.001)
    got = (rule.steps, rule.warmup_steps, rule.steps_per_epoch, rule.epochs, rule.warmup_epochs)
    assert got == (500, 100, 8, 63, 13)
    assert rule.lr == pytest.approx(0.001)
    assert rule.describe() == (
        "hyperrule: 240 training images (< 20,000) -> 500 steps, 100 warmup; 8 steps an epoch at batch 32 -> "
        "63 epochs, 13 warmup; lr 0.001 x 32/32 = 0.001"
    )


def test_bits_table_and_linear_rate_scaling():
    assert (hyperrule(19_999, 512, 0.003).steps, hyperrule(20_000, 512, 0.003).steps) == (500, 10_000)
    assert hyperrule(499_999, 512, 0.003).warmup_steps == 500 and hyperrule(500_000, 512, 0.003).steps == 20_000
    big = hyperrule(50_000, 256, 0.001)
    assert (big.steps_per_epoch, big.epochs, big.warmup_epochs) == (196, 52, 3)  # ceil(50000/256), ceil(10000/196)
    assert big.lr == pytest.approx(0.008)  # 256 images a step: 8x the rate set for 32
    assert hyperrule(10, 32, 0.01).epochs == 500  # one step an epoch
    with pytest.raises(ValueError):
        hyperrule(0, 32, 0.01)


def test_global_batch_counts_devices_nodes_and_accumulation():
    assert global_batch(32, TrainerConfig()) == 32
    assert global_batch(32, TrainerConfig(devices=4, num_nodes=2, accumulate_grad_batches=2)) == 512
    assert global_batch(32, TrainerConfig(devices="auto")) == 32


def test_other_schedulers_are_left_alone():
    cfg = train_config(epochs=7, scheduler=SchedulerConfig("cosine", warmup_epochs=0.1))
    assert apply_hyperrule(cfg, 240) == (cfg, None)
    rule = train_config(lr=0.002, batch_size=64, scheduler=SchedulerConfig("hyperrule"))
    rule_cfg, line = apply_hyperrule(rule, 240)
    got = (rule_cfg.trainer.max_epochs, rule_cfg.head.lr, rule_cfg.scheduler.name, rule_cfg.scheduler.warmup_epochs)
    assert got == (
        125,  # ceil(240/64) = 4 steps an epoch, 500 steps
        0.004,
        "cosine",
        25,
    )
    assert line.startswith("hyperrule: 240 training images")


class _Epochs(pl.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_a_hyperrule_fine_tune_runs_bits_steps_as_epochs(monkeypatch):
    monkeypatch.setattr("transfer.training.hyperrule.BIT_TABLE", ((math.inf, 40, 10),))  # 500 steps take minutes
    task = load_digits_task([0, 1, 2], 100, lenet().preprocessing)  # 300 labelled images
    train = task.images.subset(task.split(0)[0])
    assert len(train) == 300
    rec = _Epochs()
    cfg = train_config(
        lr=0.01,
        batch_size=32,  # 10 steps an epoch: 40 steps are 4 epochs, the 10 warmup steps 1
        scheduler=SchedulerConfig("hyperrule", reference_batch=8),
        monitor="none",
        accelerator="cpu",
        augment=AugmentConfig(crop="none"),
    )
    expect = hyperrule(300, 32, 0.01, reference_batch=8)
    assert (expect.epochs, expect.warmup_epochs) == (4, 1)
    out = fit_classifier(
        lenet(), nn.Linear(84, 3), Regime("full", frozen_stages=0), train, None, cfg, run=RunOptions(callbacks=[rec])
    )
    assert len(rec.lrs) == expect.epochs
    assert max(rec.lrs) == pytest.approx(0.04, rel=1e-6)  # 0.01 x 32/8, reached when the warmup ends
    assert rec.lrs.index(max(rec.lrs)) == expect.warmup_epochs
    assert out.selected_by.endswith(f"schedule {expect.describe()}")

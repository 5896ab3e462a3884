"""The best epoch, not the last: the head engine and the Lightning fit return the weights of the epoch that scored
best on the selection split, and stop `patience` epochs after it."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from configs import train_config
from features_helpers import lenet
from torch import nn

from transfer.data.config import AugmentConfig
from transfer.data.task import load_digits_task
from transfer.training.config import Regime, SchedulerConfig, TrainConfig, TrainerConfig
from transfer.training.fit import RunOptions, fit_classifier, selection_split
from transfer.training.head_sgd import fit_heads, predict_heads
from transfer.training.selection import inner_split


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=gen) * 0.3 + torch.stack([y * 2.0 - 1.0, torch.zeros(n)], 1)  # class on dim 0
    return x, y


def _good_head() -> nn.Linear:
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]))
        head.bias.zero_()
    return head


def test_head_engine_keeps_the_best_epoch_and_stops_after_patience():
    # the selection split is right, the training labels are flipped (label noise at 100%): every epoch makes the
    # head worse on the selection split, so the best epoch is an early one and the last is the worst
    x, y = _blobs(64, 0)
    sx, sy = _blobs(40, 1)
    how = train_config(
        epochs=30,
        batch_size=16,
        weight_decay=0.0,
        scheduler=SchedulerConfig("constant"),
        monitor="val/acc",
        patience=3,
    )
    fit = fit_heads([_good_head()], [0.5], x, 1 - y, how, select_features=sx, select_labels=sy)
    accs = [row["select/acc"] for row in fit.history]
    best = fit.best_epochs[0]
    assert accs[-1] < max(accs)  # the task really peaks early
    assert best == accs.index(max(accs))
    assert len(fit.history) == best + 4  # stopped 3 epochs after the best one
    kept = predict_heads(fit.heads, sx)[0]
    assert float((kept.argmax(1) == sy).float().mean()) == max(accs)


def test_head_engine_without_selection_keeps_the_last_epoch():
    x, y = _blobs(64, 0)
    how = train_config(epochs=5, batch_size=16, monitor="val/acc", patience=1)
    fit = fit_heads([_good_head()], [0.5], x, 1 - y, how)
    assert len(fit.history) == 5 and fit.best_epochs == [None]


def test_inner_split_is_stratified_seeded_and_leaves_single_images_in_training():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2])
    fit, sel = inner_split(labels, 0.2, seed=3)
    assert sorted(fit + sel) == list(range(16))
    assert torch.bincount(labels[sel], minlength=3).tolist() == [2, 1, 0]
    assert inner_split(labels, 0.2, seed=3) == (fit, sel)
    assert inner_split(labels, 0.2, seed=4) != (fit, sel)


def _digits():
    task = load_digits_task([0, 1, 2], 10, lenet().preprocessing)
    train_idx, test_idx = task.split(0)
    return task.images.subset(train_idx), task.images.subset(test_idx)


def test_study_eval_split_never_chooses_the_epoch():
    task = load_digits_task([0, 1, 2], 30, lenet().preprocessing)  # 6 images per class in the inner split
    train_idx, test_idx = task.split(0)
    train, test = task.images.subset(train_idx), task.images.subset(test_idx)
    assert selection_split(train, test, TrainConfig())[1] is None  # the default: every image trains, the last epoch
    fit_part, select, where = selection_split(train, test, TrainConfig(trainer=TrainerConfig(monitor="val/acc")))
    assert where == "20% of train (inner split)"
    assert len(fit_part) + len(select) == len(train) and set(select.names) <= set(train.names)
    assert not set(select.names) & set(test.names)
    assert selection_split(train, test, TrainConfig(trainer=TrainerConfig(monitor="none")))[1] is None


class _Record(pl.Callback):
    def __init__(self) -> None:
        self.acc: list[float] = []

    def on_validation_epoch_end(self, trainer, module) -> None:
        self.acc.append(float(trainer.callback_metrics["val/acc"]))


@pytest.mark.slow
def test_lightning_fit_returns_the_best_epochs_weights(tmp_path):
    # a classifier trained on the true labels, then fine-tuned on permuted ones (label noise at 100%) and validated
    # on the true ones: val/acc falls epoch after epoch, so the best epoch is the first and the last is worse
    train, val = _digits()
    val = val.subset(list(range(30)))
    aug = AugmentConfig(mirror=False, crop="none")
    base = {"batch_size": 8, "scheduler": SchedulerConfig("constant"), "select_on": "val", "augment": aug}
    torch.manual_seed(0)
    body, head, full = lenet(), nn.Linear(84, 3), Regime("full", frozen_stages=0, body_lr_factor=1.0)
    fit_classifier(
        body,
        head,
        full,
        train,
        val,
        train_config(epochs=6, lr=0.05, monitor="none", accelerator="cpu", **base),
        quiet=True,
    )
    noisy = train.subset(list(range(len(train))))
    noisy.labels = (noisy.labels + 1) % 3
    rec = _Record()
    cfg = train_config(epochs=8, lr=0.01, monitor="val/acc", patience=2, accelerator="cpu", **base)
    out = fit_classifier(body, head, full, noisy, val, cfg, quiet=True, run=RunOptions(callbacks=[rec]))
    assert rec.acc[-1] < max(rec.acc)
    assert out.best_epoch == rec.acc.index(max(rec.acc))
    assert len(rec.acc) == out.best_epoch + 3  # early stopping, patience 2
    returned = float((out.val_probs.argmax(1) == val.labels).float().mean())
    assert abs(returned - max(rec.acc)) < 1e-6
    assert out.selected_by == "val/acc on val, patience 2"


def test_too_few_images_per_class_keep_the_last_epoch_and_say_why():
    train, test = _digits()  # 10 per class: an inner split would hold 2 of each
    fit_part, select, where = selection_split(train, test, TrainConfig(trainer=TrainerConfig(monitor="val/acc")))
    assert select is None and len(fit_part) == len(train)
    assert where.startswith("last epoch of the schedule: an inner split would hold 2 image(s)")

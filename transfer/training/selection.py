"""Which epoch a fit keeps: the best on a selection split (never the split that is reported), with early stopping.

A fit reports its accuracy on `val`; choosing the epoch on that same split would report an optimistic number. So the
epoch is chosen on a split of the training images (stratified, `fraction` of each class, at least one image per class
with two or more), unless the caller hands a separate selection split. `monitor=none` keeps the last epoch.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from transfer.training.config import TrainerConfig

# Fewer images of a class than this in the selection split and the epoch is the schedule's last: on 2 images per
# class val/acc moves in steps of 50% and stops "improving" in the first epochs (measured on digits: 10-shot
# fine-tuning fell from 0.89 to 0.71 when 2 images per class chose the epoch).
MIN_SELECT_PER_CLASS = 5


def inner_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (fit, select): per class round(fraction x n) images (at least 1) go to `select`; a class with a single
    image stays in `fit` alone. Seeded: the same labels and seed give the same split."""
    gen = torch.Generator().manual_seed(seed)
    fit: list[int] = []
    select: list[int] = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)].tolist()
        n_sel = 0 if len(idx) < 2 else min(max(1, round(fraction * len(idx))), len(idx) - 1)
        select += idx[:n_sel]
        fit += idx[n_sel:]
    return sorted(fit), sorted(select)


class BestEpoch:
    """Keeps a copy of a module's state at its best epoch and says when `patience` epochs passed without a better one
    (strictly better: a tie keeps the earlier epoch, as Lightning's ModelCheckpoint and EarlyStopping do)."""

    def __init__(self, module: nn.Module, trainer: TrainerConfig) -> None:
        self.module, self.trainer = module, trainer
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict | None = None

    def update(self, epoch: int, metrics: dict) -> None:
        value = float(metrics[self.trainer.monitor])
        better = self.best_value is None or (
            value < self.best_value if self.trainer.monitor_mode == "min" else value > self.best_value
        )
        if better:
            self.best_value, self.best_epoch = value, epoch
            self.best_state = copy.deepcopy(self.module.state_dict())

    def should_stop(self, epoch: int) -> bool:
        p = self.trainer.patience
        return bool(p) and self.best_epoch is not None and epoch - self.best_epoch >= p

    def restore(self) -> None:
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)

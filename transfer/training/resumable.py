"""What makes a fine-tune killed at any epoch and resumed (`resume=true`) end exactly where an uninterrupted one does.

A Lightning checkpoint restores weights, optimiser, schedule, loop counters and callback state, but not random
streams: a restarted process would shuffle, augment and drop out differently from epoch k on. So every epoch starts
its streams from (seed, epoch) (`EpochSeeds`): Python's, NumPy's and torch's global generators, the training order
and each image's augmentation (data/samplers.EpochShuffle) or the on-device batches (data/device_batches.py).
`EpochCheckpoint` writes the full state at the end of every epoch, after the epoch selection's own checkpoint, and
deletes the previous file only once the new one is written, so a kill mid-write still leaves a complete one.
A single run's CSV log (the curves) is started over by Lightning's logger on resume: `earlier_log` reads it first
and `restore_earlier_log` puts the epochs before the resume point back in front.
"""

from __future__ import annotations

import csv
import random
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from transfer.atomic import crash_point
from transfer.data.samplers import epoch_seed
from transfer.eval.scoring import write_rows_csv

LOG = Path("logs") / "metrics.csv"
BEST = "best.ckpt"  # the epoch selection's weights-only checkpoint (training/fit.py), not a state to resume from


class EpochSeeds(pl.Callback):
    """Reseed every random stream at the start of each training epoch from (seed, epoch); `targets` (objects with
    `set_epoch`, e.g. the ImageDataModule) are told the epoch too."""

    def __init__(self, seed: int, targets: list | None = None) -> None:
        self.seed = int(seed)
        self.targets = list(targets or [])

    def _set_epoch(self, epoch: int) -> None:
        for target in self.targets:
            target.set_epoch(epoch)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning creates the first epoch's loader (workers start fetching) before it calls set_epoch: after a
        # resume that first epoch is not 0, so the sampler must know it now
        self._set_epoch(trainer.fit_loop.epoch_progress.current.processed)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        seed_streams(epoch_seed(self.seed, epoch))
        self._set_epoch(epoch)


def seed_streams(seed: int) -> None:
    """Python's, NumPy's and torch's global generators from `seed`: the CPU generator, and every CUDA device's once
    CUDA is initialised (a model training there has initialised it). `torch.manual_seed` would also queue a CUDA
    seeding before that, recording a stack trace each time: 1.5 ms an epoch, a tenth of a digits fine-tune's epoch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


class EpochCheckpoint(ModelCheckpoint):
    """The whole training state at the end of an epoch in `dirpath` (`epoch=E-step=S.ckpt`, the newest one kept).

    After the first epoch, a checkpoint is written only once the training since the last one took at least
    `COST_RATIO` times what that checkpoint cost to write (and at least `MIN_INTERVAL_S`): on a fine-tune whose epochs
    take milliseconds (the digits study) a checkpoint per epoch was a tenth of the run; on one whose epochs take
    minutes it is still every epoch. A resume continues from the newest one; every epoch's random draws come from
    (seed, epoch) (`EpochSeeds`), so the result is the same whichever epoch that is."""

    COST_RATIO = 20.0
    MIN_INTERVAL_S = 2.0

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__(
            dirpath=str(dirpath),
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
        self._last_saved: float | None = None
        self._interval_s = 0.0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.perf_counter()
        if self._last_saved is not None and now - self._last_saved < self._interval_s:
            return
        super().on_train_epoch_end(trainer, pl_module)
        self._last_saved = time.perf_counter()
        self._interval_s = max(self.MIN_INTERVAL_S, self.COST_RATIO * (self._last_saved - now))
        crash_point("training.epoch_checkpoint")


def quiet_resume_warnings(resuming: bool) -> None:
    """Lightning warns that a run's checkpoint folder is not empty (it holds key.json, or the checkpoint resumed
    from) and, on a resume, that the CSV log will be started over (restore_earlier_log puts its earlier rows back)."""
    warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
    if resuming:
        warnings.filterwarnings("ignore", "Experiment logs directory .* exists and is not empty")


def earlier_log(out_dir: str | Path) -> list[dict]:
    """The rows of a run's CSV log (Lightning's CSVLogger deletes the file when a resumed fit starts logging)."""
    path = Path(out_dir) / LOG
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def restore_earlier_log(out_dir: str | Path, earlier: list[dict]) -> None:
    """The resumed fit's log, preceded by the earlier rows of the epochs it did not run again."""
    rows = earlier_log(out_dir)
    first = min((float(r["epoch"]) for r in rows if r.get("epoch")), default=float("inf"))
    kept = [r for r in earlier if r.get("epoch") and float(r["epoch"]) < first]
    if kept:
        write_rows_csv(kept + rows, Path(out_dir) / LOG)


def _loadable(ckpt: Path) -> bool:
    """torch.save writes a zip: a checkpoint cut off mid-write has no central directory and fails to open."""
    try:
        with zipfile.ZipFile(ckpt) as z:
            return bool(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def resume_checkpoint(ckpt_dir: str | Path | None) -> str | None:
    """The newest complete epoch checkpoint in `ckpt_dir` (a run's `.checkpoints` folder), for
    `trainer.fit(..., ckpt_path=...)`; None when there is none (train from the start). A truncated file is skipped."""
    if ckpt_dir is None:
        return None
    ckpts = [p for p in Path(ckpt_dir).glob("*.ckpt") if p.is_file() and p.name != BEST]
    for ckpt in sorted(ckpts, key=lambda p: p.stat().st_mtime, reverse=True):
        if _loadable(ckpt):
            return str(ckpt)
    return None

"""`scheduler=hyperrule`: a fine-tune's length and rate from the data size, with nothing to tune (BiT's HyperRule).

Kolesnikov et al. 2020 (Big Transfer) fix the schedule of every downstream fine-tune by the number of training
images: below 20k images 500 steps (the first 100 a linear warmup), below 500k 10k steps (500 warmup), else 20k
steps (500 warmup), at a rate of 0.003 for 512 images a step, scaled linearly for other batch sizes (the BiT
colab's `0.003 * batch / 512`; Goyal et al. 2017). Here the steps become epochs (this toolkit steps its schedule
once per epoch), the decay after the warmup is the cosine the other schedules use instead of BiT's three x0.1 steps,
and the rate is `head.lr` at `scheduler.reference_batch` images a step (32 by default), scaled to the global batch
(`data.batch_size` x devices x nodes x trainer.accumulate_grad_batches). Only the fine-tuning regimes use it: the
frozen head is fit to convergence.

Arithmetic for 240 training images at batch 32: 240 < 20,000 -> 500 steps, 100 of them warmup; ceil(240 / 32) = 8
steps an epoch -> ceil(500 / 8) = 63 epochs, ceil(100 / 8) = 13 of them warmup; the rate is head.lr x 32 / 32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from transfer.training.config import TrainConfig, TrainerConfig

# (fewer training images than, steps, warmup steps): BiT's bit_hyperrule.get_schedule
BIT_TABLE = ((20_000, 500, 100), (500_000, 10_000, 500), (math.inf, 20_000, 500))


@dataclass(frozen=True)
class HyperRule:
    """The schedule one fine-tune runs, and the arithmetic behind it."""

    n_train: int
    global_batch: int
    steps: int
    warmup_steps: int
    epochs: int
    warmup_epochs: int
    lr: float
    base_lr: float
    reference_batch: int

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.global_batch)

    def describe(self) -> str:
        """One line a user can check by hand."""
        bound = next(b for b, s, _ in BIT_TABLE if s == self.steps)
        size = f"< {bound:,}" if math.isfinite(bound) else ">= 500,000"
        return (
            f"hyperrule: {self.n_train} training images ({size}) -> {self.steps} steps, {self.warmup_steps} warmup; "
            f"{self.steps_per_epoch} steps an epoch at batch {self.global_batch} -> {self.epochs} epochs, "
            f"{self.warmup_epochs} warmup; lr {self.base_lr:g} x {self.global_batch}/{self.reference_batch} = "
            f"{self.lr:g}"
        )


def hyperrule(n_train: int, global_batch: int, base_lr: float, reference_batch: int = 32) -> HyperRule:
    """BiT's steps for `n_train` images, as epochs at `global_batch` images a step, and the linearly scaled rate."""
    if n_train < 1 or global_batch < 1 or reference_batch < 1:
        raise ValueError(f"hyperrule needs n_train, global_batch, reference_batch >= 1 ({n_train}, {global_batch})")
    steps, warmup = next((s, w) for bound, s, w in BIT_TABLE if n_train < bound)
    per_epoch = math.ceil(n_train / global_batch)
    return HyperRule(
        n_train=n_train,
        global_batch=global_batch,
        steps=steps,
        warmup_steps=warmup,
        epochs=math.ceil(steps / per_epoch),
        warmup_epochs=math.ceil(warmup / per_epoch),
        lr=base_lr * global_batch / reference_batch,
        base_lr=base_lr,
        reference_batch=reference_batch,
    )


def global_batch(batch_size: int, trainer: TrainerConfig) -> int:
    """Images per optimiser step: batch x devices x nodes x accumulated batches (`devices: -1`: every visible GPU)."""
    devices = trainer.devices
    if devices == -1 and trainer.accelerator in ("gpu", "cuda"):
        import torch

        devices = torch.cuda.device_count()
    per_node = devices if isinstance(devices, int) and devices > 0 else 1
    return batch_size * per_node * int(trainer.num_nodes or 1) * int(trainer.accumulate_grad_batches or 1)


def apply_hyperrule(cfg: TrainConfig, n_train: int) -> tuple[TrainConfig, str | None]:
    """`cfg` with BiT's length, warmup and rate for `n_train` images when its scheduler is hyperrule (else as is),
    and the arithmetic as one line (None when it does not apply)."""
    if cfg.scheduler.name != "hyperrule":
        return cfg, None
    rule = hyperrule(
        n_train, global_batch(cfg.data.batch_size, cfg.trainer), cfg.head.lr, cfg.scheduler.reference_batch
    )
    return (
        replace(
            cfg,
            trainer=replace(cfg.trainer, max_epochs=rule.epochs),
            head=replace(cfg.head, lr=rule.lr),
            scheduler=replace(cfg.scheduler, name="cosine", warmup_epochs=rule.warmup_epochs),
        ),
        rule.describe(),
    )

"""The settings a fit reads, one dataclass per config group (`regime.*`, `head.*`, `optimizer.*`, `scheduler.*`,
`trainer.*`), and `TrainConfig`, the part of the config tree below the study.

Torch-free, so that every mistake is reported before torch loads. Each dataclass checks its own fields in
`__post_init__`; Hydra's structured schema is these classes (app/schema.py extends the tree), so YAML, `--cfg job`,
the library call and the error messages read one definition. A new knob is one field here and the code that reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from transfer.data.config import AugmentConfig, DataConfig
from transfer.errors import (
    UserError,
    check_at_least,
    check_choice,
    check_fraction,
    check_positive,
    whole_number,
)
from transfer.features.config import FeatureConfig

MISSING = "???"
NORMS = ("eval", "train", "adapt", "auto")
CLASS_WEIGHTS = ("auto", "none", "balanced")
SOLVERS = ("lbfgs", "sgd")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "constant", "step", "hyperrule")
MONITORS = ("val/acc", "val/loss", "none")
SELECT_ON = ("inner", "val")
PRECISIONS = (
    "auto", "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "transformer-engine",
)  # fmt: skip
OWN_TRAINER_KEYS = ("monitor", "patience", "select_fraction", "select_on", "compile")  # not pl.Trainer arguments


@dataclass
class Regime:
    """How much of the body trains (conf/regime/*.yaml are the presets): frozen_stages None = all frozen (the
    frozen regime), k = the first k stages frozen (partial), 0 = nothing frozen (full, scratch).

    norm (BatchNorm statistics, training/norm_policy.py): eval keeps the pretrained ones (safe with small batches),
    train updates them every batch (from scratch), adapt re-estimates them once on the training images (AdaBN),
    auto measures how far the images' statistics are from the pretrained ones and picks eval or adapt. Frozen layers
    are always in eval mode.
    """

    name: str = MISSING
    frozen_stages: int | None = None
    body_lr_factor: float = 0.1  # trainable body stages learn at head.lr x this
    stage_lr_decay: float = 1.0  # stage i of n gets body_lr_factor * decay ** (n - 1 - i)
    norm: str = "eval"
    pretrained: bool = True  # false: the body starts from random weights (scratch)
    lp_init: bool = False  # LP-FT: start fine-tuning from a linear probe of the head on frozen features (lp_init.py)

    def __post_init__(self) -> None:
        check_choice("regime.norm", self.norm, NORMS)
        check_at_least("regime.body_lr_factor", self.body_lr_factor, 0)
        check_at_least("regime.stage_lr_decay", self.stage_lr_decay, 0)
        check_at_least("regime.frozen_stages", self.frozen_stages, 0)

    @property
    def body_frozen(self) -> bool:
        return self.frozen_stages is None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HeadConfig:
    name: str = "softmax"  # a registered head (softmax, mlp, or your @register_head)
    lr: float = 1e-3  # the head's rate; body stages learn at this x regime.body_lr_factor
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    class_weights: str = "auto"  # auto (balanced above a 3:1 class ratio) | none | balanced
    lp_init: bool = True  # LP-FT where the regime allows it (partial/full): off everywhere with head.lp_init=false
    solver: str = "lbfgs"  # heads on cached features: lbfgs (a linear head: converged, L2 by CV) | sgd (epochs)
    l2_grid: list[float] | None = None  # lbfgs: the L2 strengths cross-validated (null: 10 from 1e-6 to 10)
    max_iter: int = 1000  # lbfgs: L-BFGS iterations of the refit (it stops earlier at its tolerance)
    params: dict[str, Any] = field(default_factory=dict)  # passed to the head factory, e.g. {hidden: 256}

    def __post_init__(self) -> None:
        check_positive("head.lr", self.lr, "a learning rate")
        check_at_least("head.weight_decay", self.weight_decay, 0)
        check_fraction("head.label_smoothing", self.label_smoothing, low_open=False)
        check_choice("head.class_weights", self.class_weights, CLASS_WEIGHTS)
        check_choice("head.solver", self.solver, SOLVERS)
        check_at_least("head.max_iter", self.max_iter, 1)
        if self.l2_grid is not None and (not self.l2_grid or not all(v > 0 for v in self.l2_grid)):
            raise UserError(f"head.l2_grid={list(self.l2_grid)}: positive L2 strengths, e.g. [1e-4, 1e-2, 1].")

    def spec(self) -> dict:
        """What create_head receives and the model dir records: {"name": ..., **params}."""
        return {"name": self.name, **dict(self.params or {})}


@dataclass
class OptimizerConfig:
    name: str = "adamw"  # adamw | sgd; the rate and decay are head.lr / head.weight_decay
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw

    def __post_init__(self) -> None:
        check_choice("optimizer.name", self.name, OPTIMIZERS)
        check_at_least("optimizer.momentum", self.momentum, 0)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"optimizer.betas={list(self.betas)}: two numbers in [0, 1).")


@dataclass
class SchedulerConfig:
    name: str = "cosine"  # cosine (after a linear warmup) | constant | step | hyperrule (BiT: length from data size)
    warmup_epochs: float = 0  # an epoch count, or a fraction in (0, 1) of trainer.max_epochs (0.1 of 60 -> 6)
    step_size: int = 10  # step: multiply the rate by gamma every step_size epochs
    gamma: float = 0.1
    reference_batch: int = 32  # hyperrule: head.lr is the rate at this many images a step, scaled linearly

    def __post_init__(self) -> None:
        check_choice("scheduler.name", self.name, SCHEDULERS)
        check_at_least("scheduler.warmup_epochs", self.warmup_epochs, 0)
        if self.warmup_epochs >= 1 and self.warmup_epochs != int(self.warmup_epochs):
            raise UserError(
                f"scheduler.warmup_epochs={self.warmup_epochs}: an integer epoch count, or a fraction of "
                "trainer.max_epochs in (0, 1)."
            )
        check_at_least("scheduler.step_size", self.step_size, 1)
        check_fraction("scheduler.gamma", self.gamma, high_open=False)
        check_at_least("scheduler.reference_batch", self.reference_batch, 1)


@dataclass
class TrainerConfig:
    """pytorch_lightning.Trainer arguments (None: Lightning's default), and which epoch a fit keeps."""

    max_epochs: int = 10
    # the epoch kept: none = the schedule's last, every image trained on (the default: on a few hundred images
    # a held-out fifth chose noisy epochs and cost 2-5 points, docs/benchmarks.md) | val/acc | val/loss on a
    # split of train
    monitor: str = "none"
    patience: int = 10  # stop after this many epochs without a better monitor; 0: run every epoch
    select_fraction: float = 0.2  # of each class's training images, held out to choose the epoch
    select_on: str = "inner"  # inner: that split of train | val: the val split (when it is not what is reported)
    accelerator: str = "auto"
    devices: Any = 1  # a count >= 1, -1 (every GPU), auto, or a list of device indices
    strategy: str = "auto"
    precision: str = "auto"  # bf16-mixed on GPUs with bf16, 16-mixed on older GPUs, 32-true on the CPU
    num_nodes: int = 1
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    deterministic: bool | None = None
    limit_train_batches: float | None = None
    max_steps: int | None = None  # stop after this many optimiser steps (None: the epochs decide)
    max_time: Any = None  # stop a fine-tune after this long: "00:00:10:00" (DD:HH:MM:SS) or {minutes: 10}
    log_every_n_steps: int | None = None
    benchmark: bool | None = None  # cudnn.benchmark (None: on for CUDA unless deterministic, see device_setup.py)
    compile: bool | None = None  # torch.compile the model for partial/full fine-tunes (not a pl.Trainer argument)

    def __post_init__(self) -> None:
        check_at_least("trainer.max_epochs", self.max_epochs, 1)
        check_choice("trainer.monitor", self.monitor, MONITORS)
        check_at_least("trainer.patience", self.patience, 0)
        check_fraction("trainer.select_fraction", self.select_fraction)
        check_choice("trainer.select_on", self.select_on, SELECT_ON)
        check_choice("trainer.precision", self.precision, PRECISIONS)
        check_at_least("trainer.num_nodes", self.num_nodes, 1)
        check_at_least("trainer.accumulate_grad_batches", self.accumulate_grad_batches, 1)
        devices = self.devices
        if not (str(devices) == "auto" or isinstance(devices, list | tuple)):
            n = whole_number(devices)
            if n is None or (n < 1 and n != -1):
                raise UserError(
                    f"trainer.devices={devices!r}: give a count >= 1, -1 (every GPU), auto, or a list of device "
                    "indices; on the CPU leave it at 1."
                )

    def lightning_args(self) -> dict:
        """pl.Trainer keyword arguments: every field but this toolkit's own, None left to Lightning's default."""
        return {k: v for k, v in asdict(self).items() if k not in OWN_TRAINER_KEYS and v is not None}

    @property
    def selects(self) -> bool:
        """Whether a fit keeps its best epoch (on a selection split) rather than its last."""
        return self.monitor != "none"

    @property
    def monitor_mode(self) -> str:
        return "min" if self.monitor.endswith("loss") else "max"

    def describe_selection(self, where: str) -> str:
        """E.g. 'val/acc on 20% of train (inner split), patience 10'."""
        if not self.selects:
            return "last epoch"
        stop = f"patience {self.patience}" if self.patience else "no early stopping"
        return f"{self.monitor} on {where}, {stop}"


@dataclass
class TrainConfig:
    """The config tree's groups that training reads (the study's FitConfig and the app's Config extend it)."""

    seed: int = 0
    resume: bool = False  # fit: continue a killed run in the same run dir (hydra.run.dir=<dir>)
    data: DataConfig = field(default_factory=DataConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)

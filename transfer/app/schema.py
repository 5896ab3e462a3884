"""The one place configs are checked: a typed schema for every group (Hydra structured configs, so a wrong type or an
unknown key fails while composing) and the ranges and choices of every value (`validate`). Below `app/` nothing
re-checks a key: parts receive plain, valid values."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from transfer.errors import UserError


@dataclass
class BackboneConf:
    name: str = MISSING
    pretrained: bool = False
    weights: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConf:
    kind: str = "folder"  # folder | digits
    root: str | None = None
    val_fraction: float = 0.2
    ram_budget_mb: float | None = 4096.0
    strict: bool = False
    batch_size: int = 32
    num_workers: Any = 0  # an integer >= 0, or auto (one per core but one on a GPU, 0 on the CPU)
    classes: list[int] | None = None  # digits
    shots: int | None = None  # digits


@dataclass
class RegimeConf:
    name: str = MISSING
    frozen_stages: int | None = None
    body_lr_factor: float = 0.1
    stage_lr_decay: float = 1.0
    norm: str = "eval"
    pretrained: bool = True
    lp_init: bool = False  # LP-FT: fine-tuning starts from a linear probe of the head (partial / full presets: true)


@dataclass
class HeadConf:
    name: str = "softmax"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    class_weights: str = "auto"  # auto (balanced above a 3:1 class ratio) | none | balanced
    lp_init: bool = True  # LP-FT where the regime allows it (partial/full): off everywhere with head.lp_init=false
    solver: str = "lbfgs"  # heads on cached features: lbfgs (a linear head: converged, L2 by CV) | sgd (epochs)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConf:
    name: str = "adamw"  # adamw | sgd
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw


@dataclass
class SchedulerConf:
    name: str = "cosine"  # cosine (after a linear warmup) | constant | step | hyperrule (BiT: length from data size)
    warmup_epochs: float = 0  # epochs, or a fraction in (0, 1) of trainer.max_epochs
    step_size: int = 10  # step: multiply the rate by gamma every step_size epochs
    gamma: float = 0.1
    reference_batch: int = 32  # hyperrule: head.lr is the rate at this batch size; others scale it linearly


@dataclass
class TrainerConf:
    """pytorch_lightning.Trainer arguments; the ones a user of this toolkit sets (None: Lightning's default)."""

    max_epochs: int = 10
    monitor: str = "val/acc"  # the epoch kept: best val/acc | val/loss on a split of train, or none (the last)
    patience: int = 10  # stop after this many epochs without a better monitor; 0: run every epoch
    select_fraction: float = 0.2  # of each class's training images, held out to choose the epoch
    select_on: str = "inner"  # inner: that split of train | val: the val split (when it is not what is reported)
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    precision: str = "auto"
    num_nodes: int = 1
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    deterministic: bool | None = None
    limit_train_batches: float | None = None
    log_every_n_steps: int | None = None
    benchmark: bool | None = None  # cudnn.benchmark (None: on for CUDA unless deterministic, see device_setup.py)
    compile: bool | None = None  # torch.compile the model for partial/full fine-tunes (not a pl.Trainer argument)


@dataclass
class AugmentConf:
    mirror: bool = False
    crop: str = "none"  # none | random | resized
    crop_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    rotation: float = 0.0
    shear: float = 0.0
    color_jitter: float = 0.0
    hue: float = 0.0
    pca_noise: float = 0.0
    mixup: float = 0.0  # partial / full: mixup Beta alpha (0: off), through timm.data.Mixup
    cutmix: float = 0.0  # partial / full: cutmix Beta alpha (0: off); both on: half the batches each


@dataclass
class FeaturesConf:
    enabled: bool = True
    cache_dir: str | None = None
    dtype: str = "float32"
    views: Any = "auto"  # auto | 1 | flip | 10crop | K
    stage: str | None = None
    batch_size: int = 64
    chunk: int = 512
    progress: bool = True
    probe: bool = False
    probe_lrs: list[float] | None = None


@dataclass
class StudyConf:
    regimes: list[str] | None = None
    seeds: list[int] | None = None
    probe_stages: list[str] | None = None


@dataclass
class SourceConf:
    classes: list[int] = MISSING
    max_epochs: int = 15
    lr: float = 3e-3
    batch_size: int = 64


@dataclass
class AutoConf:
    budget_s: float | None = None  # regime=auto: seconds for the evidence (null: 120 on a CPU, 600 on a GPU)


@dataclass
class ReportConf:
    cv_folds: int = 5  # no test/ folder: the headline cross-validates the chosen regime over all images (0: off)
    probe_baseline: bool = True  # the frozen linear probe scored on the headline's images, beside it (false: skip)


@dataclass
class LearningCurveConf:
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])


@dataclass
class PreviewConf:
    rows: int = 6
    views: int = 7


@dataclass
class LrFindConf:
    min_lr: float = 1e-6
    max_lr: float = 1.0
    num_training: int = 100


@dataclass
class Config:
    command: str = "fit"
    seed: int = 0
    resume: bool = False  # fit: continue a killed run in the same run dir (hydra.run.dir=<dir>)
    backbone: BackboneConf = field(default_factory=BackboneConf)
    data: DataConf = field(default_factory=DataConf)
    regime: RegimeConf = field(default_factory=RegimeConf)
    head: HeadConf = field(default_factory=HeadConf)
    optimizer: OptimizerConf = field(default_factory=OptimizerConf)
    scheduler: SchedulerConf = field(default_factory=SchedulerConf)
    trainer: TrainerConf = field(default_factory=TrainerConf)
    augment: AugmentConf = field(default_factory=AugmentConf)
    features: FeaturesConf = field(default_factory=FeaturesConf)
    study: StudyConf = field(default_factory=StudyConf)
    auto: AutoConf = field(default_factory=AutoConf)
    source: SourceConf | None = None
    model: Any = None  # predict / evaluate / export: a model dir, or a list of them (an ensemble)
    images: str | None = None
    tta: str = "center"
    calibrate: bool = False  # predict: divide logits by the model dir's fitted temperature (calibration.json)
    format: str = "onnx"  # export: onnx | torchscript
    preview: PreviewConf = field(default_factory=PreviewConf)
    report: ReportConf = field(default_factory=ReportConf)
    learning_curve: LearningCurveConf = field(default_factory=LearningCurveConf)
    lr_find: LrFindConf = field(default_factory=LrFindConf)


def register_schema() -> None:
    """Put the schema in Hydra's ConfigStore as `config_schema` (conf/config.yaml lists it first)."""
    ConfigStore.instance().store(name="config_schema", node=Config)


# --- ranges and choices ---------------------------------------------------------------------------------------------
COMMANDS = (
    "fit",
    "predict",
    "evaluate",
    "export",
    "backbones",
    "features",
    "augment-preview",
    "learning-curve",
    "lr-find",
)
CHOICES = {
    "command": COMMANDS,
    "data.kind": ("folder", "digits"),
    "regime.norm": ("eval", "train"),
    "head.class_weights": ("auto", "none", "balanced"),
    "trainer.monitor": ("val/acc", "val/loss", "none"),
    "trainer.select_on": ("inner", "val"),
    "optimizer.name": ("adamw", "sgd"),
    "head.solver": ("lbfgs", "sgd"),
    "scheduler.name": ("cosine", "constant", "step", "hyperrule"),
    "augment.crop": ("none", "random", "resized"),
    "features.dtype": ("float32", "float16"),
    "tta": ("center", "flip", "10crop"),
    "format": ("onnx", "torchscript"),
    "trainer.precision": (
        "auto",
        "32-true",
        "32",
        "16-mixed",
        "bf16-mixed",
        "16-true",
        "bf16-true",
        "64-true",
        "transformer-engine",
    ),
}
POSITIVE = ("head.lr", "source.lr", "auto.budget_s", "lr_find.min_lr", "lr_find.max_lr")  # > 0
AT_LEAST_ONE = (
    "trainer.max_epochs",
    "trainer.num_nodes",
    "trainer.accumulate_grad_batches",
    "data.batch_size",
    "features.batch_size",
    "features.chunk",
    "source.max_epochs",
    "source.batch_size",
    "preview.rows",
    "preview.views",
    "scheduler.step_size",
    "scheduler.reference_batch",
)
NON_NEGATIVE = (
    "head.weight_decay",
    "regime.body_lr_factor",
    "regime.stage_lr_decay",
    "scheduler.warmup_epochs",
    "optimizer.momentum",
    "augment.rotation",
    "augment.shear",
    "augment.color_jitter",
    "augment.hue",
    "augment.pca_noise",
    "regime.frozen_stages",
    "trainer.patience",
    "augment.mixup",
    "augment.cutmix",
    "report.cv_folds",
)
OPEN_FRACTIONS = ("data.val_fraction", "trainer.select_fraction")  # in (0, 1)
HALF_OPEN_FRACTIONS = ("head.label_smoothing", "scheduler.gamma")  # in [0, 1) / (0, 1]


def _get(cfg: dict, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_keys(cfg: dict, node: type = Config, prefix: str = "") -> None:
    """Keys the schema does not know (Hydra's `+key=value` opens the struct flag, so composing alone lets them in)."""
    known = {f.name: f for f in fields(node)}
    for key, value in cfg.items():
        if key == "hydra" and not prefix:
            continue
        if key not in known:
            where = f"{prefix.rstrip('.')}.*" if prefix else "the top level"
            raise UserError(
                f"{prefix}{key}: unknown key; {where} accepts {', '.join(sorted(known))} (check the spelling; "
                "`python -m transfer --help` lists the groups)."
            )
        factory = known[key].default_factory
        if isinstance(value, dict) and isinstance(factory, type) and is_dataclass(factory):
            check_keys(value, factory, f"{prefix}{key}.")
        elif isinstance(value, dict) and key == "source" and not prefix:
            check_keys(value, SourceConf, "source.")


def validate(cfg: dict) -> None:
    """Known keys, ranges and choices of a composed config (a plain dict); the first bad value is a UserError naming
    the key, the value and what is allowed."""
    check_keys(cfg)
    for key, options in CHOICES.items():
        value = _get(cfg, key)
        if value is not None and str(value) not in options:
            raise UserError(f"{key}={value!r}: choose one of {', '.join(options)}.")
    for key in POSITIVE:
        v = _get(cfg, key)
        if v is not None and not v > 0:
            raise UserError(f"{key}={v}: must be > 0 (a learning rate).")
    for key in AT_LEAST_ONE:
        v = _get(cfg, key)
        if v is not None and v < 1:
            raise UserError(f"{key}={v}: must be >= 1.")
    for key in NON_NEGATIVE:
        v = _get(cfg, key)
        if v is not None and v < 0:
            raise UserError(f"{key}={v}: must be >= 0.")
    for key in OPEN_FRACTIONS:
        v = _get(cfg, key)
        if v is not None and not 0 < v < 1:
            raise UserError(f"{key}={v}: must be between 0 and 1 (exclusive).")
    ls, gamma = _get(cfg, "head.label_smoothing"), _get(cfg, "scheduler.gamma")
    if ls is not None and not 0 <= ls < 1:
        raise UserError(f"head.label_smoothing={ls}: must be in [0, 1).")
    if gamma is not None and not 0 < gamma <= 1:
        raise UserError(f"scheduler.gamma={gamma}: must be in (0, 1].")
    warm = _get(cfg, "scheduler.warmup_epochs")
    if warm is not None and warm >= 1 and warm != int(warm):
        raise UserError(
            f"scheduler.warmup_epochs={warm}: an integer epoch count, or a fraction of trainer.max_epochs in (0, 1)."
        )
    scale = _get(cfg, "augment.crop_scale")
    if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1):
        raise UserError(f"augment.crop_scale={list(scale)}: two area fractions 0 < low <= high <= 1.")
    if (_get(cfg, "augment.hue") or 0) > 0.5:
        raise UserError(f"augment.hue={_get(cfg, 'augment.hue')}: must be <= 0.5.")
    if _get(cfg, "report.cv_folds") == 1:
        raise UserError("report.cv_folds=1: one fold cannot cross-validate; use 0 (off) or 2 or more (e.g. 5).")
    fractions = _get(cfg, "learning_curve.fractions")
    if fractions is not None and (not fractions or not all(0 < f <= 1 for f in fractions)):
        raise UserError(
            f"learning_curve.fractions={list(fractions)}: fractions of train/ in (0, 1], e.g. [0.1, 0.25, 0.5, 1.0]."
        )
    views = _get(cfg, "features.views")
    if views is not None and str(views) not in ("auto", "1", "flip", "10crop") and not _is_int_at_least(views, 2):
        raise UserError(f"features.views={views!r}: choose auto, 1, flip, 10crop or an integer K >= 2.")
    workers = _get(cfg, "data.num_workers")
    if workers is not None and str(workers) != "auto" and not _is_int_at_least(workers, 0):
        raise UserError(f"data.num_workers={workers!r}: give a whole number >= 0, or auto.")
    lo, hi, steps = _get(cfg, "lr_find.min_lr"), _get(cfg, "lr_find.max_lr"), _get(cfg, "lr_find.num_training")
    if lo is not None and hi is not None and not lo < hi:
        raise UserError(f"lr_find.min_lr={lo}, lr_find.max_lr={hi}: min_lr must be below max_lr.")
    if steps is not None and steps < 20:
        raise UserError(f"lr_find.num_training={steps}: must be >= 20 (the suggestion skips the first 10 steps).")
    betas = _get(cfg, "optimizer.betas")
    if betas is not None and (len(betas) != 2 or not all(0 <= b < 1 for b in betas)):
        raise UserError(f"optimizer.betas={list(betas)}: two numbers in [0, 1).")


def _is_int_at_least(value: Any, low: int) -> bool:
    try:
        return int(str(value)) >= low
    except ValueError:
        return False

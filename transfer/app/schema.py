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
    num_workers: int = 0
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


@dataclass
class HeadConf:
    name: str = "softmax"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConf:
    name: str = "adamw"  # adamw | sgd
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw


@dataclass
class SchedulerConf:
    name: str = "cosine"  # cosine (after a linear warmup) | constant | step
    warmup_epochs: int = 0
    step_size: int = 10  # step: multiply the rate by gamma every step_size epochs
    gamma: float = 0.1


@dataclass
class TrainerConf:
    """pytorch_lightning.Trainer arguments; the ones a user of this toolkit sets (None: Lightning's default)."""

    max_epochs: int = 10
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_nodes: int = 1
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    deterministic: bool | None = None
    limit_train_batches: float | None = None
    log_every_n_steps: int | None = None


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
    source: SourceConf | None = None
    model: Any = None  # predict / evaluate / export: a model dir, or a list of them (an ensemble)
    images: str | None = None
    tta: str = "center"
    format: str = "onnx"  # export: onnx | torchscript
    preview: PreviewConf = field(default_factory=PreviewConf)
    lr_find: LrFindConf = field(default_factory=LrFindConf)


def register_schema() -> None:
    """Put the schema in Hydra's ConfigStore as `config_schema` (conf/config.yaml lists it first)."""
    ConfigStore.instance().store(name="config_schema", node=Config)


# --- ranges and choices ---------------------------------------------------------------------------------------------
COMMANDS = ("fit", "predict", "evaluate", "export", "backbones", "features", "augment-preview", "lr-find")
CHOICES = {
    "command": COMMANDS,
    "data.kind": ("folder", "digits"),
    "regime.norm": ("eval", "train"),
    "optimizer.name": ("adamw", "sgd"),
    "scheduler.name": ("cosine", "constant", "step"),
    "augment.crop": ("none", "random", "resized"),
    "features.dtype": ("float32", "float16"),
    "tta": ("center", "flip", "10crop"),
    "format": ("onnx", "torchscript"),
    "trainer.precision": (
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
POSITIVE = ("head.lr", "source.lr", "lr_find.min_lr", "lr_find.max_lr")  # > 0
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
)
NON_NEGATIVE = (
    "head.weight_decay",
    "regime.body_lr_factor",
    "regime.stage_lr_decay",
    "data.num_workers",
    "scheduler.warmup_epochs",
    "optimizer.momentum",
    "augment.rotation",
    "augment.shear",
    "augment.color_jitter",
    "augment.hue",
    "augment.pca_noise",
    "regime.frozen_stages",
)
OPEN_FRACTIONS = ("data.val_fraction",)  # in (0, 1)
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
    scale = _get(cfg, "augment.crop_scale")
    if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1):
        raise UserError(f"augment.crop_scale={list(scale)}: two area fractions 0 < low <= high <= 1.")
    if (_get(cfg, "augment.hue") or 0) > 0.5:
        raise UserError(f"augment.hue={_get(cfg, 'augment.hue')}: must be <= 0.5.")
    views = _get(cfg, "features.views")
    if views is not None and str(views) not in ("auto", "1", "flip", "10crop") and not _is_int_at_least(views, 2):
        raise UserError(f"features.views={views!r}: choose auto, 1, flip, 10crop or an integer K >= 2.")
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

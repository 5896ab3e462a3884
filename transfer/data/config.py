"""`data.*` and `augment.*`: where the images come from and how training views of them are drawn.

Torch-free, so that every mistake in them is reported before torch loads. Each dataclass checks its own fields in
`__post_init__`; Hydra's structured schema is these classes (app/schema.py), so YAML, `--cfg job`, the library and
the error messages all read this one definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transfer.errors import UserError, check_at_least, check_choice, check_fraction, whole_number

DATA_KINDS = ("folder", "digits")
CROPS = ("none", "random", "resized")


@dataclass
class DataConfig:
    kind: str = "folder"  # folder: root/<class>/* (or root/train, root/val, root/test) | digits: bundled 8x8 scans
    root: str | None = None  # the image folder (data=folder)
    val_fraction: float = 0.2  # no val/ folder: this seeded, stratified share of each class is held out
    ram_budget_mb: float | None = 4096.0  # decoded pixels above this go to a memory-mapped temp file
    strict: bool = False  # true: stop at the first unreadable file instead of skipping it
    batch_size: int = 32
    num_workers: Any = 0  # a whole number >= 0, or auto (one per core but one on a GPU, 0 on the CPU)
    classes: list[int] | None = None  # digits: the target classes
    shots: int | None = None  # digits: labelled training images per class

    def __post_init__(self) -> None:
        check_choice("data.kind", self.kind, DATA_KINDS)
        if self.kind == "digits" and self.root not in (None, "", "???"):
            raise UserError(
                f"data.root={self.root}: data is the bundled digits here (the default recipe), which would ignore "
                f"this folder; add data=folder, or fit your images with `python -m transfer recipe=cat_detector "
                f"data.root={self.root}`."
            )
        check_fraction("data.val_fraction", self.val_fraction)
        check_at_least("data.batch_size", self.batch_size, 1)
        if str(self.num_workers) != "auto" and (whole_number(self.num_workers) is None or self.num_workers < 0):
            raise UserError(f"data.num_workers={self.num_workers!r}: give a whole number >= 0, or auto.")


@dataclass
class AugmentConfig:
    """Per-image views (CPU transforms and the GPU batch path read the same fields) and batch mixing."""

    mirror: bool = False  # random horizontal flip (AlexNet's reflections)
    crop: str = "none"  # none (centre) | random (AlexNet's translations) | resized (Inception's area + aspect)
    crop_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])  # RandomResizedCrop area range
    rotation: float = 0.0  # degrees, +-
    shear: float = 0.0  # degrees, +-
    color_jitter: float = 0.0  # brightness/contrast/saturation strength
    hue: float = 0.0  # hue shift, a fraction of the colour wheel (<= 0.5)
    pca_noise: float = 0.0  # AlexNet's lighting noise std (0.1 in Krizhevsky et al. 2012), PCA of your pixels
    mixup: float = 0.0  # partial / full: mixup Beta alpha (timm.data.Mixup; 0.2-0.8 usual), 0: off
    cutmix: float = 0.0  # partial / full: cutmix Beta alpha (1.0 usual), 0: off; both on: half the batches each

    def __post_init__(self) -> None:
        check_choice("augment.crop", self.crop, CROPS)
        scale = list(self.crop_scale)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise UserError(f"augment.crop_scale={scale}: two area fractions 0 < low <= high <= 1, e.g. [0.35, 1.0].")
        for key in ("rotation", "shear", "color_jitter", "hue", "pca_noise", "mixup", "cutmix"):
            check_at_least(f"augment.{key}", getattr(self, key), 0)
        if self.hue > 0.5:
            raise UserError(f"augment.hue={self.hue}: must be <= 0.5.")

    @property
    def mixes(self) -> bool:
        """Whether fine-tuning mixes pairs of images (mixup or cutmix)."""
        return self.mixup > 0 or self.cutmix > 0

"""The whole config tree as Hydra's structured schema: the study's FitConfig (itself the dataclasses of every layer
below, each checking its own fields) plus what the other commands read. Composing fails early on a wrong type or an
unknown key; `OmegaConf.to_object` then builds the dataclasses, running each one's checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transfer.errors import UserError, check_at_least, check_choice
from transfer.studies.config import FitConfig, check_backbones

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
    "label-issues",
    "suggest",
    "rank-backbones",
)
TTA = ("center", "flip", "10crop")
FORMATS = ("onnx", "torchscript")
SUGGEST_MEASURES = ("margin", "entropy", "none")  # eval/suggest.py's MEASURES (that module loads numpy)


@dataclass
class PreviewConfig:
    """command=augment-preview: a grid of augmented training views."""

    rows: int = 6  # images (spread over the classes)
    views: int = 7  # augmented views per image, after the unaugmented one

    def __post_init__(self) -> None:
        check_at_least("preview.rows", self.rows, 1)
        check_at_least("preview.views", self.views, 1)


@dataclass
class SuggestConfig:
    """command=suggest: how unlabelled images are ranked (eval/suggest.py, measured by bench/suggest.py)."""

    measure: str = "margin"  # margin | entropy | none (none: diversity alone, k-center greedy)
    diversity: float = 1.0  # exponent of the distance to the nearest labelled-or-chosen image (0: uncertainty alone)

    def __post_init__(self) -> None:
        check_choice("suggest.measure", self.measure, SUGGEST_MEASURES)
        if not self.diversity >= 0 or self.diversity == float("inf"):
            raise UserError(f"suggest.diversity={self.diversity}: must be a finite number >= 0 (1: the default).")


@dataclass
class Config(FitConfig):
    command: str = "fit"
    model: Any = None  # predict / evaluate / export: a model dir, or a list of them (an ensemble)
    images: str | None = None  # predict: an image file or a folder of images
    tta: str = "center"  # center | flip | 10crop (AlexNet's four corners + centre, and their mirrors)
    calibrate: bool = False  # predict: divide logits by the model dir's fitted temperature (calibration.json)
    format: str = "onnx"  # export: onnx | torchscript
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    n: int = 50  # suggest: how many unlabelled images to suggest labelling next
    suggest: SuggestConfig = field(default_factory=SuggestConfig)

    def __post_init__(self) -> None:
        check_choice("command", self.command, COMMANDS)
        check_choice("tta", self.tta, TTA)
        check_choice("format", self.format, FORMATS)
        check_at_least("n", self.n, 1, "images to suggest")
        check_backbones(self.backbones)


def register_schema() -> None:
    """Put the schema in Hydra's ConfigStore as `config_schema` (conf/config.yaml lists it first)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="config_schema", node=Config)

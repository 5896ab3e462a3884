"""The study's settings (`study.*`, `source.*`, `auto.*`, `report.*`, `learning_curve.*`, `lr_find.*`) and
`FitConfig`, the whole tree a fit reads: TrainConfig's groups (what training reads) plus the backbone, the regime and
the study's own groups. Torch-free; each dataclass checks its own fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transfer.backbones.config import BackboneConfig
from transfer.errors import UserError, check_at_least, check_positive
from transfer.training.config import Regime, TrainConfig


@dataclass
class StudyConfig:
    regimes: list[str] | None = None  # null: just `regime`; names compare them (e.g. [frozen, partial, full, scratch])
    seeds: list[int] | None = None  # null: [seed]; a list repeats every regime per seed and reports mean +- std
    probe_stages: list[str] | None = None  # e.g. [pooled, c5]: frozen features of these stages, a linear probe each


@dataclass
class SourceConfig:
    """Pretrain the body on a source task first (data=digits: the digits recipe); its model dir becomes the weights."""

    classes: list[int] = field(default_factory=list)
    max_epochs: int = 15
    lr: float = 3e-3
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not self.classes:
            raise UserError("source.classes: give the source task's classes, e.g. source.classes=[0,1,2,3,4].")
        check_at_least("source.max_epochs", self.max_epochs, 1)
        check_positive("source.lr", self.lr, "a learning rate")
        check_at_least("source.batch_size", self.batch_size, 1)


@dataclass
class AutoConfig:
    budget_s: float | None = None  # regime=auto: seconds for the evidence (null: 120 on a CPU, 600 on a GPU)

    def __post_init__(self) -> None:
        check_positive("auto.budget_s", self.budget_s, "seconds")


@dataclass
class ReportConfig:
    cv_folds: int = 5  # no test/ folder: the headline cross-validates the chosen regime over all images (0: off)
    probe_baseline: bool = True  # the frozen linear probe scored on the headline's images, beside it (false: skip)

    def __post_init__(self) -> None:
        check_at_least("report.cv_folds", self.cv_folds, 0)
        if self.cv_folds == 1:
            raise UserError("report.cv_folds=1: one fold cannot cross-validate; use 0 (off) or 2 or more (e.g. 5).")


@dataclass
class LearningCurveConfig:
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])  # of train/, nested

    def __post_init__(self) -> None:
        if not self.fractions or not all(0 < f <= 1 for f in self.fractions):
            raise UserError(
                f"learning_curve.fractions={list(self.fractions)}: fractions of train/ in (0, 1], e.g. "
                "[0.1, 0.25, 0.5, 1.0]."
            )


@dataclass
class LrFindConfig:
    """command=lr-find: the rate grows exponentially from min_lr to max_lr, one optimiser step per batch."""

    min_lr: float = 1e-6
    max_lr: float = 1.0
    num_training: int = 100  # optimiser steps (>= 20: the suggestion skips the first 10)

    def __post_init__(self) -> None:
        check_positive("lr_find.min_lr", self.min_lr, "a learning rate")
        check_positive("lr_find.max_lr", self.max_lr, "a learning rate")
        if not self.min_lr < self.max_lr:
            raise UserError(f"lr_find.min_lr={self.min_lr}, lr_find.max_lr={self.max_lr}: min_lr must be below max_lr.")
        if self.num_training < 20:
            raise UserError(
                f"lr_find.num_training={self.num_training}: must be >= 20 (the suggestion skips the first 10)."
            )


@dataclass
class RankConfig:
    """command=rank-backbones and backbone.name=auto: how the candidates in `backbones` are scored."""

    prefilter_above: int = 4  # more candidates than this: LogME ranks them first and only the best `keep` are probed
    keep: int = 4  # candidates the cross-validated probe scores after the LogME pre-filter

    def __post_init__(self) -> None:
        check_at_least("rank.prefilter_above", self.prefilter_above, 1)
        check_at_least("rank.keep", self.keep, 1)


CANDIDATE_KEYS = ("name", "pretrained", "weights", "kwargs")  # BackboneConfig's fields
AUTO_BACKBONE = "auto"  # backbone.name=auto: a fit ranks `backbones` (rank_backbones.py), then trains the winner


def check_backbones(backbones: list | None) -> None:
    """`backbones=[...]`, the candidates of command=rank-backbones and backbone.name=auto: a non-empty list of names
    (`resnet50`, `resnet50.a1_in1k`: pretrained weights) or backbone.* dicts (`{name: x, weights: FILE}`)."""
    if backbones is None:
        return
    if not list(backbones):
        raise UserError(
            "backbones=[]: no candidates; list two or more, e.g. backbones=[resnet18,resnet50] or "
            "backbones=[{name:NAME,weights:FILE.safetensors},resnet18]."
        )
    for i, entry in enumerate(backbones):
        if isinstance(entry, str) and entry.strip():
            continue
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip():
            unknown = sorted(set(entry) - set(CANDIDATE_KEYS))
            if unknown:
                raise UserError(
                    f"backbones[{i}]: unknown key(s) {', '.join(unknown)}; a candidate accepts "
                    f"{', '.join(CANDIDATE_KEYS)} (as backbone.*)."
                )
            continue
        raise UserError(
            f"backbones[{i}]={entry!r}: a candidate is a backbone name (resnet50) or a dict with a name "
            "({name:NAME,weights:FILE})."
        )


def candidate_config(entry: str | dict) -> BackboneConfig:
    """One `backbones` entry as backbone.*: a name asks for its pretrained weights; a dict sets the fields it names."""
    if isinstance(entry, str):
        return BackboneConfig(name=entry.strip(), pretrained=True)
    d = dict(entry)
    return BackboneConfig(
        name=str(d["name"]).strip(),
        pretrained=bool(d.get("pretrained", not d.get("weights"))),
        weights=None if d.get("weights") in (None, "") else str(d["weights"]),
        kwargs=dict(d.get("kwargs") or {}),
    )


@dataclass
class FitConfig(TrainConfig):
    """Everything a fit reads. `python -m transfer` builds it from YAML through Hydra; `transfer.fit` directly."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    regime: Regime = field(default_factory=Regime)
    study: StudyConfig = field(default_factory=StudyConfig)
    source: SourceConfig | None = None
    auto: AutoConfig = field(default_factory=AutoConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    learning_curve: LearningCurveConfig = field(default_factory=LearningCurveConfig)
    lr_find: LrFindConfig = field(default_factory=LrFindConfig)
    backbones: list[Any] | None = None  # rank-backbones / backbone.name=auto: the candidates (check_backbones)
    rank: RankConfig = field(default_factory=RankConfig)

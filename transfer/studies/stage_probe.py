"""Which layers transfer: frozen features from several stages, each scored by a linear probe per seed.

Yosinski et al. 2014 found lower layers more general and top layers more specific to the source task; this puts
numbers on it for the user's own source model and target data. Features come from the disk cache (one extraction
per stage), heads from the head engine's converged L-BFGS linear probe (L2 by cross-validation on the training images).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace

import torch

from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.errors import UserError
from transfer.features.cache import FeatureCache
from transfer.features.tap import stage_choices
from transfer.training.config import Regime, TrainConfig
from transfer.training.head_engine import predict_head, train_head


def check_stages(backbone: Backbone, stages: list[str]) -> None:
    """Fail before any training if a stage is neither a stage of `backbone` nor one of its module names."""
    choices = stage_choices(backbone)
    modules = dict(backbone.named_modules())
    for stage in stages:
        if stage not in choices and not (stage and stage in modules):
            raise UserError(
                f"study.probe_stages: backbone {backbone.name!r} has no stage {stage!r}; choose from "
                f"{', '.join(choices)} (or a module name from its named_modules())."
            )


def probe_stages(
    make_backbone: Callable[[Regime], Backbone],
    frozen: Regime,
    stages: list[str],
    images: LabelledImages,
    split: Callable[[int], tuple[list[int], list[int]]],
    seeds: list[int],
    cfg: TrainConfig,
) -> dict[str, dict]:
    """Per stage: held-out accuracy (mean, std, per seed) of the converged linear probe on frozen features."""
    features_cfg = replace(cfg.features, progress=False)
    labels = images.labels
    runs: dict[str, list[float]] = {stage: [] for stage in stages}
    widths: dict[str, int] = {}
    for seed in seeds:
        train_idx, eval_idx = split(seed)
        torch.manual_seed(seed)  # a body without weights is random: the same per seed as the study's frozen regime
        body = make_backbone(frozen)  # one body per seed, tapped at every stage
        for stage in stages:
            feats = FeatureCache(body, replace(features_cfg, stage=stage)).features(images, ["center"])  # N x 1 x D
            widths[stage] = int(feats.shape[-1])
            head = torch.nn.Linear(widths[stage], len(images.classes))
            seeded = replace(cfg, seed=seed)
            train_head(head, feats[train_idx], labels[train_idx], seeded, solver="lbfgs", class_names=images.classes)
            preds = predict_head(head, feats[eval_idx][:, 0]).argmax(1)
            runs[stage].append(float((preds == labels[eval_idx]).float().mean()))
    out = {
        stage: {
            "accuracy_mean": statistics.fmean(accs),
            "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "accuracy_runs": accs,
            "width": widths[stage],
        }
        for stage, accs in runs.items()
    }
    return out

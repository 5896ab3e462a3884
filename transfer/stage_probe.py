"""Which layers transfer: frozen features from several stages, each scored by a linear probe per seed.

Yosinski et al. 2014 found lower layers more general and top layers more specific to the source task; this puts
numbers on it for the user's own source model and target data. Features come from the disk cache (one extraction
per stage), heads from `train_head_grid` (a linear head on N x 1 x D features, one pass per epoch).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace

import torch

from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.errors import UserError
from transfer.features import FeatureCache, FeatureConfig
from transfer.features.grid import train_head_grid
from transfer.features.tap import stage_choices
from transfer.regimes import Regime
from transfer.training import TrainConfig

FROZEN = Regime("frozen", frozen_stages=None, body_lr_factor=0.0)


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
    stages: list[str],
    images: LabelledImages,
    split: Callable[[int], tuple[list[int], list[int]]],
    seeds: list[int],
    train_cfg: TrainConfig,
) -> dict[str, dict]:
    """Per stage: held-out accuracy (mean, std, per seed) of a linear head at `train_cfg.lr` on frozen features."""
    features_cfg = replace(train_cfg.features or FeatureConfig(), progress=False)
    labels = images.labels
    out: dict[str, dict] = {}
    before = torch.get_num_threads()
    for stage in stages:
        accs, width = [], 0
        for seed in seeds:
            train_idx, eval_idx = split(seed)
            torch.manual_seed(seed)
            cache = FeatureCache(make_backbone(FROZEN), replace(features_cfg, stage=stage))
            feats = cache.features(images, ["center"])  # N x 1 x D; a hit after the first seed
            width = int(feats.shape[-1])
            torch.set_num_threads(1)  # a tiny head: more threads only spin
            try:
                acc = train_head_grid(
                    feats[train_idx],
                    labels[train_idx],
                    feats[eval_idx][:, 0],
                    labels[eval_idx],
                    [train_cfg.lr],
                    epochs=train_cfg.max_epochs,
                    batch_size=train_cfg.batch_size,
                    weight_decay=train_cfg.weight_decay,
                    seed=seed,
                )[0]
            finally:
                torch.set_num_threads(before)
            accs.append(acc)
        out[stage] = {
            "accuracy_mean": statistics.fmean(accs),
            "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "accuracy_runs": accs,
            "width": width,
        }
    return out

"""LP-FT (Kumar et al. 2022, "Fine-tuning can distort pretrained features"): before fine-tuning, fit the head as a
linear probe on the body's frozen features, then fine-tune from that head. A random head sends large, random gradients
into the pretrained body in the first epochs and distorts its features; a probed head starts near a good solution,
so fine-tuning only refines. `regime.lp_init` turns it on (the partial and full presets do).

The probe reads the body's penultimate features of the centre view through the FeatureCache (extracted once, so a
rerun or another seed of the same body finds them on disk) and trains with the head engine.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch
from torch import nn

from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.features.cache import FeatureCache
from transfer.training.config import TrainConfig
from transfer.training.head_engine import HeadResult, train_head

log = logging.getLogger(__name__)

LP_EPOCHS = 30  # an epoch-trained probe head (head.solver=sgd, an MLP) on cached features: a few dozen epochs


def probe_head(
    backbone: Backbone,
    head: nn.Module,
    train: LabelledImages,
    select: LabelledImages | None,
    cfg: TrainConfig,
    device: torch.device,
    epochs: int = LP_EPOCHS,
) -> HeadResult:
    """Fit `head` in place as a probe on `backbone`'s frozen penultimate features of `train` (centre view), through
    the head engine (the converged L-BFGS probe for a linear head); `select` picks an epoch-trained head's epoch.
    The body is only read (eval mode, no gradients)."""
    cache = FeatureCache(backbone, replace(cfg.features, stage=None, progress=False), device)
    feats = cache.features(train, ["center"])  # N x 1 x D
    sel = cache.features(select, ["center"])[:, 0] if select is not None and len(select) else None  # N_sel x D
    log.info("LP-FT: the head starts as a linear probe on %d frozen %d-d features", len(feats), feats.shape[-1])
    chosen = (sel, select.labels) if sel is not None and select is not None else None
    return train_head(head, feats, train.labels, cfg, select=chosen, device=device, epochs=epochs)

"""LP-FT (Kumar et al. 2022, "Fine-tuning can distort pretrained features"): before fine-tuning, fit the head as a
linear probe on the body's frozen features, then fine-tune from that head. A random head sends large, random gradients
into the pretrained body in the first epochs and distorts its features; a probed head starts near a good solution,
so fine-tuning only refines. `regime.lp_init` turns it on (the partial and full presets do).

The probe reads the body's penultimate features of the centre view through the FeatureCache (extracted once, so a
rerun or another seed of the same body finds them on disk) and trains with the head engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.features import FeatureCache, FeatureConfig
from transfer.training.head_engine import HeadTraining, fit_heads
from transfer.training.probe import fit_linear_probe

log = logging.getLogger(__name__)

# probe(head, lr, features N x 1 x D, labels, how, select features N_sel x D | None, select labels | None, device):
# trains `head` in place on the frozen features; returns the epoch kept (None: the last, or not epoch-based).
_Opt = torch.Tensor | None
_T = torch.Tensor
ProbeFitter = Callable[[nn.Module, float, _T, _T, HeadTraining, _Opt, _Opt, torch.device], "int | None"]

LP_EPOCHS = 30  # a linear head on cached features converges in a few dozen epochs (seconds on a CPU)


def sgd_probe(
    head: nn.Module,
    lr: float,
    features: torch.Tensor,
    labels: torch.Tensor,
    how: HeadTraining,
    select_features: torch.Tensor | None,
    select_labels: torch.Tensor | None,
    device: torch.device,
) -> int | None:
    """The head engine as a probe: the configured optimiser for `how.epochs`, the best epoch on the selection split."""
    fit = fit_heads([head], [lr], features, labels, how, None, None, device, select_features, select_labels)
    return fit.best_epochs[0]


def lbfgs_probe(
    head: nn.Module,
    lr: float,
    features: torch.Tensor,
    labels: torch.Tensor,
    how: HeadTraining,
    select_features: torch.Tensor | None,
    select_labels: torch.Tensor | None,
    device: torch.device,
) -> int | None:
    """The converged L-BFGS probe (L2 by cross-validation on the fit images) copied into a linear head."""
    if select_features is not None and select_labels is not None:  # the probe needs no epoch split: use it all
        features = torch.cat([features, select_features.unsqueeze(1)])
        labels = torch.cat([labels, select_labels])
    result = fit_linear_probe(features, labels, int(head.out_features), seed=how.seed, device=device)
    with torch.no_grad():
        head.weight.copy_(result.linear.weight)
        head.bias.copy_(result.linear.bias)
    return None


PROBE_FIT: ProbeFitter = sgd_probe  # heads that are not one linear layer (an MLP); linear heads use lbfgs_probe


def probe_head(
    backbone: Backbone,
    head: nn.Module,
    train: LabelledImages,
    select: LabelledImages | None,
    features: FeatureConfig | None,
    how: HeadTraining,
    lr: float,
    device: torch.device,
    fitter: ProbeFitter | None = None,
) -> int | None:
    """Fit `head` in place as a probe on `backbone`'s frozen penultimate features of `train` (centre view); `select`
    picks the probe's epoch. Returns that epoch. The body is only read (eval mode, no gradients)."""
    cfg = replace(features or FeatureConfig(), stage=None, progress=False)
    cache = FeatureCache(backbone, cfg, device)
    feats = cache.features(train, ["center"])  # N x 1 x D
    sel = cache.features(select, ["center"])[:, 0] if select is not None and len(select) else None  # N_sel x D
    log.info("LP-FT: the head starts as a linear probe on %d frozen %d-d features", len(feats), feats.shape[-1])
    fit = fitter or PROBE_FIT
    return fit(head, lr, feats, train.labels, how, sel, select.labels if sel is not None else None, device)

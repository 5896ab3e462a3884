"""The frozen regime's linear probe, cross-validated on cached features: the measurement `command=label-issues` and
`command=rank-backbones` share.

The start-up sequence (startup.start) builds the configured body under the frozen preset and loads the task's images at
its store size; the features come from the FeatureCache keyed exactly as the frozen regime's own (penultimate layer,
the configured views), so a fit that ran the frozen regime, or an earlier run, costs only the probe. The probe is the
head engine's L-BFGS solver (`train_head(..., solver="lbfgs")`): its L2 is chosen by k-fold cross-validation, and the
pooled out-of-fold probabilities at that L2 (`ProbeResult.oof_probs`) are what both commands read. Identical images
stay in one fold (groups = pixel digests). The L2 is chosen on those same folds, so the accuracy is a little
optimistic: the same for every body, fine for ranking bodies and images, not a headline for a model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch
from torch import nn

from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.data.task import TaskData
from transfer.errors import UserError
from transfer.eval.scoring import scored_metrics
from transfer.features.cache import FeatureCache
from transfer.features.key import pixel_digests
from transfer.studies.startup import FitRequest, start
from transfer.training.fit import head_device
from transfer.training.head_engine import train_head
from transfer.training.probe import ProbeResult
from transfer.training.regimes import apply_regime


@dataclass
class FrozenFeatures:
    """One body's cached features of the task's images (those in `index`)."""

    backbone: Backbone
    task: TaskData
    images: LabelledImages  # task.images[index]
    index: list[int]
    features: torch.Tensor  # N x K x D: the frozen regime's training views (centre first when it is one of them)
    centre: torch.Tensor  # N x D: the centre view
    seconds: float  # wall time of reading (and extracting) them
    extracted: int  # image-views the cache did not hold

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.backbone.parameters())


@dataclass
class ProbeCV:
    """The probe's pooled out-of-fold predictions over `images`."""

    probs: torch.Tensor  # N x C, each row from the folds that did not hold that image
    metrics: dict  # scored_metrics of `probs` (accuracy, its bootstrap 95% interval, balanced accuracy, ...)
    probe: ProbeResult
    seconds: float


def without_test(task: TaskData) -> list[int]:
    """Every image a selection may see: all of them but a test/ folder's (scored once, at the end, never chosen on)."""
    test = set(task.test_idx or [])
    if task.eval_name == "test":  # train/ + test/ folders: the held-out split is the test folder
        test |= set(task.split(0)[1])
    return [i for i in range(len(task.images)) if i not in test]


def frozen_features(req: FitRequest, test_too: bool = True) -> FrozenFeatures:
    """Start-up under the frozen preset, then the cached features of every labelled image (`test_too=False`: all but
    test/). Raises UserError as the start-up does (no such folder, weights offline, ...)."""
    frozen = req.presets["frozen"]
    setup = start(replace(req, regimes=[frozen]), frozen)
    backbone = setup.make_backbone(frozen)
    apply_regime(backbone, frozen)
    cfg, task = req.cfg, setup.task
    index = list(range(len(task.images))) if test_too else without_test(task)
    images = task.images if len(index) == len(task.images) else task.images.subset(index)  # no copy of all pixels
    cache = FeatureCache(backbone, replace(cfg.features, stage=None), head_device(cfg), cfg.augment)
    started = time.perf_counter()
    views = list(dict.fromkeys([*cache.views(), "center"]))
    feats = cache.features(images, views, rank=0, world_size=1)  # N x K' x D, one pass over the cache
    train_views = [views.index(v) for v in cache.views()]
    seconds = time.perf_counter() - started
    centre = feats[:, views.index("center")]
    return FrozenFeatures(backbone, task, images, index, feats[:, train_views], centre, seconds, cache.last.extracted)


def probe_cv(ff: FrozenFeatures, req: FitRequest) -> ProbeCV:
    """The L-BFGS probe cross-validated over `ff.images` (identical images in one fold); UserError when a class has
    fewer than two distinct images (no fold could both train and score it)."""
    images = ff.images
    return probe_cv_on(ff.features, images.labels, list(images.classes), pixel_digests(images.pixels), req)


def probe_cv_on(
    features: torch.Tensor, labels: torch.Tensor, classes: list[str], groups: list[str], req: FitRequest
) -> ProbeCV:
    """`probe_cv` on features (N x K x D), labels, class names and one group per image (identical images: one group)."""
    started = time.perf_counter()
    head = nn.Linear(int(features.shape[-1]), len(classes))
    result = train_head(
        head,
        features,
        labels,
        replace(req.cfg, seed=req.seeds[0]),
        solver="lbfgs",
        groups=groups,
        class_names=classes,
        device=head_device(req.cfg),
    )
    probe = result.probe
    if probe is None or probe.oof_probs is None:
        reason = probe.notes[-1] if probe is not None and probe.notes else "no cross-validation was possible"
        raise UserError(f"data.root={req.cfg.data.root}: {reason}; add images so that every class has at least two.")
    metrics = scored_metrics(probe.oof_probs, labels, classes)
    return ProbeCV(probe.oof_probs, metrics, probe, time.perf_counter() - started)

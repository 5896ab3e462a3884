"""The frozen regime's linear probe, cross-validated on cached features: the measurement `command=label-issues` and
`command=rank-backbones` share.

The start-up sequence (startup.start) builds the configured body under the frozen preset and loads the task's images at
its store size; the features come from the FeatureCache keyed exactly as the frozen regime's own (penultimate layer,
the configured views), so a fit that ran the frozen regime, or an earlier run, costs only the probes. Two ways to
cross-validate the head engine's L-BFGS probe (`train_head(..., solver="lbfgs")`), identical images in one fold:

- `probe_cv_on`, one probe: its L2 chosen by k-fold CV and the pooled out-of-fold probabilities at that L2
  (`ProbeResult.oof_probs`). One fit; the L2 was chosen on those same folds, so its accuracy is a little optimistic,
  the same for every body: what rank-backbones compares bodies by.
- `nested_probe_cv`, a probe per outer fold (crossval.py's stratified folds), each with its own inner CV for L2, each
  image predicted by the probe that did not see it: what a fit's cross-validated frozen headline is. About k times
  the work, and on weather (bench/label_issues.py, 5% of the labels flipped, centre view) its probabilities find the
  flipped labels with recall >= 0.67 on every seed where the one probe's fell to 0.47: label-issues reads these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.data.task import TaskData
from transfer.errors import UserError
from transfer.eval.scoring import scored_metrics
from transfer.features.cache import FeatureCache
from transfer.studies.crossval import MIN_FOLDS, fold_count, stratified_folds
from transfer.studies.probe_baseline import out_of_fold_probs
from transfer.studies.startup import FitRequest, start
from transfer.training.fit import head_device
from transfer.training.head_engine import train_head
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
    """A cross-validated probe's pooled out-of-fold predictions over `images`."""

    probs: torch.Tensor  # N x C, each row from a probe that did not train on that image
    metrics: dict  # scored_metrics of `probs` (accuracy, its bootstrap 95% interval, balanced accuracy, ...)
    folds: int
    l2: list[float]  # the L2 chosen: one (probe_cv_on) or one per outer fold (nested_probe_cv)
    seconds: float
    notes: list[str] = field(default_factory=list)


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


def nested_probe_cv(ff: FrozenFeatures, req: FitRequest) -> ProbeCV:
    """A probe per outer fold (report.cv_folds stratified folds, identical images in one, seeded by the first seed),
    each image predicted by the one that did not see it: the fit's cross-validated frozen headline, on `ff`'s images.
    UserError when a class has fewer than two distinct images."""
    started = time.perf_counter()
    images, classes = ff.images, list(ff.images.classes)
    groups, seed = images.digests(), req.seeds[0]
    k, note = fold_count(images.labels, groups, max(MIN_FOLDS, req.cfg.report.cv_folds), classes)
    if k < MIN_FOLDS:
        raise UserError(
            f"data.root={req.cfg.data.root}: a class has a single distinct image: no fold could both train and score "
            "it; add images so that every class has at least two."
        )
    fold_of = stratified_folds(images.labels, groups, k, seed)
    cfg = replace(req.cfg, seed=seed)
    probs, l2 = out_of_fold_probs(ff.features, ff.centre, images.labels, fold_of, cfg, head_device(cfg), classes)
    metrics = scored_metrics(probs, images.labels, classes)
    return ProbeCV(probs, metrics, k, l2, time.perf_counter() - started, [note] if note else [])


def probe_cv_on(
    features: torch.Tensor, labels: torch.Tensor, classes: list[str], groups: list[str], req: FitRequest
) -> ProbeCV:
    """One probe cross-validated on features (N x K x D), labels, class names and one group per image (identical
    images: one group): its out-of-fold probabilities at the L2 chosen on the same folds."""
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
    return ProbeCV(probe.oof_probs, metrics, probe.folds, [probe.l2], time.perf_counter() - started, list(probe.notes))

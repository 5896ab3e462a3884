"""Without a test/ folder, the headline is the chosen configuration cross-validated over every labelled image.

The held-out split the regime and seed were chosen on flatters them; one split of a small set is also noisy. So the
chosen regime is retrained, with the chosen seed, on k stratified folds of all labelled images (identical files stay
in one fold), each fold predicted by the model that did not see it, and the N out-of-fold predictions pooled into one
accuracy and balanced accuracy with bootstrap intervals. For the frozen regime the features are cached: each fold
trains only a head.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.distributed import dist_info
from transfer.eval.scoring import scored_metrics
from transfer.eval.stats import majority_baseline
from transfer.studies.study import RunResult, quiet_per_run_logs, seeded_start
from transfer.training.config import Regime, TrainConfig
from transfer.training.fit import RunOptions, fit_classifier

if TYPE_CHECKING:
    from transfer.data.task import TaskData
    from transfer.studies.startup import FitRequest

MIN_FOLDS = 2


@dataclass
class CrossValidation:
    """Pooled out-of-fold predictions of one configuration over `index` (every labelled image, each once)."""

    folds: int
    regime: str
    seed: int
    index: list[int]  # the images cross-validated (indices into the task's images), in `probs`' row order
    fold_of: list[int]  # each image's fold
    probs: torch.Tensor  # N x K softmax, each row from the model that did not train on that image
    metrics: dict  # scored_metrics of the pooled predictions, plus the pooled majority baseline
    note: str  # "" or one line on why fewer folds than asked
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """What metrics.json keeps: the metrics and how they were made (no probabilities)."""
        return {
            "folds": self.folds,
            "regime": self.regime,
            "seed": self.seed,
            "note": self.note,
            "seconds": self.seconds,
            **self.metrics,
        }


def fold_count(labels: torch.Tensor, groups: list[str], asked: int, classes: list[str]) -> tuple[int, str]:
    """min(asked, the smallest class's distinct images), and a line saying so when that is fewer than asked."""
    first: dict[str, int] = {}
    for i, g in enumerate(groups):
        first.setdefault(g, i)
    counts = np.bincount(labels.numpy()[sorted(first.values())], minlength=len(classes))
    present = [c for c in range(len(classes)) if counts[c] > 0]
    smallest = min(present, key=lambda c: counts[c])
    k = min(asked, int(counts[smallest]))
    if k >= asked:
        return k, ""
    return k, (
        f"{k} folds, not {asked}: class {classes[smallest]!r} has {counts[smallest]} distinct image(s) "
        "(each fold needs one of every class)"
    )


def stratified_folds(labels: torch.Tensor, groups: list[str], k: int, seed: int) -> list[int]:
    """Each image's fold (0..k-1): stratified by class over distinct files, identical files in one fold; seeded."""
    from sklearn.model_selection import StratifiedKFold

    first: dict[str, int] = {}
    for i, g in enumerate(groups):
        first.setdefault(g, i)
    reps = np.array(sorted(first.values()), dtype=np.int64)
    y = labels.numpy()[reps]
    fold_of_group: dict[str, int] = {}
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(reps)), y)):
        for i in reps[held].tolist():
            fold_of_group[groups[i]] = fold
    return [fold_of_group[g] for g in groups]


def cross_validate(
    make_backbone: Callable[[Regime], Backbone],
    regime: Regime,
    images: LabelledImages,
    index: list[int],
    cfg: TrainConfig,
    seed: int,
    folds: int,
    on_fold: Callable[[int, float], None] | None = None,
) -> CrossValidation | None:
    """Stratified k-fold of `regime` (seed `seed`) over images[index]; None when a class has a single distinct image
    (no fold could both train and score it) or `folds` < 2."""
    part = images.subset(index)
    classes = list(part.classes)
    groups = part.digests()
    if folds < MIN_FOLDS:
        return None
    k, note = fold_count(part.labels, groups, folds, classes)
    if k < MIN_FOLDS:
        return None
    started = time.perf_counter()
    fold_of = stratified_folds(part.labels, groups, k, seed)
    probs = torch.zeros(len(index), len(classes))
    cfg = replace(cfg, seed=seed)
    for fold in range(k):
        held = [i for i, f in enumerate(fold_of) if f == fold]
        train = [i for i, f in enumerate(fold_of) if f != fold]
        backbone, head = seeded_start(make_backbone, regime, cfg.head, len(classes), seed)  # as the study's run
        once = RunOptions(validate_each_epoch=False)
        fitted = fit_classifier(backbone, head, regime, part.subset(train), part.subset(held), cfg, None, True, once)
        probs[held] = fitted.val_probs.float().cpu()
        if on_fold is not None:
            on_fold(fold, float((probs[held].argmax(1) == part.labels[held]).float().mean()))
    metrics = scored_metrics(probs, part.labels, classes)
    metrics["majority_baseline"] = pooled_majority(part.labels, fold_of)
    seconds = time.perf_counter() - started
    return CrossValidation(k, regime.name, seed, list(index), fold_of, probs, metrics, note, seconds)


def pooled_majority(labels: torch.Tensor, fold_of: list[int]) -> float:
    """The majority baseline scored like the model: each fold predicted by its training folds' most common class."""
    folds = sorted(set(fold_of))
    hits = 0
    for fold in folds:
        held = [i for i, f in enumerate(fold_of) if f == fold]
        train = [i for i, f in enumerate(fold_of) if f != fold]
        hits += round(majority_baseline(labels[train], labels[held]) * len(held))
    return hits / len(fold_of)


def crossvalidate_choice(req: FitRequest, task: TaskData, best: RunResult, make_backbone) -> CrossValidation | None:
    """The fit's headline without test/: the best run's regime and seed, cross-validated over every labelled image
    (its training and held-out splits together), with the lines it prints; None when off or impossible (said)."""
    folds = req.cfg.report.cv_folds
    if folds == 0 or task.test_idx or task.eval_name != "val":
        return None
    if dist_info()[1] > 1:
        print("cross-validation: skipped under DDP (one process scores the folds); the headline is the val split")
        return None
    regime = next((r for r in req.regimes if r.name == best.regime), None) or req.presets[best.regime]
    index = sorted(set(best.train_idx) | set(best.eval_idx))
    with quiet_per_run_logs(True):
        cv = cross_validate(make_backbone, regime, task.images, index, req.cfg, best.seed, folds)
    if cv is None:
        print(
            f"cross-validation: skipped (a class has a single distinct image, or report.cv_folds={folds}); "
            "the headline is the val split"
        )
        return None
    m = cv.metrics
    ci = m.get("accuracy_ci95") or [m["accuracy"], m["accuracy"]]
    print(
        f"cross-validation: stratified {cv.folds}-fold of {cv.regime} (seed {cv.seed}) over all {len(index)} images: "
        f"accuracy {m['accuracy']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}), balanced accuracy "
        f"{m['balanced_accuracy']:.3f} ({cv.seconds:.1f}s; report.cv_folds=0 turns it off)"
    )
    if cv.note:
        print(f"  {cv.note}")
    return cv


def selection_score(metrics: dict, eval_name: str) -> dict:
    """The held-out split's score beside a cross-validated headline, labelled for what it is (metrics.json)."""
    keys = ("accuracy", "accuracy_ci95", "balanced_accuracy", "balanced_accuracy_ci95", "n")
    return {"name": f"{eval_name} accuracy, used to select", **{k: metrics[k] for k in keys if k in metrics}}

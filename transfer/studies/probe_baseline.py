"""The linear-probe baseline beside a fit's headline: what the frozen regime's head alone scores on the same images.

The frozen regime's head is a converged linear probe (the head engine: L-BFGS, L2 by cross-validation) on the backbone's
frozen penultimate features; a fine-tune that is not clearly above it bought nothing measurable with its extra
training. So every fit reports it, fitted on the images the headline's model trained on and scored on exactly the
headline's images: test/ when the headline is test/; the headline's own folds when it is cross-validated (pooled
out-of-fold accuracy); the held-out split otherwise. The features come from the feature cache, keyed as the frozen
regime's own, so a study that ran the frozen regime (or an earlier run) costs only the probe fits.

It is computed after the choice and feeds nothing back: a reference, never a candidate. When the chosen model IS the
frozen regime's probe, it is not fitted again: the baseline is the model's own number, marked `same_as_model`
(no warning compares a model with itself). `report.probe_baseline=false` turns it off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from transfer.data.labelled import LabelledImages
from transfer.errors import UserError
from transfer.eval.scoring import scored_metrics
from transfer.eval.stats import mcnemar_exact
from transfer.features.cache import FeatureCache
from transfer.model.heads import create_head
from transfer.studies.study import RunResult, quiet_per_run_logs
from transfer.training.config import Regime, TrainConfig
from transfer.training.fit import head_device
from transfer.training.head_engine import predict_head, train_head, uses_lbfgs
from transfer.training.regimes import apply_regime

if TYPE_CHECKING:
    from transfer.data.task import TaskData
    from transfer.studies.crossval import CrossValidation
    from transfer.studies.startup import FitRequest

KEEP = ("accuracy", "accuracy_ci95", "balanced_accuracy", "balanced_accuracy_ci95", "n")


@dataclass
class ProbeBaseline:
    """The probe's score on the headline's images (metrics.json's `probe_baseline`)."""

    accuracy: float | None  # None: off, or not computed (the note says why)
    metrics: dict  # KEEP of scored_metrics on the headline's images
    same_as_model: bool  # the chosen model is the frozen regime's probe: its own number, not refitted
    note: str  # how it was measured, in one line (headline.baseline_notes)
    seconds: float = 0.0
    extracted: int = 0  # image-views the cache did not hold (0: every feature was cached)
    l2: list[float] = field(default_factory=list)  # the L2 chosen per fit (one per fold when cross-validated)
    paired: dict | None = None  # exact McNemar, the model vs this probe on the same images: {b, c, n, p_value}

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            **{k: v for k, v in self.metrics.items() if k != "accuracy"},
            "same_as_model": self.same_as_model,
            "note": self.note,
            "seconds": self.seconds,
            "extracted": self.extracted,
            "l2": self.l2,
            "paired": self.paired,
        }


def probe_probs(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    scored_feats: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    class_names: list[str] | None = None,
) -> tuple[torch.Tensor, float]:
    """(softmax N_scored x C, chosen L2) of the frozen regime's probe fitted on N x K x D training features and applied
    to N_scored x D centre-view features: the head engine's L-BFGS probe, as the frozen regime fits it."""
    num_classes = len(class_names) if class_names else int(train_labels.max()) + 1
    head = torch.nn.Linear(int(train_feats.shape[-1]), num_classes)
    result = train_head(head, train_feats, train_labels, cfg, device=device, solver="lbfgs", class_names=class_names)
    return predict_head(head, scored_feats), result.probe.l2


def out_of_fold_probs(
    feats: torch.Tensor,
    centre: torch.Tensor,
    labels: torch.Tensor,
    fold_of: list[int],
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    class_names: list[str] | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """Each image's probe probabilities from the probe fitted on the other folds (N x K x D training views, N x D
    centre views, one fold per image), as crossval.py pools a regime's folds; returns (N x C, L2 per fold)."""
    probs = torch.zeros(len(labels), len(class_names) if class_names else int(labels.max()) + 1)
    l2s = []
    for fold in sorted(set(fold_of)):
        held = [i for i, f in enumerate(fold_of) if f == fold]
        train = [i for i, f in enumerate(fold_of) if f != fold]
        probs[held], l2 = probe_probs(feats[train], labels[train], centre[held], cfg, device, class_names)
        l2s.append(l2)
    return probs, l2s


def is_the_probe(regime: Regime, cfg: TrainConfig, num_classes: int) -> bool:
    """Whether a model trained under `regime` with this head is the frozen regime's converged linear probe."""
    if not regime.body_frozen:
        return False
    head = create_head(cfg.head.name, 4, num_classes, **cfg.head.params)  # any width: only its kind matters
    return uses_lbfgs(head, cfg)


def headline_images(
    task: TaskData, best: RunResult, cv: CrossValidation | None
) -> tuple[str, list[int], list[int], list[int] | None]:
    """(where, training images, scored images, fold of each scored image or None) of the headline: test/, else the
    cross-validated images (each scored by the folds that did not hold it), else the held-out split."""
    if task.test_idx:
        return "test/", list(best.train_idx), list(task.test_idx), None
    if cv is not None:
        return f"{cv.folds}-fold out-of-fold", list(cv.index), list(cv.index), list(cv.fold_of)
    return task.eval_name, list(best.train_idx), list(best.eval_idx), None


def probe_baseline(
    req: FitRequest, task: TaskData, best: RunResult, cv: CrossValidation | None, make_backbone, headline: dict
) -> ProbeBaseline:
    """`headline` is the headline's metrics ({accuracy, accuracy_ci95, n, ...}). Off, or impossible to fit: accuracy
    None and the note says why."""
    if not req.cfg.report.probe_baseline:
        return ProbeBaseline(None, {}, False, "off (report.probe_baseline=false)")
    chosen = next((r for r in req.regimes if r.name == best.regime), None) or req.presets.get(best.regime)
    classes = list(task.images.classes)
    if chosen is not None and is_the_probe(chosen, req.cfg, len(classes)):
        keep = {k: headline[k] for k in KEEP if k in headline}
        note = f"the chosen model ({best.regime} regime, linear head, L-BFGS) is this probe: its own score, not refit"
        return ProbeBaseline(float(headline["accuracy"]), keep, True, note)
    frozen = next((r for r in req.regimes if r.body_frozen and r.name != "auto"), None) or req.presets["frozen"]
    started = time.perf_counter()
    try:
        with quiet_per_run_logs(True):
            out = _measure(req, task, best, cv, make_backbone, frozen)
    except (UserError, ValueError) as e:  # a reference must not end the run (e.g. identical features for all images)
        reason = str(e).splitlines()[0]
        print(f"linear probe baseline: not computed: {reason}")
        return ProbeBaseline(None, {}, False, f"not computed: {reason}", time.perf_counter() - started)
    out.seconds = time.perf_counter() - started
    if out.extracted:
        print(
            f"linear probe baseline: extracted {out.extracted} frozen image-view features in {out.seconds:.1f}s "
            "(cached for reruns; report.probe_baseline=false skips it)"
        )
    return out


def _measure(req: FitRequest, task: TaskData, best: RunResult, cv, make_backbone, frozen: Regime) -> ProbeBaseline:
    images, classes = task.images, list(task.images.classes)
    torch.manual_seed(best.seed)  # a random body is rebuilt as the study built it for this seed (the cache's key)
    backbone = make_backbone(frozen)
    apply_regime(backbone, frozen)
    cfg = replace(req.cfg, seed=best.seed)
    features = replace(cfg.features, stage=None, progress=False)
    device = head_device(cfg)
    cache = FeatureCache(backbone, features, device, cfg.augment)
    extracted = 0

    def read(part: LabelledImages, views: list[str] | None) -> torch.Tensor:
        nonlocal extracted
        out = cache.features(part, views, rank=0, world_size=1)  # rank 0 reports alone: no barrier
        extracted += cache.last.extracted
        return out

    where, train_idx, scored_idx, fold_of = headline_images(task, best, cv)
    scored = images.subset(scored_idx)
    centre = read(scored, ["center"])[:, 0]  # N_scored x D
    if fold_of is not None:
        feats = read(scored, None)  # N x K x D: the folds train on the views the frozen regime trains on
        probs, l2 = out_of_fold_probs(feats, centre, scored.labels, fold_of, cfg, device, classes)
        fitted_on = f"the other {len(set(fold_of)) - 1} folds"
    else:
        train = images.subset(train_idx)
        p, one = probe_probs(read(train, None), train.labels, centre, cfg, device, classes)
        probs, l2, fitted_on = p, [one], f"the chosen run's {len(train_idx)} training images"
    m = scored_metrics(probs, scored.labels, classes)
    model = model_probs(best, cv, scored_idx)
    paired = None
    if model is not None:  # b: only the model right, c: only the probe right
        paired = mcnemar_exact(model.argmax(1) == scored.labels, probs.argmax(1) == scored.labels)
    note = (
        f"L-BFGS linear probe on frozen {backbone.name} features ({frozen.name} regime's head), fitted on {fitted_on}, "
        f"scored on the headline's {len(scored_idx)} images ({where})"
    )
    return ProbeBaseline(m["accuracy"], {k: m[k] for k in KEEP if k in m}, False, note, 0.0, extracted, l2, paired)


def model_probs(best: RunResult, cv: CrossValidation | None, scored_idx: list[int]) -> torch.Tensor | None:
    """The headline model's probabilities on the scored images, in their order (the cross-validated pool, or the
    chosen run's held-out predictions); None when they were not kept (e.g. a resumed run)."""
    if cv is not None and list(cv.index) == list(scored_idx):
        return cv.probs
    if best.probs is None:
        return None
    row = {int(i): r for r, i in enumerate(best.eval_idx)}
    if any(int(i) not in row for i in scored_idx):
        return None
    return best.probs[[row[int(i)] for i in scored_idx]].float()

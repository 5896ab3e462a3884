"""`regime=auto`: choose frozen, partial or full from evidence on the user's own training images, within a budget.

Every candidate is scored the same way: stratified k-fold cross-validation over ALL the training images (identical
files kept in one fold), each fold trained with exactly the settings the final model will use, so every training
image is predicted once by a model that did not see it (repeated with new folds while the budget allows). One small
split picked noise: 49 images whose accuracy swung from 0.53 to 0.88 between epochs chose a fine-tune that then lost
to the frozen probe on the test photos.

- frozen: the converged probe on cached features, k folds in a second or two: the reference.
- partial, full: before a fine-tune starts, a three-step timing run projects what its k folds would cost; a candidate
  whose folds cannot finish within its share of `auto.budget_s` is not started (half-trained folds are no
  evidence), and one that falls behind frozen on the folds so far, with no prospect of catching up, is stopped.
- The choice: the most accurate candidate with complete folds; a fine-tune must beat frozen by an exact McNemar
  test (p < 0.05) on the same images, else frozen wins: the regimes cannot be told apart and frozen is far cheaper.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.eval.stats import bootstrap_ci, mcnemar_exact
from transfer.features.cache import FeatureCache
from transfer.features.config import FeatureConfig
from transfer.studies.crossval import fold_count, stratified_folds
from transfer.studies.study import seeded_start
from transfer.training.config import Regime, TrainConfig
from transfer.training.fit import RunOptions, fit_classifier, selection_split
from transfer.training.head_engine import predict_head, train_head
from transfer.training.hyperrule import apply_hyperrule
from transfer.training.probe import ProbeResult
from transfer.training.regimes import apply_regime

log = logging.getLogger(__name__)
ORDER = ("frozen", "partial", "full")  # cheapest first: ties go to the left
FOLDS = 5
MAX_REPEATS = 3
TIMING_STEPS = 3


def default_budget_s() -> float:
    """Seconds for the whole choice when `auto.budget_s` is not set: what a 2-core laptop and a GPU both finish."""
    return 600.0 if torch.cuda.is_available() else 120.0


@dataclass
class AutoResult:
    chosen: str
    reason: str
    evidence: list[dict] = field(default_factory=list)  # one row per measurement (see `choose_regime`)
    budget_s: float = 0.0
    seconds: float = 0.0
    images: int = 0  # training images cross-validated
    folds: int = 0
    repeats: int = 0

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen,
            "reason": self.reason,
            "evidence": self.evidence,
            "budget_s": self.budget_s,
            "seconds": self.seconds,
            "images": self.images,
            "folds": self.folds,
            "repeats": self.repeats,
        }


def _row(evidence: str, regime: str | None, correct: torch.Tensor | None, seconds: float, note: str = "", **kw) -> dict:
    row = {"evidence": evidence, "regime": regime, "seconds": round(seconds, 2), "note": note, **kw}
    if correct is not None and correct.numel():
        row["accuracy"] = float(correct.float().mean())
        row["accuracy_ci95"] = list(bootstrap_ci(correct.float().numpy()))
        row["n"] = int(correct.numel())
    return row


@dataclass
class _Folds:
    """One repeat's stratified k folds over the training images: each image's fold."""

    fold_of: list[int]
    k: int

    def split(self, fold: int) -> tuple[list[int], list[int]]:
        return [i for i, f in enumerate(self.fold_of) if f != fold], [
            i for i, f in enumerate(self.fold_of) if f == fold
        ]


def choose_regime(
    make_backbone: Callable[[Regime], Backbone],
    presets: dict[str, Regime],
    train: LabelledImages,
    cfg: TrainConfig,
    budget_s: float | None = None,
    seed: int = 0,
) -> AutoResult:
    """Measure the regimes on `train` (the study's training images only) and pick one; see the module docstring."""
    started = time.perf_counter()
    budget = float(budget_s) if budget_s else default_budget_s()
    cfg = replace(cfg, seed=seed)
    groups = train.digests()
    k, fold_note = fold_count(train.labels, groups, FOLDS, list(train.classes))
    if k < 2:
        reason = f"a class has a single distinct image: nothing to cross-validate, the frozen result ({fold_note})"
        return AutoResult("frozen", reason, [], budget, time.perf_counter() - started, len(train))
    evidence: list[dict] = []
    feats, extract_s = _frozen_features(make_backbone, presets["frozen"], train, cfg, seed, evidence)
    forward_s = extract_s / max(len(train), 1)  # per image (0 when cached): a floor on a training epoch's share
    repeats: list[_Folds] = [_Folds(stratified_folds(train.labels, groups, k, seed), k)]
    t = time.perf_counter()
    correct: dict[str, list[torch.Tensor]] = {"frozen": [_frozen_oof(feats, train, repeats[0], cfg)]}
    note = f"the L-BFGS linear probe on cached features, {k} folds" + (f" ({fold_note})" if fold_note else "")
    evidence.append(_row("candidate", "frozen", correct["frozen"][0], time.perf_counter() - t, note))
    state: dict[str, str] = {}  # fine-tune -> why it has no complete evidence ("" while it has)
    candidates = [r for r in ("partial", "full") if r in presets]
    cheaper: tuple[str, float] | None = None  # a candidate not started, and its projection: a floor for a superset
    for i, name in enumerate(candidates):
        allowed = (budget - (time.perf_counter() - started)) / (len(candidates) - i)
        t = time.perf_counter()
        if cheaper and trains_superset(presets[name], presets[cheaper[0]]) and cheaper[1] > allowed:
            outcome = None  # no timing runs: they would only confirm it
            note = (
                f"not started: it trains every parameter {cheaper[0]} trains, so its folds cost at least "
                f"{cheaper[0]}'s {cheaper[1]:.0f} s; {allowed:.0f} s allowed (raise auto.budget_s to measure it)"
            )
        else:
            outcome, note, projected = _run_candidate(
                make_backbone, presets[name], train, cfg, repeats[0], correct, allowed, forward_s
            )
            if outcome is None and note.startswith("not started"):
                cheaper = (name, projected)
        state[name] = "" if outcome is not None else note
        if outcome is not None:
            correct[name] = [outcome]
        row = _row("candidate", name, outcome, time.perf_counter() - t, note, allowed_s=round(max(allowed, 0.0), 2))
        evidence.append(row)
    _more_repeats(make_backbone, presets, train, cfg, feats, groups, k, seed, correct, repeats, started, budget)
    complete = {name: torch.cat(c) for name, c in correct.items()}
    for row in evidence:  # the rows report every repeat's predictions
        if row["evidence"] == "candidate" and row["regime"] in complete:
            scored = _row("", None, complete[row["regime"]], 0.0)
            row.update({key: scored[key] for key in ("accuracy", "accuracy_ci95", "n")})
    chosen, reason = decide(complete, len(repeats))
    skipped = [f"{n}: {why}" for n, why in state.items() if why]
    if chosen == "frozen" and skipped and len(complete) == 1:
        behind = all(why.startswith("stopped after") for why in state.values() if why)
        if behind:
            reason = f"every fine-tune fell behind frozen on its first folds ({'; '.join(skipped)}): frozen"
        else:
            reason = f"no fine-tune could be measured within auto.budget_s={budget:g} ({'; '.join(skipped)}): frozen"
    result = AutoResult(chosen, reason, evidence, budget, time.perf_counter() - started, len(train), k, len(repeats))
    log.info("auto: %s (%s)", chosen, reason)
    return result


def _frozen_features(
    make_backbone, frozen: Regime, train: LabelledImages, cfg, seed, evidence
) -> tuple[torch.Tensor, float]:
    """(centre-view features of the training images, the seconds reading them took: the forward passes when they
    were not cached). They come from the feature cache (the frozen run reads the same ones), with the evidence row
    of an earlier stage's probe: if it beats the penultimate layer, the top is too specific to the source task (a
    hint: it chooses nothing)."""
    torch.manual_seed(seed)
    body = make_backbone(frozen)
    apply_regime(body, frozen)
    stages = body.stages()
    t = time.perf_counter()
    if len(stages) < 3:
        return _centre_features(body, train, cfg.features, None), time.perf_counter() - t
    feats, early = _centre_cache(body, cfg.features, None).with_stage(train, stages[-2].name)  # one forward pass
    extract_s = time.perf_counter() - t
    t = time.perf_counter()  # the row's seconds: the probe's fits (the extraction is the frozen candidate's too)
    probe = _probe(early, train.labels, len(train.classes), cfg, train.classes)
    kw = {"cv_accuracy": probe.cv_accuracy, "folds": probe.folds, "width": int(early.shape[1])}
    evidence.append(_row(f"linear probe, stage {stages[-2].name}", None, None, time.perf_counter() - t, "", **kw))
    return feats, extract_s


def _centre_cache(body: Backbone, features: FeatureConfig, stage: str | None) -> FeatureCache:
    return FeatureCache(body, replace(features, stage=stage, progress=False, views=1), "cpu")


def _centre_features(
    body: Backbone, images: LabelledImages, features: FeatureConfig, stage: str | None
) -> torch.Tensor:
    return _centre_cache(body, features, stage).features(images, ["center"])[:, 0]  # N x D


def _probe(feats: torch.Tensor, labels: torch.Tensor, classes: int, cfg: TrainConfig, names) -> ProbeResult:
    """The head engine's cross-validated L-BFGS probe on N x D features."""
    result = train_head(
        torch.nn.Linear(int(feats.shape[-1]), classes), feats, labels, cfg, solver="lbfgs", class_names=names
    )
    assert result.probe is not None
    return result.probe


def _frozen_oof(feats: torch.Tensor, train: LabelledImages, folds: _Folds, cfg: TrainConfig) -> torch.Tensor:
    """Each training image predicted by the frozen regime's head fitted on the other folds: per-image correctness."""
    correct = torch.zeros(len(train), dtype=torch.bool)
    for fold in range(folds.k):
        fit, held = folds.split(fold)
        head = torch.nn.Linear(int(feats.shape[1]), len(train.classes))
        train_head(head, feats[fit], train.labels[fit], cfg, solver="lbfgs", class_names=train.classes)
        correct[held] = predict_head(head, feats[held]).argmax(1) == train.labels[held]
    return correct


def trains_superset(regime: Regime, other: Regime) -> bool:
    """`regime` trains every stage `other` trains (fewer or as many frozen stages), so a step costs at least as much."""
    return (
        regime.frozen_stages is not None
        and other.frozen_stages is not None
        and (regime.frozen_stages <= other.frozen_stages)
    )


def _run_candidate(
    make_backbone, regime: Regime, train, cfg, folds: _Folds, correct, allowed: float, forward_s: float = 0.0
):
    """(per-image correctness over the k folds, note, projected seconds) of one fine-tune, or (None, why not,
    projected) when it was not measured or stopped: it did not fit its allowance, or it fell behind frozen with no
    prospect of catching up. `forward_s`: seconds the frozen features took per image (a forward pass in inference
    mode); every training epoch runs at least that forward over each image, so when that floor alone exceeds the
    allowance the timing runs are skipped."""
    if allowed <= 0:
        return None, "skipped: the budget was spent", 0.0
    fit0, _ = folds.split(0)
    fit_part, _, _ = selection_split(train.subset(fit0), None, cfg)
    run_cfg = apply_hyperrule(cfg, len(fit_part))[0]
    epochs = run_cfg.trainer.max_epochs
    steps = math.ceil(len(fit_part) / run_cfg.data.batch_size) * epochs  # the epochs the schedule gives, as steps
    floor = folds.k * epochs * len(fit_part) * forward_s
    if run_cfg.trainer.max_steps and run_cfg.trainer.max_steps > 0:  # a step cap: no floor from the epochs
        floor = 0.0
    if floor > allowed:
        arithmetic = f"{folds.k} folds x {epochs} epochs x {len(fit_part)} images x {forward_s * 1000:.0f} ms"
        why = (
            f"not started: the forward passes alone take at least {arithmetic} = {floor:.0f} s (the frozen "
            f"features' time per image), {allowed:.0f} s allowed (raise auto.budget_s to measure it)"
        )
        return None, why, floor
    step_s, fixed_s = _timing(make_backbone, regime, train.subset(fit0), cfg)
    projected = (fixed_s + step_s * steps) * folds.k
    arithmetic = f"{folds.k} folds x ({fixed_s:.1f} s + {steps} steps x {step_s:.3f} s) = {projected:.0f} s"
    if projected > allowed:
        why = f"not started: {arithmetic}, {allowed:.0f} s allowed (raise auto.budget_s to measure it)"
        return None, why, projected
    out = torch.zeros(len(train), dtype=torch.bool)
    frozen = correct["frozen"][0]
    seen: list[int] = []
    start = time.perf_counter()
    for fold in range(folds.k):
        left = allowed - (time.perf_counter() - start)
        fit, held = folds.split(fold)
        fitted = _fine_tune(make_backbone, regime, train, fit, held, cfg, left)
        if fitted is None:
            why = f"stopped: fold {fold + 1} of {folds.k} would not finish in the {max(left, 0):.0f} s left"
            return None, why, projected
        out[held] = fitted
        seen += held
        b = int((out[seen] & ~frozen[seen]).sum())  # right where frozen is wrong
        c = int((~out[seen] & frozen[seen]).sum())  # wrong where frozen is right
        if 2 <= fold + 1 < folds.k and c > b and mcnemar_exact_counts(c, b) < 0.2:  # clearly behind: it cannot
            return None, f"stopped after {fold + 1} folds: behind frozen ({b} images better, {c} worse)", projected
    return out, f"{arithmetic} projected, {allowed:.0f} s allowed", projected


def mcnemar_exact_counts(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts."""
    return float(
        mcnemar_exact(torch.tensor([True] * b + [False] * c), torch.tensor([False] * b + [True] * c))["p_value"]
    )


def _timing(make_backbone, regime: Regime, part: LabelledImages, cfg: TrainConfig) -> tuple[float, float]:
    """(seconds a training step takes here, seconds of a fold's fixed costs). Two short runs, of 1 and
    1 + TIMING_STEPS steps, so the set-up (the body, the norm policy's pass over the images, Lightning) cancels out of
    the step time."""
    walls = []
    for n in (1, 1 + TIMING_STEPS):
        probe_cfg = replace(cfg, trainer=replace(cfg.trainer, max_steps=n, monitor="none"))
        body, head = seeded_start(make_backbone, regime, cfg.head, len(part.classes), cfg.seed)
        t = time.perf_counter()
        fit_classifier(body, head, replace(regime, lp_init=False), part, None, probe_cfg, None, True, RunOptions(False))
        walls.append(time.perf_counter() - t)
    step = max(walls[1] - walls[0], 0.0) / TIMING_STEPS
    return step, max(walls[0] - step, 0.0)


def _fine_tune(make_backbone, regime, train, fit, held, cfg: TrainConfig, left: float) -> torch.Tensor | None:
    """Correctness on `held` of `regime` trained on `fit` with the final model's settings, or None when Lightning's
    max_time (what is left of the allowance) cut it short."""
    if left <= 1:
        return None
    body, head = seeded_start(make_backbone, regime, cfg.head, len(train.classes), cfg.seed)  # as the final run
    run_cfg = replace(cfg, trainer=replace(cfg.trainer, max_time={"seconds": max(int(left), 1)}))
    t = time.perf_counter()
    fitted = fit_classifier(
        body, head, regime, train.subset(fit), train.subset(held), run_cfg, None, True, RunOptions(False)
    )
    if time.perf_counter() - t >= left:
        return None
    return fitted.val_probs.argmax(1) == train.labels[held]


def _more_repeats(
    make_backbone, presets, train, cfg, feats, groups, k, seed, correct, repeats, started, budget
) -> None:
    """New folds (the next seed) for every candidate measured so far, while a whole repeat fits in the budget."""
    while len(repeats) < MAX_REPEATS:
        elapsed = time.perf_counter() - started
        per_repeat = elapsed / len(repeats)  # the first repeat's cost (with its one-off extraction: an upper bound)
        if elapsed + per_repeat > budget:
            return
        folds = _Folds(stratified_folds(train.labels, groups, k, seed + len(repeats)), k)
        new = {"frozen": _frozen_oof(feats, train, folds, cfg)}
        for name in [n for n in correct if n != "frozen"]:
            out = torch.zeros(len(train), dtype=torch.bool)
            for fold in range(k):
                fit, held = folds.split(fold)
                fitted = _fine_tune(
                    make_backbone, presets[name], train, fit, held, cfg, budget - (time.perf_counter() - started)
                )
                if fitted is None:
                    return  # an incomplete repeat is dropped whole: every candidate keeps the same folds
                out[held] = fitted
            new[name] = out
        for name, c in new.items():
            correct[name].append(c)
        repeats.append(folds)


def decide(correct: dict[str, torch.Tensor], repeats: int = 1) -> tuple[str, str]:
    """The most accurate candidate over the same out-of-fold predictions (ties go to the cheaper regime); a fine-tune
    is chosen only when it beats frozen by an exact McNemar test (p < 0.05), with the discordant counts averaged over
    the repeats (the same images predicted again are not new evidence)."""
    acc = {name: float(c.float().mean()) for name, c in correct.items()}
    best = sorted(acc, key=lambda r: (-acc[r], ORDER.index(r)))[0]
    n = len(correct["frozen"]) // max(repeats, 1)
    if best == "frozen":
        return "frozen", f"frozen is the most accurate over {n} training images, cross-validated"
    b = round(int((correct[best] & ~correct["frozen"]).sum()) / repeats)
    c = round(int((~correct[best] & correct["frozen"]).sum()) / repeats)
    p = mcnemar_exact_counts(b, c)
    gap = f"{acc[best]:.3f} vs frozen {acc['frozen']:.3f} over {n} training images, cross-validated"
    if p < 0.05:
        return best, f"{best} beats frozen: {gap} (McNemar p = {p:.2g}, {b} images better, {c} worse)"
    return "frozen", (
        f"{best} and frozen cannot be told apart: {gap} (McNemar p = {p:.2g}, {b} better, {c} worse); frozen, "
        "as good and far cheaper"
    )

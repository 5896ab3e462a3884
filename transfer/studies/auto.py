"""`regime=auto`: choose frozen, partial or full from evidence on the user's own training images, within a budget.

Cheap evidence first: the converged linear probe (L-BFGS, cross-validated) on cached features of the penultimate layer
and of an earlier stage. Then partial and full fine-tunes, each within its share of `auto.budget_s` (Lightning's
`max_time`). Every candidate is scored on the same inner validation split carved from the training images (never
the held-out val/ or test/ images the report is about); the choice is the most accurate candidate (exact ties go to
the cheaper regime), with an exact McNemar test against frozen reported beside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.data.splits import stratified_split
from transfer.eval.stats import bootstrap_ci, compare_models, mcnemar_exact
from transfer.features.cache import FeatureCache
from transfer.features.config import FeatureConfig
from transfer.model.heads import create_head
from transfer.training.config import Regime, TrainConfig
from transfer.training.fit import RunOptions, fit_classifier
from transfer.training.head_engine import predict_head, train_head
from transfer.training.probe import ProbeResult
from transfer.training.regimes import apply_regime

log = logging.getLogger(__name__)
ORDER = ("frozen", "partial", "full")  # cheapest first: ties and non-significant differences go to the left
MIN_FINETUNE_S = 5.0  # a fine-tune given less than this is not worth starting
INNER_VAL_FRACTION = 0.25


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
    inner_val: int = 0  # images in the inner validation split

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen,
            "reason": self.reason,
            "evidence": self.evidence,
            "budget_s": self.budget_s,
            "seconds": self.seconds,
            "inner_val_images": self.inner_val,
        }


def _probe(feats: torch.Tensor, labels: torch.Tensor, classes: int, cfg: TrainConfig, seed: int, names) -> ProbeResult:
    """The head engine's cross-validated L-BFGS probe on N x D features: its CV accuracy is the evidence."""
    head = torch.nn.Linear(int(feats.shape[-1]), classes)
    result = train_head(head, feats, labels, replace(cfg, seed=seed), solver="lbfgs", class_names=names)
    assert result.probe is not None
    return result.probe


def _centre_features(
    body: Backbone, images: LabelledImages, features: FeatureConfig, stage: str | None
) -> torch.Tensor:
    cfg = replace(features, stage=stage, progress=False, views=1)
    return FeatureCache(body, cfg, "cpu").features(images, ["center"])[:, 0]  # N x D


def _row(evidence: str, regime: str | None, correct: torch.Tensor | None, seconds: float, note: str = "", **kw) -> dict:
    row = {"evidence": evidence, "regime": regime, "seconds": round(seconds, 2), "note": note, **kw}
    if correct is not None:
        row["accuracy"] = float(correct.float().mean())
        row["accuracy_ci95"] = list(bootstrap_ci(correct.float().numpy()))
        row["n"] = int(correct.numel())
    return row


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
    features = cfg.features
    classes = len(train.classes)
    inner_tr, inner_va = stratified_split(train.labels, INNER_VAL_FRACTION, seed)
    y_va = train.labels[inner_va]
    evidence: list[dict] = []
    correct: dict[str, torch.Tensor] = {}

    torch.manual_seed(seed)
    body = make_backbone(presets["frozen"])
    apply_regime(body, presets["frozen"])
    t = time.perf_counter()
    feats = _centre_features(body, train, features, None)
    cv = _probe(feats, train.labels, classes, cfg, seed, train.classes)
    evidence.append(
        _row(
            "linear probe, penultimate layer",
            None,
            None,
            time.perf_counter() - t,
            "; ".join(cv.notes),
            cv_accuracy=cv.cv_accuracy,
            folds=cv.folds,
            width=int(feats.shape[1]),
        )
    )
    stages = body.stages()
    if len(stages) >= 3:  # an earlier layer: if it beats the top one, the top is too specific to the source
        t = time.perf_counter()
        early = _centre_features(body, train, features, stages[-2].name)
        cv_early = _probe(early, train.labels, classes, cfg, seed, train.classes)
        evidence.append(
            _row(
                f"linear probe, stage {stages[-2].name}",
                None,
                None,
                time.perf_counter() - t,
                "; ".join(cv_early.notes),
                cv_accuracy=cv_early.cv_accuracy,
                folds=cv_early.folds,
                width=int(early.shape[1]),
            )
        )
    t = time.perf_counter()
    inner = torch.nn.Linear(int(feats.shape[1]), classes)
    train_head(inner, feats[inner_tr], train.labels[inner_tr], replace(cfg, seed=seed), solver="lbfgs")
    correct["frozen"] = predict_head(inner, feats[inner_va]).argmax(1) == y_va
    evidence.append(_row("candidate", "frozen", correct["frozen"], time.perf_counter() - t, "L-BFGS linear probe"))

    candidates = [r for r in ("partial", "full") if r in presets]
    for i, name in enumerate(candidates):
        remaining = budget - (time.perf_counter() - started)
        share = remaining / (len(candidates) - i)
        if share < MIN_FINETUNE_S:
            evidence.append(_row("candidate", name, None, 0.0, skipped_note(remaining, share)))
            continue
        t = time.perf_counter()
        torch.manual_seed(seed)
        regime = presets[name]
        backbone = make_backbone(regime)
        head = create_head(cfg.head.name, backbone.num_features, classes, **cfg.head.params)
        run_cfg = replace(cfg, seed=seed, trainer=replace(cfg.trainer, max_time={"seconds": max(int(share), 1)}))
        once = RunOptions(validate_each_epoch=False)
        fitted = fit_classifier(
            backbone, head, regime, train.subset(inner_tr), train.subset(inner_va), run_cfg, None, True, once
        )
        seconds = time.perf_counter() - t
        correct[name] = fitted.val_probs.argmax(1) == y_va
        evidence.append(
            _row("candidate", name, correct[name], seconds, allowance_note(share, seconds), allowed_s=round(share, 2))
        )

    chosen, reason = _decide(correct, len(inner_va))
    if set(correct) == {"frozen"}:
        reason = f"the budget (auto.budget_s={budget:g}) left no time for a fine-tune: the frozen result"
    result = AutoResult(chosen, reason, evidence, budget, time.perf_counter() - started, len(inner_va))
    log.info("auto: %s (%s)", chosen, reason)
    return result


def skipped_note(remaining: float, share: float) -> str:
    """Why a fine-tune was not started, in seconds that add up (never a negative amount left)."""
    if remaining <= 0:
        return "skipped: the budget was spent"
    return f"skipped: {share:.0f} s of the budget for it, under the {MIN_FINETUNE_S:g} s a fine-tune needs"


def allowance_note(share: float, seconds: float) -> str:
    """A candidate's allowance beside what it took: `max_time` stops training only, so building the body, the
    LP-FT probe and scoring come on top; an overrun beyond 10% is stated, not hidden."""
    if seconds > share * 1.1:
        return f"{share:.0f} s allowed, took {seconds:.0f} s: {seconds - share:.0f} s over (set-up and scoring)"
    cut = " (stopped at its share of the budget)" if seconds >= share * 0.95 else ""
    return f"{share:.0f} s allowed{cut}"


def _decide(correct: dict[str, torch.Tensor], n: int) -> tuple[str, str]:
    """The most accurate candidate on the inner validation images (exact ties go to the cheaper regime); the paired
    test against frozen is reported beside it, not used as a veto: on a few dozen images McNemar rarely reaches
    p < 0.05, and falling back to frozen whenever it does not cost 21 points on digits (bench/quality.py)."""
    ranked = sorted(correct, key=lambda r: (-float(correct[r].float().mean()), ORDER.index(r)))
    best = ranked[0]
    if best == "frozen":
        return best, f"frozen is the most accurate on the {n} inner-validation images"
    verdict = compare_models(best, correct[best], "frozen", correct["frozen"])
    test = mcnemar_exact(correct[best], correct["frozen"])
    caution = "" if test["p_value"] < 0.05 else " (not significant on this little data: more images would tell)"
    return best, f"the most accurate on the {n} inner-validation images; {verdict}{caution}"

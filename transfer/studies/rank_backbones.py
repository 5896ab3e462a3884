"""Which backbone: rank candidate bodies on the user's labelled images by the frozen linear probe's cross-validated
accuracy (`command=rank-backbones backbones=[a,b,c]`, and `backbone.name=auto` in a fit).

Per candidate, the start-up sequence builds the body (its weights resolved first: a name with no network and nothing
cached raises the one-line offline error, and that candidate is skipped with it; the others are ranked), the images
are read at its store size, and its features come from the FeatureCache as the frozen regime reads them
(probe_cv.frozen_features). Every labelled image but test/ is used: test/ is scored once, at the end of a fit, never
chosen on. The score is the converged L-BFGS probe cross-validated over those images (probe_cv.probe_cv_on): pooled
out-of-fold accuracy with its bootstrap interval, the same measurement for every body. With more than
`rank.prefilter_above` candidates, LogME (eval/logme.py, You et al. 2021) ranks them all from the features in a
fraction of a second and only the best `rank.keep` are probed. The winner is the most accurate (ties: the better
balanced accuracy, then the smaller body), with an exact McNemar test against the runner-up on the same images.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from transfer.atomic import write_text_atomic
from transfer.backbones.catalog import get_spec
from transfer.backbones.config import BackboneConfig
from transfer.errors import UserError
from transfer.eval.logme import logme
from transfer.eval.stats import compare_models
from transfer.studies.config import AUTO_BACKBONE, candidate_config, check_backbones
from transfer.studies.probe_cv import frozen_features, probe_cv_on
from transfer.studies.startup import FitRequest

JSON_NAME = "rank_backbones.json"


@dataclass
class Candidate:
    """One body and what was measured of it."""

    label: str  # how the table names it: the name, and its weights when they are not the default
    backbone: dict  # backbone.* (name, pretrained, weights, kwargs): what `backbone=` the winner is fitted with
    status: str = "ranked"  # ranked | pre-filtered (by LogME) | skipped (could not be built; `reason`)
    reason: str = ""
    accuracy: float | None = None  # pooled out-of-fold accuracy of the probe
    accuracy_ci95: list[float] | None = None
    balanced_accuracy: float | None = None
    logme: float | None = None
    l2: float | None = None
    folds: int | None = None
    feature_seconds: float | None = None  # reading (and extracting) the features
    extracted: int = 0  # image-views extracted now (0: all from the cache)
    probe_seconds: float | None = None
    params: int | None = None
    dim: int | None = None
    correct: list[bool] = field(default_factory=list, repr=False)  # out-of-fold correctness per image (McNemar)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "correct"}


@dataclass
class Ranking:
    candidates: list[Candidate]  # ranked (best first), then pre-filtered (by LogME), then skipped
    n_images: int
    classes: list[str]
    data: str
    verdict: str = ""  # the winner against the runner-up (exact McNemar on the same images)
    prefiltered: bool = False

    @property
    def winner(self) -> Candidate | None:
        return next((c for c in self.candidates if c.status == "ranked"), None)

    @property
    def skipped(self) -> list[Candidate]:
        return [c for c in self.candidates if c.status == "skipped"]

    def to_dict(self) -> dict:
        w = self.winner
        return {
            "winner": w.label if w else None,
            "winner_backbone": w.backbone if w else None,
            "verdict": self.verdict,
            "n_images": self.n_images,
            "classes": self.classes,
            "data": self.data,
            "prefiltered_by_logme": self.prefiltered,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def label_of(b: BackboneConfig) -> str:
    """'resnet50', 'resnet50 (random weights)', 'mnv2 (weights: mnv2.safetensors)', plus kwargs when given."""
    extra = []
    if b.weights:
        extra.append(f"weights: {Path(str(b.weights)).name}")
    elif not b.pretrained:
        extra.append("random weights")
    extra += [f"{k}={v}" for k, v in b.kwargs.items()]
    return b.name + (f" ({', '.join(extra)})" if extra else "")


def candidates_of(entries: list | None) -> list[Candidate]:
    """The `backbones` entries as candidates; an unknown name is a UserError naming its entry (before any work)."""
    if entries is None:
        raise UserError("backbones: list the candidates to rank, e.g. backbones=[resnet18,resnet50].")
    check_backbones(entries)
    out: list[Candidate] = []
    for i, entry in enumerate(entries):
        b = candidate_config(entry)
        if b.name == AUTO_BACKBONE:
            raise UserError(f"backbones[{i}]=auto: a candidate names a backbone; auto is what ranks them.")
        try:
            get_spec(b.name)
        except UserError as e:
            raise UserError(f"backbones[{i}]: {e}") from None
        label = label_of(b)
        same = sum(c.label == label or c.label.startswith(f"{label} #") for c in out)
        out.append(Candidate(f"{label} #{same + 1}" if same else label, asdict(b)))
    return out


def rank_backbones(req: FitRequest, entries: list | None, write: bool = True) -> Ranking:
    """Rank `entries` (the `backbones` list) on the request's labelled images; rank_backbones.json in the run dir."""
    cands = candidates_of(entries)
    measured: dict[str, dict] = {}
    reference: list[str] | None = None
    for i, c in enumerate(cands):
        print(f"candidate {i + 1}/{len(cands)}: {c.label}")
        quiet = io.StringIO()  # the folder's scan report is printed once, for the first candidate
        try:
            with contextlib.redirect_stdout(quiet) if reference is not None else contextlib.nullcontext():
                ff = frozen_features(replace(req, cfg=replace(req.cfg, backbone=BackboneConfig(**c.backbone))), False)
        except UserError as e:
            c.status, c.reason = "skipped", str(e).splitlines()[0]
            print(f"  skipped: {c.reason}")
            continue
        names = list(ff.images.names)
        if reference is None:
            reference = names
        c.params, c.dim = ff.params, int(ff.features.shape[-1])
        c.feature_seconds, c.extracted = ff.seconds, ff.extracted
        c.logme = logme(ff.centre.numpy(), ff.images.labels.numpy(), len(ff.images.classes))
        measured[c.label] = {
            "features": ff.features,
            "labels": ff.images.labels,
            "classes": list(ff.images.classes),
            "groups": ff.images.digests(),
            "names": names,
        }
        del ff  # the pixels: only the features are kept per candidate
    if not measured:
        reasons = "; ".join(f"{c.label}: {c.reason}" for c in cands)
        raise UserError(f"backbones: none of the {len(cands)} candidates could be built ({reasons}).")
    ok = [c for c in cands if c.label in measured]
    prefiltered = len(ok) > req.cfg.rank.prefilter_above
    if prefiltered:
        by_logme = sorted(ok, key=lambda c: -(c.logme or 0.0))
        for c in by_logme[req.cfg.rank.keep :]:
            c.status = "pre-filtered"
        print(
            f"LogME pre-filter: {len(ok)} candidates > rank.prefilter_above={req.cfg.rank.prefilter_above}; probing "
            f"the best {req.cfg.rank.keep}: {', '.join(c.label for c in by_logme[: req.cfg.rank.keep])}"
        )
    for c in ok:
        if c.status == "ranked":
            try:
                _probe(c, measured[c.label], req)
            except UserError as e:  # e.g. features identical for every image: this body cannot be ranked
                c.status, c.reason = "skipped", f"its probe could not be fitted: {str(e).splitlines()[0]}"
                print(f"  skipped: {c.reason}")
    if not any(c.status == "ranked" for c in cands):
        reasons = "; ".join(f"{c.label}: {c.reason}" for c in cands)
        raise UserError(f"backbones: no candidate could be scored ({reasons}).")
    ranking = _ordered(cands, measured, req)
    if write:
        write_text_atomic(Path(req.out_dir) / JSON_NAME, json.dumps(ranking.to_dict(), indent=2) + "\n")
    return ranking


def _probe(c: Candidate, m: dict, req: FitRequest) -> None:
    cv = probe_cv_on(m["features"], m["labels"], m["classes"], m["groups"], req)
    c.accuracy, c.accuracy_ci95 = cv.metrics["accuracy"], cv.metrics.get("accuracy_ci95")
    c.balanced_accuracy = cv.metrics["balanced_accuracy"]
    c.l2, c.folds, c.probe_seconds = cv.l2[0], cv.folds, cv.seconds
    c.correct = (cv.probs.argmax(1) == m["labels"]).tolist()
    ci = c.accuracy_ci95 or [c.accuracy, c.accuracy]
    print(f"  {c.label}: CV probe accuracy {c.accuracy:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}), LogME {c.logme:.3f}")


def _ordered(cands: list[Candidate], measured: dict, req: FitRequest) -> Ranking:
    """Ranked best first (accuracy, then balanced accuracy, then fewer parameters), the verdict, the rest after."""
    ranked = sorted(
        (c for c in cands if c.status == "ranked"),
        key=lambda c: (-(c.accuracy or 0.0), -(c.balanced_accuracy or 0.0), c.params or 0),
    )
    rest = sorted((c for c in cands if c.status == "pre-filtered"), key=lambda c: -(c.logme or 0.0))
    first = measured[ranked[0].label]
    verdict = ""
    if len(ranked) > 1 and measured[ranked[1].label]["names"] == first["names"]:  # the same images: paired
        a, b = ranked[0], ranked[1]
        verdict = compare_models(a.label, torch.tensor(a.correct), b.label, torch.tensor(b.correct))
        if a.accuracy == b.accuracy:
            verdict += "; equal accuracy: ordered by balanced accuracy, then size"
    n = len(first["names"])
    data = str(req.cfg.data.root) if req.cfg.data.kind == "folder" else str(req.cfg.data.kind)
    skipped = [c for c in cands if c.status == "skipped"]
    return Ranking(ranked + rest + skipped, n, first["classes"], data, verdict, prefiltered=bool(rest))


def choose_backbone(req: FitRequest) -> tuple[FitRequest, dict]:
    """`backbone.name=auto`: rank `backbones` on the training images (never test/), then the request with the winner
    as `backbone.*`; returns it and the ranking (metrics.json's `backbone_auto`)."""
    if not req.cfg.backbones:
        raise UserError(
            "backbone.name=auto: list the candidates to choose from, e.g. backbones=[resnet18,resnet50] "
            "(or pick one: backbone=resnet50)."
        )
    ranking = rank_backbones(req, list(req.cfg.backbones))
    w = ranking.winner
    assert w is not None  # rank_backbones raised when no candidate could be built
    ci = w.accuracy_ci95 or [w.accuracy, w.accuracy]
    print(
        f"backbone=auto: {w.label} (cross-validated probe accuracy {w.accuracy:.3f}, 95% CI {ci[0]:.3f}-{ci[1]:.3f}, "
        f"over {ranking.n_images} training images; {ranking.verdict or 'the only candidate ranked'})"
    )
    for c in ranking.skipped:
        print(f"  skipped {c.label}: {c.reason}")
    chosen = BackboneConfig(**w.backbone)
    return replace(req, cfg=replace(req.cfg, backbone=chosen)), ranking.to_dict()

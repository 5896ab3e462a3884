"""Suspected label errors: confident learning (Northcutt et al. 2021, cleanlab) on out-of-fold probabilities.

Each row of `pred_probs` must come from a model that did not train on that image (the cross-validated headline's
pooled predictions): a model scored on its own training images agrees with their labels, wrong ones included, and
finds nothing. cleanlab estimates the joint of given and true labels from per-class confidence thresholds, prunes the
images most likely to be off-diagonal, and ranks them by a label-quality score (here the probability the model gives
the GIVEN label: lowest first). Plain arrays in, a small dataclass out; no training.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from transfer.atomic import write_text_atomic

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")
RANKINGS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
CSV_COLUMNS = ("rank", "index", "name", "given", "suggested", "score", "p_given", "p_suggested")


@dataclass(frozen=True)
class LabelIssue:
    """One image whose given label is probably wrong."""

    index: int  # row in the inputs
    name: str  # the image's identifier (a path or an id)
    given: str  # the label it was filed under
    suggested: str  # the label the model believes (argmax of its out-of-fold probabilities)
    score: float  # cleanlab's label-quality score of the given label, in [0, 1]: lower = more likely wrong
    p_given: float  # the model's probability of the given label
    p_suggested: float  # and of the suggested one


@dataclass
class LabelIssues:
    """The flagged images, most likely mislabelled first, and how they were found."""

    issues: list[LabelIssue]
    n_images: int
    filter_by: str
    ranked_by: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.issues)

    def summary(self) -> str:
        """One line for the terminal."""
        if not self.issues:
            return f"no label issues found among {self.n_images} images"
        k = len(self.issues)
        return f"{k} image{'s' if k != 1 else ''} may be mislabelled (of {self.n_images}): see report"

    def rows(self) -> list[dict]:
        """One dict per flagged image, ranked, with the CSV's columns."""
        return [{"rank": r, **asdict(issue)} for r, issue in enumerate(self.issues, 1)]

    def to_csv(self, path: str | Path) -> Path:
        """Write the ranked list (CSV_COLUMNS; a header alone when nothing is flagged) atomically: a kill mid-write
        leaves the previous file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for row in self.rows():
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        return write_text_atomic(path, buf.getvalue())

    def to_dict(self) -> dict:
        """What metrics.json may keep: the counts, the method and the ranked rows."""
        return {
            "count": len(self.issues),
            "n_images": self.n_images,
            "filter_by": self.filter_by,
            "ranked_by": self.ranked_by,
            "notes": list(self.notes),
            "issues": self.rows(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> LabelIssues:
        """The inverse of `to_dict` (metrics.json's `label_issues` back to the ranked list)."""
        keys = [f.name for f in fields(LabelIssue)]
        issues = [LabelIssue(**{k: row[k] for k in keys}) for row in d.get("issues", [])]
        return cls(issues, int(d["n_images"]), str(d["filter_by"]), str(d["ranked_by"]), list(d.get("notes", [])))


def find_label_issues(
    labels: Sequence[int] | np.ndarray,
    pred_probs: np.ndarray,
    classes: Sequence[str],
    names: Sequence[str],
    *,
    filter_by: str = "both",
    ranked_by: str = "self_confidence",
) -> LabelIssues:
    """Images whose given label is likely wrong, by confident learning on OUT-OF-FOLD probabilities (N x K).

    `filter_by` picks which images are flagged. `both` (flagged by cleanlab's prune_by_noise_rate AND
    prune_by_class) had precision and recall >= 0.6 on every seed of bench/label_issues.py (weather, 5% flipped) and
    the better precision of the two filters that did (fewer false alarms for the user to review); cleanlab's own
    default, prune_by_noise_rate, fell to precision 0.58 on one seed. `ranked_by` orders the flagged images (the three
    scores ranked flipped images alike there: mean AUROC 0.993 to 0.997). Classes absent from `labels` are allowed;
    where fewer than two classes appear nothing is flagged (there is nothing to confuse) and `notes` says so.
    """
    if filter_by not in FILTERS:
        raise ValueError(f"filter_by={filter_by!r}: choose one of {', '.join(FILTERS)}")
    if ranked_by not in RANKINGS:
        raise ValueError(f"ranked_by={ranked_by!r}: choose one of {', '.join(RANKINGS)}")
    y, probs = _check_inputs(labels, pred_probs, classes, names)
    notes: list[str] = []
    present = np.unique(y)
    if len(present) < 2:
        notes.append(f"{len(present)} class(es) among the labels: nothing to confuse, no label issues searched")
        return LabelIssues([], len(y), filter_by, ranked_by, notes)
    flagged = _cleanlab_issues(y, probs, present, filter_by, ranked_by)
    quality = _quality_scores(y, probs, present, ranked_by)
    pred = probs.argmax(1)
    issues = [
        LabelIssue(
            index=int(i),
            name=str(names[i]),
            given=str(classes[y[i]]),
            suggested=str(classes[pred[i]]),
            score=float(quality[i]),
            p_given=float(probs[i, y[i]]),
            p_suggested=float(probs[i, pred[i]]),
        )
        for i in flagged
    ]
    return LabelIssues(issues, len(y), filter_by, ranked_by, notes)


def label_quality_scores(
    labels: Sequence[int] | np.ndarray, pred_probs: np.ndarray, ranked_by: str = "self_confidence"
) -> np.ndarray:
    """cleanlab's label-quality score of every image's given label, flagged or not (lower = more likely wrong): the
    order `find_label_issues` ranks by, for a caller that wants the whole ranking."""
    if ranked_by not in RANKINGS:
        raise ValueError(f"ranked_by={ranked_by!r}: choose one of {', '.join(RANKINGS)}")
    p = np.asarray(pred_probs.detach().cpu() if hasattr(pred_probs, "detach") else pred_probs)
    y, probs = _check_inputs(labels, p, [str(c) for c in range(p.shape[-1])], range(len(p)))
    return _quality_scores(y, probs, np.unique(y), ranked_by)


def _check_inputs(labels, pred_probs, classes, names) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 N, probabilities as float64 N x K with rows renormalised (float32 sums drift from 1)."""
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).astype(np.int64).ravel()
    p = pred_probs.detach().cpu().numpy() if hasattr(pred_probs, "detach") else np.asarray(pred_probs)
    p = p.astype(np.float64)
    if p.ndim != 2 or p.shape[0] != len(y):
        raise ValueError(f"pred_probs must be N x K with N = {len(y)} labels, got shape {p.shape}")
    if p.shape[1] != len(classes):
        raise ValueError(f"pred_probs has {p.shape[1]} columns for {len(classes)} classes")
    if len(names) != len(y):
        raise ValueError(f"{len(names)} names for {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise ValueError(f"labels must lie in [0, {len(classes)}), got {y.min()}..{y.max()}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("pred_probs must be finite and non-negative")
    sums = p.sum(1, keepdims=True)
    if (sums <= 0).any():
        raise ValueError("every row of pred_probs needs a positive sum")
    return y, p / sums


def _compact(y: np.ndarray, probs: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 0..k-1 over the classes present, and the probabilities of those columns (renormalised):
    cleanlab expects every class in 0..K-1 to have labelled examples."""
    remap = np.full(probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    p = probs[:, present]
    return remap[y], p / np.maximum(p.sum(1, keepdims=True), 1e-12)


def _cleanlab_issues(y, probs, present, filter_by: str, ranked_by: str) -> np.ndarray:
    """Indices of the flagged images, ranked (most likely wrong first)."""
    from cleanlab.filter import find_label_issues as cl_find  # pulls pandas: imported only when used

    y_c, p_c = _compact(y, probs, present)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about tiny classes; the result is still well defined
        ranked = cl_find(y_c, p_c, filter_by=filter_by, return_indices_ranked_by=ranked_by, n_jobs=1)
    return np.asarray(ranked, dtype=np.int64)


def _quality_scores(y, probs, present, ranked_by: str) -> np.ndarray:
    """cleanlab's label-quality score of every image's given label (lower = more likely wrong)."""
    from cleanlab.rank import get_label_quality_scores

    y_c, p_c = _compact(y, probs, present)
    return np.asarray(get_label_quality_scores(y_c, p_c, method=ranked_by), dtype=np.float64)

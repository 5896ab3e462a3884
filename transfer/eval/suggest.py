"""What to label next: rank unlabelled images by how much a label would help, without picking fifty near-copies.

Each image gets an uncertainty from the current model's probabilities (margin: 1 - (p1 - p2); or entropy / log K),
and images are then chosen greedily, one at a time, by

    uncertainty_i * distance_i ** diversity

where distance_i is the Euclidean distance, on L2-normalised and centred features, from image i to the nearest image
already labelled or already chosen: the k-center greedy step of the core-set method (Sener & Savarese 2018), weighted
by uncertainty. A near-copy of a chosen image sits at distance ~0 and drops to the bottom; `diversity=0` is pure
uncertainty sampling, a large `diversity` approaches pure k-center (`measure="none"` is exactly k-center greedy).
Plain numpy: the caller brings the probabilities and the cached features; nothing is trained here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transfer.eval.scoring import write_rows_csv

MEASURES = ("margin", "entropy", "none")
MAX_DISTANCE = 2.0  # between unit vectors: the distance every image starts at when nothing is labelled yet
BLOCK_ROWS = 4096  # rows of the pool per block of the initial distance computation (bounded memory)


@dataclass
class Suggestions:
    """The chosen images (indices into the pool) in the order chosen, and why each was chosen."""

    order: np.ndarray  # int64, n: pool indices, first = label this first
    scores: np.ndarray  # the selection score when chosen (uncertainty * distance ** diversity)
    uncertainty: np.ndarray  # of each chosen image, in [0, 1]
    distance: np.ndarray  # to the nearest labelled-or-already-chosen image when chosen, in [0, 2]
    measure: str
    diversity: float

    def __len__(self) -> int:
        return len(self.order)

    def rows(self, names: Sequence[str] | None = None) -> list[dict]:
        """One dict per chosen image (rank, index, name, score, uncertainty, distance): suggest.csv's rows."""
        return [
            {
                "rank": r + 1,
                "index": int(i),
                "name": names[i] if names is not None else str(int(i)),
                "score": float(self.scores[r]),
                "uncertainty": float(self.uncertainty[r]),
                "distance": float(self.distance[r]),
            }
            for r, i in enumerate(self.order)
        ]

    def to_csv(self, path: str | Path, names: Sequence[str] | None = None) -> Path:
        """Write `rows(names)` as suggest.csv, atomically."""
        return write_rows_csv(self.rows(names), path)


def uncertainty(probs: np.ndarray, measure: str = "margin") -> np.ndarray:
    """Per-row uncertainty in [0, 1] of N x K probabilities: 1 - (top1 - top2) for margin, entropy / log K for
    entropy, 1 everywhere for none."""
    p = _as_array(probs, "probs").astype(np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be N x K with K >= 2, got shape {p.shape}")
    if measure == "margin":
        top = np.sort(p, axis=1)[:, -2:]
        return np.clip(1.0 - (top[:, 1] - top[:, 0]), 0.0, 1.0)
    if measure == "entropy":
        q = np.clip(p, 1e-12, 1.0)
        return np.clip(-(q * np.log(q)).sum(1) / np.log(p.shape[1]), 0.0, 1.0)
    if measure == "none":
        return np.ones(len(p))
    raise ValueError(f"measure={measure!r}: choose one of {', '.join(MEASURES)}")


def diversity_space(features: np.ndarray, labelled: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pool and labelled features as unit rows after L2-normalising and centring on their joint mean: the common
    direction every post-ReLU feature shares would otherwise make every pair look alike."""
    pool = _unit(_as_array(features, "features"))
    has_labelled = labelled is not None and len(labelled) > 0
    lab = _unit(_as_array(labelled, "labelled_features")) if has_labelled else np.empty((0, pool.shape[1]), np.float32)
    if lab.shape[1] != pool.shape[1]:
        raise ValueError(f"labelled_features has width {lab.shape[1]}, features {pool.shape[1]}")
    mean = np.concatenate([pool, lab]).mean(0, keepdims=True)
    return _unit(pool - mean), _unit(lab - mean)


def suggest_to_label(
    probs: np.ndarray,
    features: np.ndarray,
    n: int,
    *,
    labelled_features: np.ndarray | None = None,
    measure: str = "margin",
    diversity: float = 1.0,
) -> Suggestions:
    """Choose `n` pool images to label (fewer when the pool is smaller), most useful first.

    probs: N x K from the current model on the unlabelled pool; features: N x D cached features of the same images;
    labelled_features: M x D features of the images already labelled (their neighbourhood counts as covered).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not (np.isfinite(diversity) and diversity >= 0):
        raise ValueError(f"diversity must be a finite number >= 0, got {diversity}")
    u = uncertainty(probs, measure)
    pool, lab = diversity_space(features, labelled_features)
    if len(pool) != len(u):
        raise ValueError(f"{len(u)} probability rows for {len(pool)} feature rows")
    dist = _nearest_distance(pool, lab)
    chosen = np.zeros(len(pool), dtype=bool)
    picks: list[int] = []
    rows: list[tuple[float, float, float]] = []
    for _ in range(min(n, len(pool))):
        score = u * dist**diversity if diversity else u.copy()
        score[chosen] = -np.inf
        i = int(np.argmax(score))  # ties: the lowest index (deterministic)
        picks.append(i)
        rows.append((float(score[i]), float(u[i]), float(dist[i])))
        chosen[i] = True
        dist = np.minimum(dist, _distance_to(pool, pool[i]))
    s, un, d = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    return Suggestions(np.array(picks, dtype=np.int64), s, un, d, measure, float(diversity))


def _as_array(x, what: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return a


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _distance_to(pool: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Euclidean distance of unit rows to one unit vector: sqrt(2 - 2 cos)."""
    return np.sqrt(np.clip(2.0 - 2.0 * (pool @ v), 0.0, None)).astype(np.float64)


def _nearest_distance(pool: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Each pool row's distance to its nearest labelled row (MAX_DISTANCE when nothing is labelled)."""
    if len(lab) == 0:
        return np.full(len(pool), MAX_DISTANCE)
    best = np.empty(len(pool), dtype=np.float64)
    for lo in range(0, len(pool), BLOCK_ROWS):
        cos = pool[lo : lo + BLOCK_ROWS] @ lab.T  # rows x M
        best[lo : lo + BLOCK_ROWS] = np.sqrt(np.clip(2.0 - 2.0 * cos.max(1), 0.0, None))
    return best

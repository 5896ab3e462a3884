"""Near-duplicate images by cosine similarity of their embeddings: test images leaked from train/, and
near-identical images filed under different labels. Both inflate or muddle a score on a small set.

The similarity matrix is computed in row blocks (about `block_mb` of float32 each), so 5,000 x 5,000 images
never hold the full 100 MB matrix; only the best `max_pairs` pairs are kept as the blocks go.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Pair = tuple[int, int, float]


def _unit_rows(x) -> np.ndarray:
    """Embeddings as float32 rows of unit length (zero rows stay zero: similar to nothing)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be N x D, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _top(i: np.ndarray, j: np.ndarray, s: np.ndarray, k: int | None) -> tuple[np.ndarray, ...]:
    """The k most similar of the candidate pairs (all when k is None)."""
    if k is None or s.size <= k:
        return i, j, s
    best = np.argpartition(-s, k - 1)[:k]
    return i[best], j[best], s[best]


def _similar_pairs(
    emb_a,
    emb_b,
    threshold: float,
    max_pairs: int | None,
    block_mb: float,
    keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> list[Pair]:
    """Pairs (i, j, cosine) with cosine >= threshold, i < j within one set; `keep(i, j)` filters candidates."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1 or None, got {max_pairs}")
    a = _unit_rows(emb_a)
    same = emb_b is None
    b = a if same else _unit_rows(emb_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings differ in width: {a.shape[1]} vs {b.shape[1]}")
    rows = max(1, int(block_mb * 2**20 // (4 * max(1, b.shape[0]))))
    found_i, found_j, found_s = np.empty(0, int), np.empty(0, int), np.empty(0, np.float32)
    for start in range(0, a.shape[0], rows):
        stop = min(start + rows, a.shape[0])
        first = start if same else 0  # within one set only columns j >= start can hold pairs with i < j
        sims = a[start:stop] @ b[first:].T  # rows x (N_b - first)
        i, j = np.nonzero(sims >= threshold)
        s = sims[i, j]
        i, j = i + start, j + first
        wanted = j > i if same else np.ones(i.size, bool)
        if keep is not None and i.size:
            wanted &= keep(i, j)
        found_i, found_j, found_s = _top(
            np.concatenate([found_i, i[wanted]]),
            np.concatenate([found_j, j[wanted]]),
            np.concatenate([found_s, s[wanted]]),
            max_pairs,
        )
    order = np.lexsort((found_j, found_i, -found_s))
    return [(int(found_i[k]), int(found_j[k]), float(found_s[k])) for k in order]


def near_duplicates(
    emb_a, emb_b=None, threshold: float = 0.95, max_pairs: int | None = 50, block_mb: float = 8.0
) -> list[Pair]:
    """Pairs (i, j, cosine) at or above threshold, most similar first: within emb_a (i < j) or emb_a x emb_b."""
    return _similar_pairs(emb_a, emb_b, threshold, max_pairs, block_mb)


def leakage_pairs(
    train_emb, test_emb, threshold: float = 0.95, max_pairs: int | None = 50, block_mb: float = 8.0
) -> list[Pair]:
    """(train index, test index, cosine) for test images that nearly duplicate a training image."""
    return _similar_pairs(train_emb, test_emb, threshold, max_pairs, block_mb)


def label_conflicts(
    emb, labels, threshold: float = 0.95, max_pairs: int | None = 50, block_mb: float = 8.0
) -> list[Pair]:
    """(i, j, cosine) for near-identical images with different labels (i < j): a labelling mistake or a class
    the images cannot tell apart. Pairs with equal labels are dropped before max_pairs is applied."""
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).ravel()
    if y.size != len(emb):
        raise ValueError(f"{y.size} labels for {len(emb)} embeddings")
    return _similar_pairs(emb, None, threshold, max_pairs, block_mb, keep=lambda i, j: y[i] != y[j])

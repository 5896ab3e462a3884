"""Duplicate images in one labelled set, from the decoded pixels alone (every regime has them, no features needed).

A held-out image that copies a training image inflates the score; one photo filed under two labels muddles it. Two
tests, both on the uint8 pixels at store size:

- **exact**: the same pixels (transfer.features.key.pixel_digests), whatever the files' names or bytes;
- **near**: the same photo re-encoded, resized or slightly cropped. Each image becomes small thumbnails of its whole
  square and of nine 95% crops of it (3 x 3 positions), each normalised for brightness and contrast, then centred and
  whitened on the run's own images: what every photo of the set shares (a sky at the top, a mean colour) weighs
  nothing, and what tells one photo from another weighs most. Two images are a pair when the cosine of their best
  aligned views is at least SIMILAR and beats both images' NEIGHBOUR-th nearest image by MARGIN: a copy stands out
  from its neighbours, two of a crowd of look-alikes (scans of one digit, two grey skies) do not.

The thresholds are measured, not guessed: bench/duplicates.py plants copies of real photos (JPEG quality 60, half
size, a 5% crop, all three) and prints recall and the false pairs among the originals (docs/benchmarks.md).

Similarities are computed in row blocks (about `block_mb` of float32 each), so 5,000 images never hold a 5,000 x
5,000 matrix, and only each image's NEIGHBOUR nearest stay as candidates.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from transfer.atomic import write_text_atomic
from transfer.data.digests import pixel_digests

log = logging.getLogger(__name__)

THUMB = 16  # thumbnail side: coarse enough to ignore re-encoding and resizing, fine enough to tell photos apart
CROP = 0.95  # the crops each image is also compared as: a copy cropped by up to 5% lines up with one of them
DIMS = 128  # whitened dimensions kept (fewer with few images: at most half the distinct images)
SIMILAR = 0.90  # cosine of the best aligned views
MARGIN = 0.30  # ... above both images' NEIGHBOUR-th nearest image
NEIGHBOUR = 10
MIN_IMAGES = 2 * NEIGHBOUR + 2  # fewer distinct images: only exact copies are looked for
_CHUNK = 16  # images turned into thumbnails at a time: a small float copy of the pixels stays in cache (2x faster)


class DuplicatePair(NamedTuple):
    i: int  # index into the set, i < j
    j: int
    similarity: float  # cosine of the best aligned views; 1.0 for exact copies
    exact: bool


class Duplicates(NamedTuple):
    pairs: list[DuplicatePair]  # exact pairs first, then near pairs, most similar first
    near_checked: bool  # False: too few distinct images to whiten on (MIN_IMAGES), only exact copies looked for


def _crop_boxes(side: float) -> torch.Tensor:
    """(x0, y0, x1, y1) of the whole square and of the CROP squares at 3 x 3 positions."""
    size = side * CROP
    free = side - size
    boxes = [(0.0, 0.0, side, side)]
    for fy, fx in itertools.product((0.0, 0.5, 1.0), repeat=2):
        boxes.append((fx * free, fy * free, fx * free + size, fy * free + size))
    return torch.tensor(boxes, dtype=torch.float32)


def aligned_thumbnails(pixels: torch.Tensor, index: list[int] | None = None) -> np.ndarray:
    """N x V x D views (V = 1 + 9 crops) of N x C x H x W uint8 images (or of pixels[index]): THUMB x THUMB per
    channel, each view with zero mean and unit length (brightness and contrast do not count)."""
    from torchvision.ops import roi_align

    if pixels.ndim != 4:
        raise ValueError(f"pixels must be N x C x H x W, got shape {tuple(pixels.shape)}")
    base = 4 * THUMB  # average-pooled first: every thumbnail pixel then averages many source pixels (no aliasing)
    boxes = _crop_boxes(float(base))
    index = list(range(len(pixels))) if index is None else list(index)
    out = []
    for start in range(0, len(index), _CHUNK):
        chunk = pixels[index[start : start + _CHUNK]].float()
        x = F.interpolate(chunk, size=(base, base), mode="area")  # n x C x 64 x 64: box averages
        n = len(x)
        views = []
        for box in boxes:
            rois = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], box.expand(n, 4)], 1)
            views.append(roi_align(x, rois, THUMB, 1.0, sampling_ratio=4, aligned=True).flatten(1))  # n x C*16*16
        v = torch.stack(views, 1)  # n x V x D
        v = v - v.mean(-1, keepdim=True)
        out.append(v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6))
    return torch.cat(out).numpy() if out else np.zeros((0, len(boxes), pixels.shape[1] * THUMB * THUMB), np.float32)


def whitened(views: np.ndarray, dims: int = DIMS, eps: float = 0.01) -> np.ndarray:
    """The views centred and whitened on the whole views of these images (PCA, `dims` components, eigenvalues floored
    at `eps` of the largest), as float32 unit vectors N x V x dims."""
    whole = views[:, 0].astype(np.float64)
    mean = whole.mean(0)
    _, s, vt = np.linalg.svd(whole - mean, full_matrices=False)
    var = s**2 / len(whole)
    k = max(1, min(dims, len(whole) // 2, int((var > 1e-12 * var[0]).sum())))
    project = (vt[:k].T / np.sqrt(var[:k] + eps * var[0])).astype(np.float32)  # D x k
    z = (views - mean.astype(np.float32)) @ project  # N x V x k
    return (z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def aligned_similar_pairs(
    emb: np.ndarray,
    similar: float = SIMILAR,
    margin: float = MARGIN,
    neighbour: int = NEIGHBOUR,
    block_mb: float = 8.0,
) -> list[tuple[int, int, float]]:
    """(i, j, cosine) with i < j for N x V x D unit views: the best of whole-vs-crop both ways is >= `similar` and
    beats both images' `neighbour`-th nearest other image by `margin` (with two images there is no other: `similar`
    alone). Most similar first."""
    emb = np.asarray(emb.detach().cpu() if hasattr(emb, "detach") else emb, dtype=np.float32)
    if emb.ndim != 3:
        raise ValueError(f"views must be N x V x D, got shape {emb.shape}")
    n, v, d = emb.shape
    if n < 2:
        return []
    k = min(neighbour, n - 1)
    whole = emb[:, 0]  # N x D
    every = emb.reshape(n * v, d)  # image-major: row a*V + view
    rows = max(1, int(block_mb * 2**20 // (4 * v * n)))
    kth = np.empty(n, np.float32)
    cand_i, cand_j, cand_s = [], [], []
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        r = np.arange(stop - start)
        sims = (emb[start:stop].reshape(-1, d) @ whole.T).reshape(stop - start, v, n).max(1)  # crops vs whole
        np.maximum(sims, (whole[start:stop] @ every.T).reshape(stop - start, n, v).max(2), out=sims)  # whole vs crops
        sims[r, r + start] = -2.0  # not its own neighbour
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, 1)
        order = np.argsort(-top, axis=1, kind="stable")
        idx, top = np.take_along_axis(idx, order, 1), np.take_along_axis(top, order, 1)  # rows x k, best first
        kth[start:stop] = top[:, -1]
        ri, ci = np.nonzero(top[:, : max(1, k - 1)] >= similar)  # a pair must beat the k-th: among the first k-1
        cand_i.append(ri + start)
        cand_j.append(idx[ri, ci])
        cand_s.append(top[ri, ci])
    i, j, s = np.concatenate(cand_i), np.concatenate(cand_j), np.concatenate(cand_s)
    ok = s - np.maximum(kth[i], kth[j]) >= margin if k > 1 else np.ones(s.size, bool)
    pairs = zip(i[ok].tolist(), j[ok].tolist(), s[ok].tolist(), strict=True)
    found = {(min(a, b), max(a, b)): sim for a, b, sim in pairs}  # each pair is seen from both of its rows
    return sorted(((a, b, sim) for (a, b), sim in found.items()), key=lambda p: (-p[2], p[0], p[1]))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """numpy's BLAS and torch on one thread for the block."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def find_duplicates(
    pixels: torch.Tensor, max_pairs: int | None = 10_000, block_mb: float = 8.0, digests: list[str] | None = None
) -> Duplicates:
    """Exact and near duplicate pairs among N x C x H x W uint8 images at store size (see the module docstring);
    `digests`: the images' `pixel_digests` when the caller has them."""
    if pixels.ndim != 4:
        raise ValueError(f"pixels must be N x C x H x W, got shape {tuple(pixels.shape)}")
    groups: dict[str, list[int]] = defaultdict(list)
    for k, digest in enumerate(digests if digests is not None else pixel_digests(pixels)):
        groups[digest].append(k)
    members = list(groups.values())  # one group per distinct image, in first-seen order
    pairs = [DuplicatePair(a, b, 1.0, True) for g in members for a, b in itertools.combinations(g, 2)]
    near_checked = len(members) >= MIN_IMAGES
    if near_checked:
        with one_thread():  # small matrices: a second BLAS thread only spins (10x slower on a busy machine, measured)
            emb = whitened(aligned_thumbnails(pixels, [g[0] for g in members]))
            found = aligned_similar_pairs(emb, block_mb=block_mb)
        for a, b, sim in found:
            pairs += [DuplicatePair(*sorted((x, y)), sim, False) for x in members[a] for y in members[b]]
    return Duplicates(pairs[:max_pairs] if max_pairs is not None else pairs, near_checked)


STORED = "transfer.duplicates/1"


def stored_duplicates(pixels: torch.Tensor, digests: list[str], cache: Path | None) -> Duplicates:
    """`find_duplicates`, kept in `cache` under a key of the images' digests (in order) and this file's code: a run on
    the same images finds an earlier run's pairs (1.3 s for 1,009 photos). A missing or unreadable entry is found
    again; a failed write only costs the reuse."""
    if cache is None:
        return find_duplicates(pixels, digests=digests)
    h = hashlib.blake2b(digest_size=16)
    h.update(Path(__file__).read_bytes())
    h.update("\n".join(digests).encode())
    path = Path(cache) / f"{h.hexdigest()}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") == STORED:
            pairs = [DuplicatePair(int(i), int(j), float(s), bool(e)) for i, j, s, e in data["pairs"]]
            return Duplicates(pairs, bool(data["near_checked"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = find_duplicates(pixels, digests=digests)
    text = json.dumps({"format": STORED, "near_checked": found.near_checked, "pairs": [list(p) for p in found.pairs]})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except OSError as e:
        log.info("duplicates: not cached (%s)", e)
    return found


def leakage_pairs(pairs: list[DuplicatePair], train_idx, held_idx) -> list[tuple[int, int, DuplicatePair]]:
    """(train image, held-out image, pair) for every pair with one side in each list (indices into the set)."""
    train, held = set(map(int, train_idx)), set(map(int, held_idx))
    out = []
    for p in pairs:
        if p.i in train and p.j in held:
            out.append((p.i, p.j, p))
        elif p.j in train and p.i in held:
            out.append((p.j, p.i, p))
    return out


def label_conflicts(pairs: list[DuplicatePair], labels) -> list[DuplicatePair]:
    """The pairs whose two images carry different labels: a labelling mistake, or one photo filed twice."""
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).ravel()
    return [p for p in pairs if y[p.i] != y[p.j]]

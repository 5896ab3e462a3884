"""Seeded, stratified splits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from transfer.errors import UserError

Splitter = Callable[[int], tuple[list[int], list[int]]]  # seed -> (train indices, held-out indices)


def stratified_split(
    labels: torch.Tensor,
    val_fraction: float,
    seed: int,
    groups: list[str] | None = None,
    classes: list[str] | None = None,
) -> tuple[list[int], list[int]]:
    """Indices (train, val) with every class represented in both in proportion; same seed, same split.

    `groups` (e.g. file digests): members of one group land on the same side, so identical files never
    leak from training into validation. Every class keeps at least one image on each side, however rare
    (proportional rounding alone would leave a 1-in-50 class out of validation); `classes` names them in errors.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"data.val_fraction={val_fraction}: must be between 0 and 1 (exclusive).")
    first: dict[str, int] = {}
    if groups is not None:
        for i, g in enumerate(groups):
            first.setdefault(g, i)
    reps = np.array(sorted(first.values()) if groups is not None else range(len(labels)), dtype=np.int64)
    y = labels.numpy()[reps]
    counts = np.bincount(y)
    small = [c for c in range(counts.size) if 0 < counts[c] < 2]
    if small:
        name = classes[small[0]] if classes is not None else str(small[0])
        raise UserError(
            f"class {name!r} has {counts[small[0]]} distinct image(s): a seeded split needs at least 2 (one to train, "
            "one to validate); add images of it, or give train/ and val/ folders."
        )
    n_val = max(int(round(val_fraction * len(y))), int((counts > 0).sum()))
    tr, va = train_test_split(reps, test_size=n_val, stratify=y, random_state=seed)
    tr, va = ensure_both_sides(tr, va, labels.numpy(), seed)
    if groups is None:
        return sorted(tr.tolist()), sorted(va.tolist())
    side = {groups[i]: "val" for i in va.tolist()}
    train = [i for i, g in enumerate(groups) if side.get(g) != "val"]
    val = [i for i, g in enumerate(groups) if side.get(g) == "val"]
    return train, val


def ensure_both_sides(train: np.ndarray, val: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Move one (seeded) image of each class missing from a side onto it, from that class's other side, and give the
    side back one image of its most frequent class, so the sizes stay as asked. A no-op when both sides hold every
    class (the proportional split then stands as it was)."""
    rng = np.random.default_rng(seed)
    train, val = list(train.tolist()), list(val.tolist())
    for src, dst in ((train, val), (val, train)):
        for c in sorted(set(y[src].tolist()) - set(y[dst].tolist())):
            pool = [i for i in src if y[i] == c]
            if len(pool) < 2:
                continue  # the class has one image on this side alone: nothing to spare
            moved = pool[int(rng.integers(len(pool)))]
            src.remove(moved)
            dst.append(moved)
            dst_counts = np.bincount(y[dst], minlength=int(y.max()) + 1)
            if dst_counts.max() > 1:
                big = int(dst_counts.argmax())
                back = [i for i in dst if y[i] == big]
                returned = back[int(rng.integers(len(back)))]
                dst.remove(returned)
                src.append(returned)
    return np.array(train, dtype=np.int64), np.array(val, dtype=np.int64)


def split_counts(labels: torch.Tensor, index: list[int], classes: list[str]) -> dict[str, int]:
    counts = torch.bincount(labels[torch.as_tensor(index, dtype=torch.long)], minlength=len(classes)).tolist()
    return dict(zip(classes, counts, strict=True))


def few_shot_split(labels: torch.Tensor, shots: int, seed: int) -> tuple[list[int], list[int]]:
    """`shots` images per class for training (seeded), every other image for testing."""
    gen = torch.Generator().manual_seed(seed)
    train: list[int] = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        if len(idx) <= shots:
            raise UserError(f"data.shots={shots}: class {c} has only {len(idx)} images; lower data.shots.")
        train += idx[torch.randperm(len(idx), generator=gen)[:shots]].tolist()
    test = sorted(set(range(len(labels))) - set(train))
    return sorted(train), test

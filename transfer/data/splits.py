"""Seeded, stratified splits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from transfer.errors import UserError

Splitter = Callable[[int], tuple[list[int], list[int]]]  # seed -> (train indices, held-out indices)


def stratified_split(
    labels: torch.Tensor, val_fraction: float, seed: int, groups: list[str] | None = None
) -> tuple[list[int], list[int]]:
    """Indices (train, val) with every class represented in both in proportion; same seed, same split.

    `groups` (e.g. file digests): members of one group land on the same side, so identical files never
    leak from training into validation.
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
    if counts[counts > 0].min() < 2:
        raise UserError(
            "a class has fewer than 2 distinct images: cannot split it into train and val; add images or a val/ folder."
        )
    n_val = max(int(round(val_fraction * len(y))), int((counts > 0).sum()))
    tr, va = train_test_split(reps, test_size=n_val, stratify=y, random_state=seed)
    if groups is None:
        return sorted(tr.tolist()), sorted(va.tolist())
    side = {groups[i]: "val" for i in va.tolist()}
    train = [i for i, g in enumerate(groups) if side.get(g) != "val"]
    val = [i for i, g in enumerate(groups) if side.get(g) == "val"]
    return train, val


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

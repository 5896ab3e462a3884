"""Cached views: which deterministic (or seeded random) crops of an image get a feature vector each.

The frozen regime keeps augmentation by caching K views per image and sampling one per image each epoch.
Each view is its own cache namespace, so `flip` and `10crop` share the centre view with evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch
from torchvision.transforms import v2

from transfer.backbones.base import Preprocessing
from transfer.data.augment import AugmentConfig, build_eval_transform, build_train_transform
from transfer.errors import UserError

CORNERS = ("tl", "tr", "bl", "br")
ViewTransform = Callable[[torch.Tensor, int], torch.Tensor]  # (C x S x S uint8, seed) -> C x H x W float


def resolve_views(spec: str | int | None, augment: AugmentConfig) -> list[str]:
    """View names for `features.views`: auto (the centre and its mirror when augment.mirror: the head engine keeps the
    mirror only if cross-validation says so), 1, flip, 10crop, or K random augmentations."""
    s = "1" if spec is None else str(spec).strip().lower()
    if s == "auto":
        return ["center", "center_flip"] if augment.mirror else ["center"]
    if s in ("1", "center", "none"):
        return ["center"]
    if s == "flip":
        return ["center", "center_flip"]
    if s == "10crop":
        base = ["center", *CORNERS]
        return base + [f"{v}_flip" for v in base]
    k = s.removeprefix("random")
    if k.isdigit() and int(k) >= 2:
        return [f"random{i}" for i in range(int(k))]
    raise UserError(
        f"features.views={spec!r}: choose auto, 1, flip, 10crop, or an integer K >= 2 (K random augmentations)."
    )


def describe_view(name: str, augment: AugmentConfig) -> dict:
    """What makes a view's features what they are (part of its namespace key)."""
    if name.startswith("random"):
        aug = {k: v for k, v in asdict(augment).items() if k != "pca_noise"}  # PCA noise needs train-set stats
        return {"view": name, "augment": aug}
    return {"view": name}


def _crop(name: str, pre: Preprocessing) -> Callable[[torch.Tensor], torch.Tensor]:
    h, w = pre.size
    if name == "center":
        return v2.CenterCrop([h, w])

    def corner(img: torch.Tensor) -> torch.Tensor:
        side_h, side_w = img.shape[-2:]
        if side_h < h or side_w < w:
            return v2.functional.center_crop(img, [h, w])
        top = 0 if name[0] == "t" else side_h - h
        left = 0 if name[1] == "l" else side_w - w
        return v2.functional.crop(img, top, left, h, w)

    return corner


def view_transform(name: str, pre: Preprocessing, augment: AugmentConfig) -> ViewTransform:
    """The transform producing view `name` from stored uint8 pixels; random views are seeded per image."""
    if name.startswith("random"):
        index = int(name.removeprefix("random"))
        tf = build_train_transform(pre, augment, None)

        def random_view(img: torch.Tensor, seed: int) -> torch.Tensor:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed((seed * 1_000_003 + index) % (2**63))  # CPU pixels
                return tf(img)

        return random_view
    base, _, flip = name.partition("_")
    if base not in ("center", *CORNERS) or flip not in ("", "flip"):
        raise UserError(f"unknown feature view {name!r}")
    crop, norm = _crop(base, pre), build_eval_transform(pre)

    def fixed_view(img: torch.Tensor, seed: int) -> torch.Tensor:
        out = crop(img)
        if flip:
            out = out.flip(-1)
        return norm(out)  # the centre crop inside norm is a no-op at input size

    return fixed_view

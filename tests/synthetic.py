"""Small learnable image folders and random weight files, written by the tests themselves (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pattern_image(cls: int, rng: np.random.Generator, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Class 0: horizontal stripes, 1: vertical stripes, 2: checks, ...; each with its own tint, plus noise."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    period = 8
    kinds = [yy // period % 2, xx // period % 2, (xx // period + yy // period) % 2, np.zeros_like(xx)]
    base = kinds[cls % len(kinds)].astype(np.float64) * 140 + 50
    tint = np.array([[1.0, 0.6, 0.6], [0.6, 1.0, 0.6], [0.6, 0.6, 1.0], [1.0, 1.0, 0.5]][cls % 4])
    img = base[..., None] * tint + rng.normal(0, 20, (h, w, 3))
    shift = rng.integers(0, period, 2)
    img = np.roll(img, tuple(shift), axis=(0, 1))
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("misty", "neither", "tigger"),
    n: int = 12,
    seed: int = 0,
    size: tuple[int, int] = (64, 48),
) -> Path:
    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pattern_image(ci, rng, size).save(root / c / f"{c}_{i:03d}.jpg", quality=92)
    return root


def save_random_timm_weights(name: str, path: Path) -> Path:
    """A randomly initialised timm model's full state dict (classifier included), as a user's file would be."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(timm.create_model(name).state_dict(), str(path))
    return path


BRIGHTNESS = ("dark", "grey", "light")


def write_brightness_folder(root: Path, n: int = 20, moves: tuple[tuple[str, str], ...] = (), seed: int = 0) -> Path:
    """Classes any body separates, random weights included: noisy 32 x 32 squares at three grey levels (dark, grey,
    light). `moves` files the first image of class a under class b as `was_<a>.png`, one (a, b) per wrong label."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(BRIGHTNESS):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.clip(50 + 75 * c + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i:03d}.png")
    for a, b in moves:
        (root / a / f"{a}_000.png").rename(root / b / f"was_{a}.png")
    return root

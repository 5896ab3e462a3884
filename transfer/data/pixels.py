"""Decode every image once to uint8 pixels at store size; augmentation then works on tensors in RAM.

With small data, decoding the same JPEGs every epoch dominates the run time. Here each file is decoded once
(JPEG draft mode for large photos: libjpeg scales by 1/2..1/8 while decoding), resized to the store square and
kept as one N x C x S x S uint8 block: in RAM, or in a numpy memmap file when it would exceed the RAM budget.
DataLoader workers (fork) share either without copying.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transfer.backbones.base import Preprocessing

log = logging.getLogger(__name__)

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST, "lanczos": Image.LANCZOS}
DEFAULT_RAM_BUDGET_MB = float(os.environ.get("TRANSFER_RAM_BUDGET_MB", 4096))


def store_size(pre: Preprocessing) -> int:
    """Side of the square kept in RAM: the eval resize size (input / crop_pct), so eval is a centre crop of it."""
    return int(math.ceil(max(pre.size) / pre.crop_pct))


def resize_center(img: Image.Image, side: int, interpolation: str = "bilinear") -> Image.Image:
    """Shorter side to `side`, then the centre `side` x `side` square."""
    w, h = img.size
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    left, top = (nw - side) // 2, (nh - side) // 2
    sx, sy = w / nw, h / nh  # the crop in source pixels: a 20000 x 1 strip never becomes a 5-gigapixel intermediate
    box = (left * sx, top * sy, (left + side) * sx, (top + side) * sy)
    return img.resize((side, side), _RESAMPLE.get(interpolation, Image.BILINEAR), box=box, reducing_gap=3.0)


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()  # C x H x W uint8


def _to_store(img: Image.Image, side: int, interpolation: str) -> np.ndarray:
    arr = np.asarray(resize_center(img, side, interpolation), dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # C x S x S


class PixelStore:
    """An N x C x S x S uint8 block in RAM, or in a memmap file when larger than `ram_budget_mb`."""

    def __init__(
        self,
        n: int,
        channels: int,
        side: int,
        ram_budget_mb: float | None = None,
        cache_dir: str | Path | None = None,
        height: int | None = None,
    ) -> None:
        shape = (n, channels, height or side, side)
        nbytes = math.prod(shape)
        budget = DEFAULT_RAM_BUDGET_MB if ram_budget_mb is None else ram_budget_mb
        self.path: Path | None = None
        if nbytes > budget * 2**20:
            fd, name = tempfile.mkstemp(prefix="transfer_pixels_", suffix=".u8", dir=cache_dir)
            os.close(fd)
            self.path = Path(name)
            self.array = np.memmap(self.path, dtype=np.uint8, mode="w+", shape=shape)
            if os.name == "posix":  # the mapping (and forked DataLoader workers) keep the data; no file is left behind
                self.path.unlink()
            log.info("pixel store: %.0f MB > RAM budget %.0f MB, memory-mapped at %s", nbytes / 2**20, budget, name)
        else:
            self.array = np.empty(shape, dtype=np.uint8)

    def put(self, i: int, pixels: np.ndarray) -> None:
        self.array[i] = pixels

    def tensor(self, n: int | None = None) -> torch.Tensor:
        """The first n images as a tensor sharing this memory (no copy)."""
        arr = self.array if n is None else self.array[:n]
        if isinstance(arr, np.memmap):
            arr.flush()
        return torch.from_numpy(arr)


def scan_and_decode(
    root: str | Path,
    pre: Preprocessing,
    strict: bool = False,
    ram_budget_mb: float | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
):
    """Scan `root` and keep the store-size pixels from that same single decode: (Manifest, N x C x S x S uint8)."""
    from transfer.data.scan import scan_image_folder

    side = store_size(pre)
    root = Path(root).expanduser()
    bound = _count_files(root)  # upper bound on the number of images (links followed, as the scan does)
    store = PixelStore(max(bound, 1), pre.channels, side, ram_budget_mb, cache_dir)
    manifest = scan_image_folder(
        root,
        strict,
        channels=pre.channels,
        draft_size=(side, side),
        prepare=lambda img: _to_store(img, side, pre.interpolation),
        store=store.put,
        workers=workers,
    )
    return manifest, store.tensor(len(manifest.samples))


def _count_files(root: Path) -> int:
    """Files the scan may keep under `root`, found exactly as the scan finds them (class folders, links followed)."""
    from collections import Counter

    from transfer.data.scan import class_dirs, files_under, layout

    if not root.is_dir():
        return 0
    return sum(len(files_under(c, Counter())) for _, base in layout(root) for c in class_dirs(base))


def resize_pixels(pixels: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """Bring in-memory uint8 images (N x C x h x w, e.g. the 8x8 digits) to store size and channel count."""
    side = store_size(pre)
    x = pixels
    if x.shape[1] != pre.channels:
        x = x.float().mean(1, keepdim=True) if pre.channels == 1 else x.expand(-1, pre.channels, -1, -1)
    x = torch.nn.functional.interpolate(x.float(), size=(side, side), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)

"""Digests that address cached features: the model (weights), the view namespace, each image's pixels, a set.

Content, never mtimes: an image is addressed by a hash of the uint8 pixels the backbone will see (decoded, oriented,
resized to store size), so a re-saved but identical file hits and a changed one misses, whatever its path.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

FORMAT = "transfer.features/1"  # bump to orphan every cache written by an older layout


def library_versions() -> dict[str, str]:
    from importlib.metadata import version  # timm's version without importing timm (a second of start-up)

    from transfer import __version__

    return {"torch": torch.__version__, "timm": version("timm"), "transfer": __version__}


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    flat = t.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def weights_digest(module: nn.Module) -> str:
    """sha256 over every state-dict tensor (name, dtype, shape, bytes): any changed weight or buffer changes it."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def pixel_digests(pixels: torch.Tensor) -> list[str]:
    """One 128-bit blake2b per image of N x C x H x W uint8 pixels (shape included)."""
    out = []
    for img in pixels:
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{tuple(img.shape)}|{img.dtype}|".encode())
        h.update(_tensor_bytes(img))
        out.append(h.hexdigest())
    return out


def digest_of(obj: dict | list) -> str:
    """Stable short digest of a JSON-able description."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def set_digest(hashes: list[str], labels: list[int], classes: list[str]) -> str:
    """Addresses one labelled set (file list by content + class map): what `command=features` records."""
    return digest_of({"hashes": hashes, "labels": labels, "classes": classes})

"""Content digests of tensors: each image by its uint8 pixels (what the feature cache, the duplicate finder and the
cross-validation groups address it by)."""

from __future__ import annotations

import hashlib

import torch


def tensor_bytes(t: torch.Tensor) -> memoryview:
    flat = t.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def pixel_digests(pixels: torch.Tensor) -> list[str]:
    """One 128-bit blake2b per image of N x C x H x W uint8 pixels (shape included)."""
    out = []
    for img in pixels:
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{tuple(img.shape)}|{img.dtype}|".encode())
        h.update(tensor_bytes(img))
        out.append(h.hexdigest())
    return out

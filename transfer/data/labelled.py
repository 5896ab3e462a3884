"""LabelledImages: decoded uint8 pixels + labels + class names, the one currency between data sources and training."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LabelledImages:
    pixels: torch.Tensor  # N x C x H x W, uint8, already at store size
    labels: torch.Tensor  # N, int64 index into classes
    classes: list[str]
    names: list[str]  # a path or an id per image, for reports and predictions

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, index: torch.Tensor | list[int]) -> LabelledImages:
        idx = torch.as_tensor(index, dtype=torch.long)
        return LabelledImages(
            self.pixels[idx], self.labels[idx], list(self.classes), [self.names[i] for i in idx.tolist()]
        )

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts, strict=True))


def _take(pixels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """pixels[idx]; above the RAM budget the copy goes to a memory-mapped store, in chunks, not into RAM."""
    from transfer.data.pixels import DEFAULT_RAM_BUDGET_MB, PixelStore

    per_image = pixels[0].numel() if len(pixels) else 0
    if pixels.dtype != torch.uint8 or pixels.dim() != 4 or per_image * len(idx) <= DEFAULT_RAM_BUDGET_MB * 2**20:
        return pixels[idx]
    store = PixelStore(len(idx), pixels.shape[1], pixels.shape[2], height=pixels.shape[3])
    for start in range(0, len(idx), 256):
        chunk = idx[start : start + 256]
        store.array[start : start + len(chunk)] = pixels[chunk].numpy()
    return store.tensor()

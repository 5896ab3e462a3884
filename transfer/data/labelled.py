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

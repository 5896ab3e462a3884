"""LabelledImages: decoded uint8 pixels + labels + class names, the one currency between data sources and training."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from transfer.data.digests import pixel_digests


@dataclass
class LabelledImages:
    pixels: torch.Tensor  # N x C x H x W, uint8, already at store size
    labels: torch.Tensor  # N, int64 index into classes
    classes: list[str]
    names: list[str]  # a path or an id per image, for reports and predictions
    # the images' content digests, computed once for this set and its subsets (hashing 1,000 photos takes 0.2 s)
    _digests: list[str] | None = field(default=None, repr=False, compare=False)
    _parent: tuple[LabelledImages, list[int]] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, index: torch.Tensor | list[int]) -> LabelledImages:
        idx = torch.as_tensor(index, dtype=torch.long)
        rows = idx.tolist()
        return LabelledImages(
            self.pixels[idx], self.labels[idx], list(self.classes), [self.names[i] for i in rows], _parent=(self, rows)
        )

    def digests(self) -> list[str]:
        """One blake2b per image of its pixels (`pixel_digests`): a subset takes its share of the whole set's."""
        if self._digests is None:
            if self._parent is not None:
                whole, rows = self._parent
                every = whole.digests()
                self._digests = [every[i] for i in rows]
            else:
                self._digests = pixel_digests(self.pixels)
        return self._digests

    def __getstate__(self) -> dict:
        """Pickled (a DataLoader worker started by spawn, a deep copy) without the link to the whole set: it would
        carry every pixel of the set along; the copy hashes its own images if it ever needs their digests."""
        return {**self.__dict__, "_parent": None}

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts, strict=True))

"""Serve cached features to head training: one of the K cached views per image, drawn afresh every epoch."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class SampledViews(Dataset):
    """(features N x K x D, labels N) -> items (D, label) with the view drawn per access from torch's RNG.

    With K = 1 this is a plain TensorDataset; with K > 1 the frozen regime keeps its augmentation
    (mirror, crops or random augmentations were applied when the views were extracted).
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if features.dim() == 2:
            features = features.unsqueeze(1)
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature rows for {len(labels)} labels")
        self.features, self.labels = features, labels
        self.views = int(features.shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = int(torch.randint(self.views, (1,))) if self.views > 1 else 0
        return self.features[i, k], self.labels[i]

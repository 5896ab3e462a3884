"""Multi-crop testing as a wrapper (after timm's test-time pooling): models never branch on it.

Input is the stored square (input / crop_pct, normalised); the wrapper takes the crops, runs the model on each,
and averages the softmax. `center` is the usual single centre crop; `flip` adds its mirror; `10crop` is AlexNet's
four corners + centre, each with its mirror (Krizhevsky et al. 2012).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from transfer.errors import UserError

TTA_MODES = ("center", "flip", "10crop")


class MultiCrop(nn.Module):
    def __init__(self, model: nn.Module, crop_size: tuple[int, int], mode: str = "center") -> None:
        super().__init__()
        if mode not in TTA_MODES:
            raise UserError(f"tta={mode!r}: choose one of {', '.join(TTA_MODES)}.")
        self.model, self.crop_size, self.mode = model, list(crop_size), mode

    def crops(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The views of a batch N x C x S x S, each N x C x h x w."""
        center = TF.center_crop(x, self.crop_size)
        if self.mode == "center":
            return [center]
        if self.mode == "flip":
            return [center, TF.horizontal_flip(center)]
        return list(TF.ten_crop(x, self.crop_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean class probabilities over the views: N x num_classes."""
        return torch.stack([torch.softmax(self.model(v), dim=1) for v in self.crops(x)]).mean(0)

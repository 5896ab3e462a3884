"""A classifier: a backbone's pooled features into a head. The unit a model dir saves and predict runs."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """backbone -> pooled features -> head -> logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # N x num_classes

"""LeNet-5 (LeCun et al. 1998), the project's own code: 32x32 input, tanh, average pooling, C1-S2-C3-S4-C5-F6.

Two simplifications, as in most modern re-implementations: C3 connects to all six S2 maps (the paper's
hand-picked partial table saved compute on 1998 hardware), and the RBF output layer is replaced by the
task's softmax head on top of F6.
"""

from __future__ import annotations

import torch
from torch import nn

from transfer.backbones.base import Backbone, Preprocessing, Stage
from transfer.backbones.registry import register_backbone


class LeNet5(Backbone):
    def __init__(self, in_chans: int = 1) -> None:
        super().__init__()
        self.name = "lenet5"
        self.c1 = nn.Conv2d(in_chans, 6, kernel_size=5)  # 32 -> 28
        self.s2 = nn.AvgPool2d(2)  # 28 -> 14
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)  # 14 -> 10
        self.s4 = nn.AvgPool2d(2)  # 10 -> 5
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)  # 5 -> 1
        self.f6 = nn.Linear(120, 84)
        self.num_features = 84
        self.preprocessing = Preprocessing(
            input_size=(in_chans, 32, 32),
            mean=(0.5,) * in_chans,
            std=(0.5,) * in_chans,
            interpolation="bilinear",
            crop_pct=1.0,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s2(torch.tanh(self.c1(x)))  # N x 6 x 14 x 14
        x = self.s4(torch.tanh(self.c3(x)))  # N x 16 x 5 x 5
        return torch.tanh(self.c5(x))  # N x 120 x 1 x 1

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.f6(features.flatten(1)))  # N x 84

    def stages(self) -> list[Stage]:
        return [
            Stage("c1", ("c1.weight", "c1.bias")),
            Stage("c3", ("c3.weight", "c3.bias")),
            Stage("c5", ("c5.weight", "c5.bias")),
            Stage("f6", ("f6.weight", "f6.bias")),
        ]


@register_backbone("lenet5", source="transfer", description="LeNet-5 (LeCun 1998), 32x32 grey input; no public weights")
def lenet5(pretrained: bool = False, tag: str | None = None, in_chans: int = 1) -> LeNet5:
    if pretrained:
        from transfer.errors import UserError

        raise UserError(
            "backbone=lenet5 has no public pretrained weights: set backbone.pretrained=false, or "
            "backbone.weights=<model dir or .safetensors> from your own source run (the digits recipe makes one)."
        )
    return LeNet5(in_chans=in_chans)

"""Network in Network (Lin, Chen & Yan 2013), the project's own code: mlpconv blocks and global average pooling.

The CIFAR-10 model of the paper (sec. 4.2): three mlpconv blocks, each a spatial convolution followed by two
1x1 convolutions (the "micro MLP" shared across positions), max/average pooling and dropout between blocks,
and no fully connected layer anywhere. Built for CIFAR-style 32x32 RGB input (it accepts any size >= 32:
the last pooling is global).

One deliberate difference: the paper's last 1x1 convolution has one map per class and is averaged into the
logits. Here the body ends with 192 maps averaged into 192 features, and the task's softmax head (a linear
layer) maps them to classes. A linear map commutes with the average, so head(GAP(x)) equals GAP(1x1 conv(x)):
the same model, with the class layer where every other backbone keeps it. No public weights exist.
"""

from __future__ import annotations

import torch
from torch import nn

from transfer.backbones.base import Backbone, Preprocessing, Stage

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # the paper whitens (ZCA); per-channel statistics are the usual stand-in
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def mlpconv(in_chans: int, widths: tuple[int, int, int], kernel_size: int) -> nn.Sequential:
    """One spatial convolution, then two 1x1 convolutions, each followed by ReLU."""
    a, b, c = widths
    return nn.Sequential(
        nn.Conv2d(in_chans, a, kernel_size, padding=kernel_size // 2),
        nn.ReLU(inplace=True),
        nn.Conv2d(a, b, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(b, c, 1),
        nn.ReLU(inplace=True),
    )


class NetworkInNetwork(Backbone):
    def __init__(self, in_chans: int = 3, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.name = "nin"
        self.block1 = mlpconv(in_chans, (192, 160, 96), 5)
        self.pool1 = nn.Sequential(nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.Dropout(drop_rate))
        self.block2 = mlpconv(96, (192, 192, 192), 5)
        self.pool2 = nn.Sequential(nn.AvgPool2d(3, stride=2, ceil_mode=True), nn.Dropout(drop_rate))
        self.block3 = mlpconv(192, (192, 192, 192), 3)
        self.num_features = 192
        self.preprocessing = Preprocessing(
            input_size=(in_chans, 32, 32),
            mean=CIFAR10_MEAN if in_chans == 3 else (0.5,) * in_chans,
            std=CIFAR10_STD if in_chans == 3 else (0.5,) * in_chans,
            interpolation="bilinear",
            crop_pct=1.0,
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.block1(x))  # N x 96 x 16 x 16
        x = self.pool2(self.block2(x))  # N x 192 x 8 x 8
        return self.block3(x)  # N x 192 x 8 x 8

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=(2, 3))  # N x 192: global average pooling, no fully connected layer

    def classifier_prefixes(self) -> tuple[str, ...]:
        return ()  # no classifier inside: every key of a NiN file belongs to the body

    def stages(self) -> list[Stage]:
        return [
            Stage(name, tuple(f"{name}.{p}" for p, _ in getattr(self, name).named_parameters()))
            for name in ("block1", "block2", "block3")
        ]


def build_nin(pretrained: bool = False, tag: str | None = None, **kwargs) -> NetworkInNetwork:
    if pretrained:
        from transfer.errors import UserError

        raise UserError(
            "backbone=nin has no public pretrained weights: set backbone.pretrained=false, or "
            "backbone.weights=<model dir or .safetensors> from your own source run."
        )
    return NetworkInNetwork(**kwargs)

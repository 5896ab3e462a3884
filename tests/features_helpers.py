"""Small shared builders for the feature-cache tests: a seeded LeNet-5 and random uint8 images."""

from __future__ import annotations

import torch

from transfer.backbones.own.lenet import LeNet5
from transfer.data.labelled import LabelledImages


def lenet(seed: int = 0) -> LeNet5:
    torch.manual_seed(seed)
    return LeNet5().eval()


def images(n: int = 24, seed: int = 0, side: int = 32, classes: int = 3) -> LabelledImages:
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 1, side, side), generator=gen, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    return LabelledImages(pixels, labels, [f"c{i}" for i in range(classes)], [f"img{i}" for i in range(n)])

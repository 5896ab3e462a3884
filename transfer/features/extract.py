"""Run a frozen body once over a set of images and keep the pooled features."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from transfer.data.datamodule import TransformDataset
from transfer.data.labelled import LabelledImages


@torch.inference_mode()
def extract_features(
    backbone: nn.Module,
    images: LabelledImages,
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> torch.Tensor:
    """N x num_features float32, in the order of `images`; the body runs in eval mode."""
    was_training = backbone.training
    backbone.eval().to(device)
    loader = DataLoader(
        TransformDataset(images, transform), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    out = [backbone(x.to(device, non_blocking=True)).float().cpu() for x, _ in loader]  # each B x D
    backbone.train(was_training)
    return torch.cat(out) if out else torch.empty(0, getattr(backbone, "num_features", 0))

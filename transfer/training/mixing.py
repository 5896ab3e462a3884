"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) for fine-tuning, through timm's `Mixup`: `augment.mixup`
and `augment.cutmix` are the Beta(alpha, alpha) parameters (0: off; both on: each batch picks one, half and half).
Pixels are mixed in the training step, so the targets become soft (label smoothing folded in); cached features of the
frozen regime are never mixed (one fixed view per image is the point of the cache)."""

from __future__ import annotations

import torch

from transfer.data.config import AugmentConfig


class BatchMixer:
    """Mix a batch of images and return (mixed images, soft targets B x C). timm's Mixup pairs each image with its
    mirror in the batch and needs an even batch: an odd last image keeps its own (smoothed) one-hot target."""

    def __init__(self, spec: AugmentConfig, num_classes: int, label_smoothing: float = 0.0) -> None:
        from timm.data import Mixup  # only when mixing: timm costs a second of start-up

        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.mix = Mixup(
            mixup_alpha=spec.mixup,
            cutmix_alpha=spec.cutmix,
            prob=1.0,
            switch_prob=0.5,
            mode="batch",
            label_smoothing=label_smoothing,
            num_classes=num_classes,
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(x) // 2 * 2
        x = x.clone()
        from timm.data.mixup import mixup_target

        target = mixup_target(y, self.num_classes, 1.0, self.label_smoothing)  # B x C, unmixed
        if n >= 2:
            x[:n], target[:n] = self.mix(x[:n], y[:n])
        return x, target

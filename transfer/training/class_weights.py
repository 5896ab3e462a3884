"""Class weights for the cross-entropy on an imbalanced training set (`head.class_weights`).

balanced: weight_c = N / (C x n_c), scikit-learn's "balanced" rule: every class contributes the same total weight,
so a 10:1 set no longer teaches the head to answer the majority class. auto: balanced when the largest class has more
than 3 times the images of the smallest (mild imbalance is left alone: reweighting adds variance), else none.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

CLASS_WEIGHTS = ("auto", "none", "balanced")
AUTO_RATIO = 3.0  # auto reweights above this largest / smallest class ratio


def class_weights(labels: torch.Tensor, num_classes: int, mode: str = "auto") -> torch.Tensor | None:
    """A num_classes vector of loss weights, or None for an unweighted loss. Classes absent from `labels` get 0."""
    if mode not in CLASS_WEIGHTS:
        raise ValueError(f"class weights {mode!r}: choose one of {', '.join(CLASS_WEIGHTS)}")
    if mode == "none" or len(labels) == 0:
        return None
    counts = torch.bincount(labels.long().cpu(), minlength=num_classes).double()
    present = counts[counts > 0]
    if mode == "auto" and present.max() <= AUTO_RATIO * present.min():
        return None
    weights = torch.where(counts > 0, len(labels) / (len(present) * counts.clamp_min(1)), torch.zeros_like(counts))
    log.info("class weights (%s): %s", mode, ", ".join(f"{w:.2f}" for w in weights.tolist()))
    return weights.float()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against soft targets (B x C, rows summing to 1: mixup, cutmix, smoothing). With `weight`, each
    sample counts target . weight, normalised as torch's weighted cross-entropy is (equal to it on one-hot targets)."""
    per_sample = -(target * torch.log_softmax(logits.float(), dim=1)).sum(1)  # B
    if weight is None:
        return per_sample.mean()
    w = target @ weight.to(target)  # B
    return (per_sample * w).sum() / w.sum().clamp_min(1e-12)

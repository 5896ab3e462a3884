"""Optimisers and schedules chosen by config, for the head engine and the LightningModule alike.

Weight decay applies to weight matrices and convolution kernels only: biases and normalisation scales/shifts
(every parameter with fewer than two dimensions) are not decayed, as timm's `param_groups_weight_decay` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from transfer.training.config import OptimizerConfig, SchedulerConfig


@dataclass
class ParamGroup:
    """Parameters trained at one rate (a head, a body stage)."""

    name: str
    params: list[nn.Parameter] = field(default_factory=list)
    lr: float = 1e-3


def decay_split(group: ParamGroup, weight_decay: float) -> list[dict]:
    """One optimiser group with decay (matrices, kernels) and one without (biases, norm parameters)."""
    decay = [p for p in group.params if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in group.params if p.requires_grad and p.ndim < 2]
    out = []
    if decay:
        out.append({"params": decay, "lr": group.lr, "weight_decay": weight_decay, "name": group.name})
    if no_decay:
        out.append({"params": no_decay, "lr": group.lr, "weight_decay": 0.0, "name": f"{group.name}.no_decay"})
    return out


def build_optimizer(groups: Iterable[ParamGroup], spec: OptimizerConfig, weight_decay: float) -> torch.optim.Optimizer:
    torch_groups = [g for group in groups for g in decay_split(group, weight_decay)]
    if spec.name == "sgd":
        return torch.optim.SGD(torch_groups, lr=torch_groups[0]["lr"], momentum=spec.momentum, nesterov=spec.nesterov)
    return torch.optim.AdamW(torch_groups, lr=torch_groups[0]["lr"], betas=tuple(spec.betas))


def warmup_epochs(spec: SchedulerConfig, max_epochs: int) -> int:
    """Warmup epochs: `warmup_epochs` itself, or a fraction in (0, 1) of `max_epochs` rounded (at least 1)."""
    w = float(spec.warmup_epochs)
    if 0 < w < 1:
        return max(1, round(w * max_epochs))
    return int(w)


def lr_factor(spec: SchedulerConfig, epoch: int, max_epochs: int) -> float:
    """The multiplier of the base rate at `epoch` (0-based): linear warmup, then the schedule."""
    warm = warmup_epochs(spec, max_epochs)
    if warm and epoch < warm:
        return (epoch + 1) / (warm + 1)
    if spec.name == "constant":
        return 1.0
    if spec.name == "step":
        return spec.gamma ** ((epoch - warm) // max(spec.step_size, 1))
    span = max(max_epochs - warm, 1)  # cosine to zero at max_epochs (CosineAnnealingLR's curve)
    return 0.5 * (1 + math.cos(math.pi * min(epoch - warm, span) / span))


def build_scheduler(
    opt: torch.optim.Optimizer, spec: SchedulerConfig, max_epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(spec, epoch, max_epochs))

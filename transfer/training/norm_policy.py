"""Which BatchNorm statistics a fine-tune uses, chosen from evidence on the user's images (`regime.norm`).

eval keeps the pretrained running statistics (safe with small batches when the images look like the source's); train
updates them from each batch (what from-scratch training needs, noisy on batches of a few images); adapt re-estimates
them once on the training images and then keeps them fixed (AdaBN, Li et al. 2016): the remedy for a domain shift
(another resolution, another kind of image) without small-batch noise. `auto` measures the shift: one pass over the
training images in eval mode records each BatchNorm layer's per-channel input mean, and the median over layers of
mean_c |mean_target - running_mean| / running_std is compared with SHIFT_ADAPT. A body without BatchNorm has nothing
to decide; one whose every BatchNorm layer holds identity statistics (mean 0, variance 1: folded into the convolutions,
as in quantisation-ready weights, or never trained) has nothing to measure a shift against, and re-estimating them would
undo the folded scales (measured: the shared MobileNet v2 at 64 px, full regime, test accuracy 0.96 kept, 0.33
adapted), so its layers are kept as the affine maps they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from transfer.data.datamodule import EvalBatches
from transfer.data.labelled import LabelledImages

SHIFT_ADAPT = 0.5  # running stds: a heuristic bound (see the module docstring), said in every decision
BATCHNORM = nn.modules.batchnorm._BatchNorm


@dataclass(frozen=True)
class NormDecision:
    policy: str  # eval | train | adapt | none (no BatchNorm layers)
    reason: str  # one line: the measured shift and the rule, or the setting that fixed it

    def describe(self) -> str:
        return f"norm {self.policy}: {self.reason}"


def batchnorms(body: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in body.modules() if isinstance(m, BATCHNORM) and m.track_running_stats]


@torch.no_grad()
def input_shift(body: nn.Module, images: LabelledImages, transform, batch_size: int = 64) -> float | None:
    """Median over BatchNorm layers of the mean per-channel |input mean - running mean| / running std, measured on
    `images` with the body in eval mode; None without BatchNorm layers."""
    layers = batchnorms(body)
    if not layers:
        return None
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = {}

    def record(module, inputs, _output) -> None:
        x = inputs[0].detach().float()
        dims = [d for d in range(x.dim()) if d != 1]  # every dimension but the channels
        sums[module] = sums.get(module, 0) + x.sum(dim=dims).cpu()
        counts[module] = counts.get(module, 0) + x.numel() // x.shape[1]

    was = body.training
    body.eval()
    hooks = [m.register_forward_hook(record) for m in layers]
    try:
        for x, _ in EvalBatches(images, transform, batch_size):
            body(x.to(next(body.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        body.train(was)
    shifts = []
    for m in layers:
        if m not in counts:
            continue
        mean = sums[m] / counts[m]
        std = (m.running_var.float().cpu() + m.eps).sqrt()
        shifts.append(float(((mean - m.running_mean.float().cpu()).abs() / std).mean()))
    return float(torch.tensor(shifts).median()) if shifts else None


@torch.no_grad()
def adapt(body: nn.Module, images: LabelledImages, transform, batch_size: int = 64) -> None:
    """AdaBN: each BatchNorm layer's running statistics re-estimated as the plain average over `images` (momentum
    None), the rest of the body in eval mode; weights are not touched."""
    layers = batchnorms(body)
    saved = [(m, m.momentum) for m in layers]
    was = body.training
    body.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
        m.train()
    try:
        for x, _ in EvalBatches(images, transform, batch_size):
            body(x.to(next(body.parameters()).device))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        body.train(was)


def identity_statistics(layers: list[nn.modules.batchnorm._BatchNorm]) -> bool:
    """True when every layer's running statistics are the identity: mean 0 and variance + eps = 1 (or variance 1)."""
    for m in layers:
        var = m.running_var.float()
        if bool(m.running_mean.abs().max() > 1e-6):
            return False
        if not (bool(((var + m.eps) - 1).abs().max() < 1e-5) or bool((var - 1).abs().max() < 1e-6)):
            return False
    return True


def decide(setting: str, body: nn.Module, images: LabelledImages, transform) -> NormDecision:
    """What `regime.norm` means for this body and these images (auto: measured)."""
    if not batchnorms(body):
        return NormDecision("none", "the body has no BatchNorm layers (none, or folded into its convolutions)")
    if setting != "auto":
        return NormDecision(setting, f"regime.norm={setting}")
    if identity_statistics(batchnorms(body)):
        return NormDecision(
            "eval",
            "every BatchNorm layer holds identity statistics (mean 0, variance 1: folded into the convolutions, or "
            "never trained), so there is no shift to measure; kept as they are",
        )
    shift = input_shift(body, images, transform)
    if shift is None:
        return NormDecision("eval", "no BatchNorm layer saw an input")
    rule = f"median input shift {shift:.2f} running stds, {'over' if shift > SHIFT_ADAPT else 'within'} {SHIFT_ADAPT}"
    if shift > SHIFT_ADAPT:
        return NormDecision("adapt", f"{rule}: statistics re-estimated on your images (AdaBN), then kept fixed")
    return NormDecision("eval", f"{rule}: the pretrained statistics kept")

"""Features from a chosen stage: the penultimate layer (default) or an earlier stage, global-average pooled.

Lower layers transfer more generally (Yosinski et al. 2014). An earlier stage is tapped with a forward hook on the
stage's outermost modules (those whose parameters all belong to the stage, e.g. `model.layer2` of a ResNet, `c5` of
LeNet-5): the last of them to run gives the stage's output, N x C x H x W, pooled to N x C. The hook then stops
the forward pass, so the layers above the tap cost nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from transfer.backbones.base import Backbone
from transfer.errors import UserError

PENULTIMATE = ("", "pooled", "penultimate", "none", "null")


class _StopForward(Exception):
    """Raised by the tap hook once the tapped output is captured."""


def is_penultimate(stage: str | None) -> bool:
    return stage is None or str(stage).lower() in PENULTIMATE


def stage_choices(backbone: Backbone) -> list[str]:
    return ["pooled", "features", *(s.name for s in backbone.stages())]


def _outermost_modules(backbone: Backbone, params: set[str]) -> list[str]:
    """Names of the largest modules whose parameters all lie in `params` (parents are skipped when mixed)."""
    owned = []
    for name, module in backbone.named_modules():
        names = {f"{name}.{p}" if name else p for p, _ in module.named_parameters()}
        if names and names <= params:
            owned.append(name)
    return [n for n in owned if not any(n.startswith(o + ".") for o in owned if o != n)]


class FeatureTap(nn.Module):
    """x -> N x D features of `backbone` at `stage` (see module docstring)."""

    def __init__(self, backbone: Backbone, stage: str | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.stage = "pooled" if is_penultimate(stage) else str(stage)
        self._module: nn.Module | None = None
        if self.stage in ("pooled", "features"):
            return
        modules = dict(backbone.named_modules())
        stages = {s.name: s for s in backbone.stages()}
        if self.stage in stages:
            names = _outermost_modules(backbone, set(stages[self.stage].params))
            self._module = modules[self._last_to_run(names, modules)] if names else None
        elif self.stage in modules and self.stage:
            self._module = modules[self.stage]
        if self._module is None:
            raise UserError(
                f"features.stage={stage!r}: backbone {backbone.name!r} has stages "
                f"{', '.join(stage_choices(backbone))} (or give a module name from its named_modules())."
            )

    def _last_to_run(self, names: list[str], modules: dict[str, nn.Module]) -> str:
        order: list[str] = []
        hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: order.append(n)) for n in names]
        try:
            c, h, w = self.backbone.preprocessing.input_size
            with torch.inference_mode():
                self.backbone.eval()(torch.zeros(1, c, h, w, device=_device(self.backbone)))
        finally:
            for hook in hooks:
                hook.remove()
        return order[-1] if order else names[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stage == "pooled":
            return self.backbone(x)  # N x num_features
        if self.stage == "features":
            return _gap(self.backbone.forward_features(x))
        captured: list[torch.Tensor] = []

        def hook(module: nn.Module, inputs, output) -> None:
            captured.append(output)
            raise _StopForward

        handle = self._module.register_forward_hook(hook)
        try:
            self.backbone(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        return _gap(captured[0])


class PairTap(nn.Module):
    """x -> N x (D + C): the penultimate features and an earlier stage's pooled output from ONE forward pass (the
    stage's hook records its output and lets the pass go on), for a caller that wants both (regime=auto's stage
    hint beside the frozen candidate's features)."""

    def __init__(self, backbone: Backbone, stage: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.stage_tap = FeatureTap(backbone, stage)
        if self.stage_tap._module is None:
            raise ValueError(f"PairTap needs a stage below the penultimate layer, got {stage!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = self.stage_tap._module.register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            top = self.backbone(x)  # N x num_features
        finally:
            handle.remove()
        return torch.cat([top, _gap(captured[-1])], dim=1)


def _gap(t: torch.Tensor) -> torch.Tensor:
    """Global average pooling of N x C x H x W (or any N x C x ...) to N x C; N x D passes through."""
    return t.flatten(2).mean(2) if t.dim() > 2 else t


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")

"""Fine-tuning regimes as configuration of one mechanism: how many stages freeze, the norm policy, LR per group."""

from __future__ import annotations

from torch import nn

from transfer.backbones.base import NORM_TYPES, Backbone
from transfer.errors import UserError
from transfer.training.config import Regime
from transfer.training.optim import ParamGroup


def check_stages(backbone: Backbone, regime: Regime) -> None:
    """`regime.frozen_stages` within the body's stages (the one check that needs the built body)."""
    n = len(backbone.stages())
    if regime.frozen_stages is not None and not 0 <= regime.frozen_stages <= n:
        raise UserError(
            f"regime.frozen_stages={regime.frozen_stages}: backbone {backbone.name!r} has {n} stages "
            f"({', '.join(s.name for s in backbone.stages())}); choose 0..{n}."
        )


def apply_regime(backbone: Backbone, regime: Regime) -> None:
    """Set requires_grad and the norm-layer policy on `backbone` in place."""
    check_stages(backbone, regime)
    backbone.freeze_stages(regime.frozen_stages)
    if regime.norm != "train":  # eval, adapt and auto keep running statistics fixed while training
        backbone.set_norm_eval([m for m in backbone.modules() if isinstance(m, NORM_TYPES)])


def param_groups(backbone: Backbone | None, head: nn.Module, regime: Regime, lr: float) -> list[ParamGroup]:
    """The head at `lr`, each trainable body stage at its scaled rate (weight decay is split off in optim.py)."""
    groups = [ParamGroup("head", [p for p in head.parameters() if p.requires_grad], lr)]
    if backbone is not None and not regime.body_frozen:
        named = dict(backbone.named_parameters())
        stages = backbone.stages()
        n = len(stages)
        for i, stage in enumerate(stages):
            params = [named[p] for p in stage.params if named[p].requires_grad]
            scale = regime.body_lr_factor * regime.stage_lr_decay ** (n - 1 - i)
            groups.append(ParamGroup(stage.name, params, lr * scale))
    return [g for g in groups if g.params]

"""Fine-tuning regimes as configuration of one mechanism: how many stages freeze, the norm policy, LR per group."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from transfer.backbones.base import NORM_TYPES, Backbone
from transfer.errors import UserError
from transfer.training.optim import ParamGroup


@dataclass(frozen=True)
class Regime:
    """frozen: frozen_stages=None (all); partial: first k; full: 0 with body LR = head LR x body_lr_factor.

    norm="eval" keeps every norm layer of the body on its pretrained statistics (safe with small batches);
    "train" updates them (needed from scratch). Frozen layers are always in eval mode.
    """

    name: str
    frozen_stages: int | None = None
    body_lr_factor: float = 0.1
    stage_lr_decay: float = 1.0  # stage i of n gets body_lr_factor * decay ** (n - 1 - i)
    norm: str = "eval"
    pretrained: bool = True
    lp_init: bool = False  # LP-FT: start fine-tuning from a linear probe of the head on frozen features (lp_init.py)

    @property
    def body_frozen(self) -> bool:
        return self.frozen_stages is None

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, backbone: Backbone) -> None:
        n = len(backbone.stages())
        if self.frozen_stages is not None and not 0 <= self.frozen_stages <= n:
            raise UserError(
                f"regime.frozen_stages={self.frozen_stages}: backbone {backbone.name!r} has {n} stages "
                f"({', '.join(s.name for s in backbone.stages())}); choose 0..{n}."
            )
        if self.norm not in ("eval", "train"):
            raise UserError(f"regime.norm={self.norm!r}: choose eval or train.")
        if self.body_lr_factor < 0:
            raise UserError(f"regime.body_lr_factor={self.body_lr_factor}: must be >= 0.")


def apply_regime(backbone: Backbone, regime: Regime) -> None:
    """Set requires_grad and the norm-layer policy on `backbone` in place."""
    regime.validate(backbone)
    backbone.freeze_stages(regime.frozen_stages)
    if regime.norm == "eval":
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

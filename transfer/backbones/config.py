"""`backbone.*`: which body to build and where its weights come from (torch-free: checked before torch loads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MISSING = "???"  # OmegaConf's marker for a value the user must give (the recipe or the command line sets it)


@dataclass
class BackboneConfig:
    name: str = MISSING  # a registered name (`python -m transfer command=backbones`) or any timm / torchvision name
    pretrained: bool = False  # the hub's default weights for `name` (timm's tag, torchvision's IMAGENET1K_V1)
    weights: str | None = None  # a .safetensors / .pth / .ckpt file, a model dir of an earlier run, or a hub tag
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the builder, e.g. {drop_rate: 0.5}

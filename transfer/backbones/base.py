"""The backbone contract every registered backbone honours, whatever its source."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class Preprocessing:
    """How images must look when they enter the backbone; resolved from its weights, never hand-copied."""

    input_size: tuple[int, int, int] = (3, 224, 224)  # C x H x W
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[2]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(
            input_size=tuple(d["input_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=str(d.get("interpolation", "bilinear")),
            crop_pct=float(d.get("crop_pct", 0.875)),
        )


@dataclass
class AuxHead:
    """An auxiliary classifier fed from inside the body (GoogLeNet has two, Inception v3 one)."""

    module: nn.Module  # maps the tapped activation to logits over the task's classes
    weight: float  # weight of its loss term while training
    name: str = "aux"


@dataclass(frozen=True)
class Stage:
    """A named, ordered slice of the body; `partial` freezes the first k of them."""

    name: str
    params: tuple[str, ...] = field(default_factory=tuple)  # parameter names relative to the backbone


class Backbone(nn.Module, abc.ABC):
    """Uniform wrapper: features, pooled width, ordered stages, preprocessing and optional auxiliary heads.

    Subclasses implement `forward_features` and `pool`; `forward` returns pooled features (N x num_features).
    Auxiliary logits (if any) are produced by `forward_with_aux` in training mode only.
    """

    name: str = "backbone"
    num_features: int
    preprocessing: Preprocessing

    def __init__(self) -> None:
        super().__init__()
        self._frozen_norms: list[nn.Module] = []

    # -- the contract ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features: N x C x H x W (or N x D for bodies that pool themselves)."""

    @abc.abstractmethod
    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features from `forward_features`: N x num_features."""

    @abc.abstractmethod
    def stages(self) -> list[Stage]:
        """Ordered stages, input side first; together they hold every parameter of the body."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x))  # N x num_features

    def aux_heads(self) -> list[AuxHead]:
        """Auxiliary classifiers; empty for most backbones."""
        return []

    def reset_aux_heads(self, num_classes: int) -> None:
        """Re-size auxiliary classifiers to the task's classes (no-op without them)."""

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Pooled features plus auxiliary logits (training mode only; an empty list otherwise)."""
        return self(x), []

    # -- weights files ----------------------------------------------------------------------------------------
    def classifier_prefixes(self) -> tuple[str, ...] | None:
        """State-dict prefixes (as this backbone names them) of the classifier its weights were trained with.

        The wrapper drops that classifier, so a file's keys under these prefixes are ignored (the task's head
        replaces them) while any other key the body lacks is an error. None: not declared, extra keys are ignored.
        """
        return None

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Convert a foreign key layout to this backbone's (e.g. torchvision VGG -> timm VGG); identity by default."""
        return state

    # -- freezing ---------------------------------------------------------------------------------------------
    def freeze_stages(self, k: int | None) -> None:
        """Freeze the first k stages (None: all). Frozen norm layers stay in eval mode for good."""
        stages = self.stages()
        k = len(stages) if k is None else k
        frozen = {p for stage in stages[:k] for p in stage.params}
        params = dict(self.named_parameters())
        for name, p in params.items():
            p.requires_grad_(name not in frozen)
        self._frozen_norms = [
            m
            for mod_name, m in self.named_modules()
            if isinstance(m, NORM_TYPES)
            and any(True for _ in m.parameters(recurse=False))
            and all(f"{mod_name}.{n}" in frozen for n, _ in m.named_parameters(recurse=False))
        ]
        self.train(self.training)

    def set_norm_eval(self, modules: Sequence[nn.Module]) -> None:
        """Keep these norm layers in eval mode (running statistics used, not updated) whatever `train()` says."""
        self._frozen_norms = list(modules)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for m in self._frozen_norms:
            m.eval()
        return self

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

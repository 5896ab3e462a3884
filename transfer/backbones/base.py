"""The backbone contract every registered backbone honours, whatever its source."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from transfer.errors import UserError

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

    name: str = "backbone"  # a placeholder: create_backbone names a body by its registered name when it keeps this
    num_features: int
    preprocessing: Preprocessing
    weights_source: dict | None = None  # where its weights came from (provenance.py); set by create_backbone

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

    # -- any nn.Module --------------------------------------------------------------------------------------------
    @staticmethod
    def from_module(
        module: nn.Module,
        stages: Sequence[str] | None = None,
        preprocessing: Preprocessing | None = None,
        classifier: str | None = "auto",
        name: str | None = None,
        builder: str | None = None,
    ) -> Backbone:
        """Wrap any nn.Module as a Backbone: `stages` are its child-module names in forward order (default: its
        top-level children with parameters); the module's own classifier (`classifier`: an attribute path such as
        "fc" or "classifier.6"; "auto" finds fc / classifier / head; None keeps everything) becomes Identity.
        `builder` ("package.module:function") rebuilds the module with no arguments in a fresh shell (a model dir
        records it); by default the module's class is called with no arguments."""
        return ModuleBackbone(module, stages, preprocessing, classifier, name, builder)


def _replace_attr(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    owner = root.get_submodule(parent) if parent else root
    if leaf.isdigit() and isinstance(owner, nn.Sequential):
        owner[int(leaf)] = new
    else:
        setattr(owner, leaf, new)


def _auto_classifier(module: nn.Module) -> str | None:
    """The attribute path of a torchvision/timm-style final classifier: fc, classifier(.N), head(.fc)."""
    for attr in ("fc", "classifier", "head"):
        sub = getattr(module, attr, None)
        if isinstance(sub, nn.Linear):
            return attr
        if isinstance(sub, nn.Sequential) and len(sub) and isinstance(sub[-1], nn.Linear):
            return f"{attr}.{len(sub) - 1}"
        if isinstance(sub, nn.Module) and isinstance(getattr(sub, "fc", None), nn.Linear):
            return f"{attr}.fc"
    return None


class ModuleBackbone(Backbone):
    """A user's nn.Module behind the contract (see `Backbone.from_module`). Keeps the module under `.model`, so a
    checkpoint of the bare module loads with the `model.` prefix added (a `module.` prefix is stripped)."""

    def __init__(
        self,
        module: nn.Module,
        stages: Sequence[str] | None = None,
        preprocessing: Preprocessing | None = None,
        classifier: str | None = "auto",
        name: str | None = None,
        builder: str | None = None,
    ) -> None:
        super().__init__()
        self.removed_classifier = _auto_classifier(module) if classifier == "auto" else classifier
        if self.removed_classifier:
            _replace_attr(module, self.removed_classifier, nn.Identity())
        self.model = module
        self.name = name or type(module).__name__.lower()
        self.preprocessing = preprocessing or Preprocessing()
        children = [n for n, m in module.named_children() if any(True for _ in m.parameters())]
        self.stage_names = list(stages) if stages is not None else children
        modules = dict(module.named_modules())
        unknown = [s for s in self.stage_names if s not in modules]
        if unknown:
            raise UserError(
                f"stages: {unknown[0]!r} is not a module of {type(module).__name__}; choose from {children}."
            )
        was = module.training
        with torch.no_grad():
            out = self.pool(module.eval()(torch.zeros(1, *self.preprocessing.input_size)))  # 1 x D
        module.train(was)
        self.num_features = int(out.shape[-1])
        self.source_class = builder or f"{type(module).__module__}:{type(module).__qualname__}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # N x C x H x W, or N x D for a module that pools itself

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.flatten(2).mean(2) if features.dim() > 2 else features  # N x D

    def stages(self) -> list[Stage]:
        """The named stages; parameters before the first named stage join it, those after the last join that."""
        names = [n for n, _ in self.named_parameters()]
        prefixes = [f"model.{s}." for s in self.stage_names]
        owner: dict[str, int] = {}
        current = 0
        for n in names:
            hit = next((i for i, p in enumerate(prefixes) if n.startswith(p)), None)
            current = hit if hit is not None else current
            owner[n] = current
        return [Stage(s, tuple(n for n in names if owner[n] == i)) for i, s in enumerate(self.stage_names)] or [
            Stage("body", tuple(names))
        ]

    def rebuild_info(self) -> dict:
        """What a model dir records to rebuild this body in a fresh shell (the class is imported and built with no
        arguments)."""
        return {
            "module_class": self.source_class,
            "stages": self.stage_names,
            "classifier": self.removed_classifier,
        }

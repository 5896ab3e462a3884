"""The bottom of the backbones package: specs registered by name. It imports nothing of the package but the contract;
`catalog.py` fills it (built-ins, plugins) and answers look-ups, so nothing here imports upward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from transfer.backbones.base import Backbone

# builder(pretrained: bool, tag: str | None, **kwargs) -> Backbone
Builder = Callable[..., Backbone]


Tags = tuple[str, ...] | Callable[[], tuple[str, ...]]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    builder: Builder
    source: str  # where the architecture comes from: "timm", "torchvision", "transfer", "user"
    tags: Tags = ()  # hub tags that exist (or a function listing them, asked only when needed); empty: none public
    description: str = ""
    defaults: dict = field(default_factory=dict)

    @property
    def pretrained_tags(self) -> tuple[str, ...]:
        """The hub tags; listing timm's costs importing timm, so the catalog registers a function and this asks it."""
        return tuple(self.tags()) if callable(self.tags) else tuple(self.tags)


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str | None = None,
    *,
    source: str = "user",
    pretrained_tags: Tags = (),
    description: str = "",
    **defaults,
) -> Callable[[Builder], Builder]:
    """Decorator: make `builder` available as `backbone=<name>` everywhere (CLI, library, listing).

    The builder is called as `builder(pretrained=..., tag=..., **kwargs)` and returns a `Backbone`;
    a builder that ignores `pretrained` can take `**kwargs` only.
    """

    def wrap(builder: Builder) -> Builder:
        key = name or builder.__name__
        tags = pretrained_tags if callable(pretrained_tags) else tuple(pretrained_tags)
        _REGISTRY[key] = BackboneSpec(key, builder, source, tags, description or "", dict(defaults))
        return builder

    return wrap


def registered() -> dict[str, BackboneSpec]:
    """The specs registered so far (the catalog adds the built-ins and plugins; look names up through it)."""
    return dict(_REGISTRY)


def split_tag(name: str) -> tuple[str, str | None]:
    """'resnet50.a1_in1k' -> ('resnet50', 'a1_in1k'); 'resnet50' -> ('resnet50', None)."""
    arch, _, tag = name.partition(".")
    return arch, (tag or None)

"""Backbones registered by name: the registry feeds the CLI, config validation, the listing and the contract test."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from transfer.backbones.base import Backbone
from transfer.errors import UserError

# builder(pretrained: bool, tag: str | None, **kwargs) -> Backbone
Builder = Callable[..., Backbone]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    builder: Builder
    source: str  # where the architecture comes from: "timm", "torchvision", "transfer", "user"
    pretrained_tags: tuple[str, ...] = ()  # hub tags that exist; empty: no public weights
    description: str = ""
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str | None = None,
    *,
    source: str = "user",
    pretrained_tags: tuple[str, ...] = (),
    description: str = "",
    **defaults,
) -> Callable[[Builder], Builder]:
    """Decorator: make `builder` available as `backbone=<name>` everywhere (CLI, library, listing).

    The builder is called as `builder(pretrained=..., tag=..., **kwargs)` and returns a `Backbone`;
    a builder that ignores `pretrained` can take `**kwargs` only.
    """

    def wrap(builder: Builder) -> Builder:
        key = name or builder.__name__
        _REGISTRY[key] = BackboneSpec(key, builder, source, tuple(pretrained_tags), description or "", dict(defaults))
        return builder

    return wrap


def list_backbones() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    """The registered spec for `name`; any other timm model name gets a spec made on the fly."""
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    arch, _, tag = name.partition(".")
    if arch in _REGISTRY:
        return _REGISTRY[arch]
    from transfer.backbones.timm_backbone import timm_spec

    spec = timm_spec(name)
    if spec is not None:
        return spec
    close = difflib.get_close_matches(name, list_backbones(), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UserError(
        f"backbone={name!r} is not a registered backbone nor a timm model.{hint} "
        "List them with `python -m transfer command=backbones`."
    )


def split_tag(name: str) -> tuple[str, str | None]:
    """'resnet50.a1_in1k' -> ('resnet50', 'a1_in1k'); 'resnet50' -> ('resnet50', None)."""
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


_builtin_loaded = False


def _load_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        import transfer.backbones.zoo  # noqa: F401  (registers the classic backbones)

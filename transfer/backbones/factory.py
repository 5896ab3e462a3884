"""create_backbone: name + weights source -> a ready Backbone."""

from __future__ import annotations

import logging
from pathlib import Path

from transfer.backbones.base import Backbone
from transfer.backbones.catalog import get_spec
from transfer.backbones.provenance import weights_provenance
from transfer.backbones.registry import split_tag
from transfer.backbones.sources.weights import load_backbone_weights

log = logging.getLogger(__name__)


def _looks_like_path(s: str) -> bool:
    return (
        "/" in s
        or "\\" in s
        or s.startswith(("~", "."))
        or Path(s).suffix in {".safetensors", ".pth", ".pt", ".ckpt", ".bin"}
    )


def create_backbone(name: str, pretrained: bool = False, weights: str | None = None, **kwargs) -> Backbone:
    """Build backbone `name` (registry or any timm model; 'arch.tag' picks hub weights), in eval mode.

    `weights` is a local file, a model dir of an earlier run (chain transfer) or a hub tag; it wins over
    `pretrained`, which asks for the default hub weights.
    """
    spec = get_spec(name)
    arch, tag = split_tag(name)
    if weights and not _looks_like_path(str(weights)) and not Path(str(weights)).exists():
        tag, weights, pretrained = str(weights), None, True  # a hub tag such as 'a1_in1k'
    params = {**spec.defaults, **kwargs}
    backbone = spec.builder(pretrained=bool(pretrained) and not weights, tag=tag, **params)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"builder of backbone {name!r} returned {type(backbone).__name__}, not a transfer Backbone")
    if getattr(backbone, "name", None) in (None, "", Backbone.name):  # a class that left the base's placeholder
        backbone.name = arch  # cache folders and errors carry the registered name
    if weights:
        load_backbone_weights(backbone, str(weights))
        log.debug("backbone %s: weights from %s", name, weights)
    backbone.weights_source = weights_provenance(
        name, bool(pretrained), str(weights) if weights else None, tag, spec.source, spec.pretrained_tags
    )
    return backbone.eval()  # features must not depend on the batch: training code switches modes itself

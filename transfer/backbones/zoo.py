"""The classic backbones: importing this module registers them all."""

from __future__ import annotations

from transfer.backbones import lenet  # noqa: F401  (registers lenet5)
from transfer.backbones.registry import register_backbone
from transfer.backbones.timm_backbone import build_timm

_TIMM_CLASSICS = {
    "resnet18": ("a1_in1k", "tv_in1k"),
    "resnet34": ("a1_in1k", "tv_in1k"),
    "resnet50": ("a1_in1k", "tv_in1k"),
    "resnet101": ("a1h_in1k", "tv_in1k"),
    "resnet152": ("a1h_in1k", "tv_in1k"),
}


def _register_timm(arch: str, tags: tuple[str, ...]) -> None:
    @register_backbone(arch, source="timm", pretrained_tags=tags, description=f"timm {arch}")
    def build(pretrained: bool = False, tag: str | None = None, **kwargs):
        return build_timm(arch, pretrained=pretrained, tag=tag, **kwargs)


for _arch, _tags in _TIMM_CLASSICS.items():
    _register_timm(_arch, _tags)

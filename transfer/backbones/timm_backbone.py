"""Any timm model through the backbone contract: timm already has forward_features / forward_head / group_matcher."""

from __future__ import annotations

import torch
from torch import nn

from transfer.backbones.base import Backbone, Preprocessing, Stage
from transfer.backbones.registry import BackboneSpec, split_tag


class TimmBackbone(Backbone):
    """Wraps a timm model with its classifier removed (`reset_classifier(0)`)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        import timm

        model.reset_classifier(0)
        self.model = model
        self.name = name
        self.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
        cfg = timm.data.resolve_model_data_config(model)
        self.preprocessing = Preprocessing(
            input_size=tuple(cfg["input_size"]),
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            interpolation=str(cfg.get("interpolation", "bilinear")),
            crop_pct=float(cfg.get("crop_pct", 0.875)),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)  # N x C x H x W

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(features, pre_logits=True)  # N x num_features

    def stages(self) -> list[Stage]:
        from timm.models import group_parameters

        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        return [
            Stage(name=f"stage{i}", params=tuple(f"model.{p}" for p in names))
            for i, (_, names) in enumerate(sorted(groups.items(), key=lambda kv: kv[0]))
        ]


def build_timm(name: str, pretrained: bool = False, tag: str | None = None, **kwargs) -> TimmBackbone:
    """Create a timm model by name (optionally `name.tag`); hub downloads go through `transfer.backbones.hub`."""
    import timm

    arch, name_tag = split_tag(name)
    tag = tag or name_tag
    full = f"{arch}.{tag}" if tag else arch
    if pretrained:
        from transfer.backbones.hub import ensure_timm_weights_reachable

        ensure_timm_weights_reachable(full)
    model = timm.create_model(full, pretrained=pretrained, **kwargs)
    return TimmBackbone(model, name=full)


def timm_spec(name: str) -> BackboneSpec | None:
    """A spec for any timm model name (with or without a pretrained tag), or None if timm does not know it."""
    import timm

    arch, _ = split_tag(name)
    if not timm.is_model(arch):
        return None
    tags = tuple(t.partition(".")[2] for t in timm.list_pretrained(f"{arch}.*"))
    return BackboneSpec(
        name=arch,
        builder=lambda pretrained=False, tag=None, **kw: build_timm(arch, pretrained=pretrained, tag=tag, **kw),
        source="timm",
        pretrained_tags=tags,
        description=f"timm model {arch}",
    )

"""Any timm model through the backbone contract: timm already has forward_features / forward_head / group_matcher."""

from __future__ import annotations

import logging

import torch
from torch import nn

from transfer.backbones.base import NORM_TYPES, Backbone, Preprocessing, Stage
from transfer.backbones.registry import BackboneSpec, split_tag
from transfer.errors import UserError

log = logging.getLogger(__name__)


def preprocessing_from_timm(model: nn.Module) -> Preprocessing:
    """Input size, mean/std, interpolation and crop fraction from the model's `pretrained_cfg` (the weights' own)."""
    import timm

    return Preprocessing.from_dict(timm.data.resolve_model_data_config(model))


def _common_path(paths: list[list[str]]) -> list[str]:
    common: list[str] = []
    for parts in zip(*paths, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return common


def stage_names(groups: list[list[str]]) -> list[str]:
    """Readable names for parameter groups: their common module path ('layer1'); where that is ambiguous (shared
    with or containing another group's), the distinct modules one level deeper joined ('features.0+features.1')."""
    paths = [[p.rsplit(".", 1)[0].split(".") for p in names] for names in groups]
    commons = [".".join(_common_path(ps)) for ps in paths]
    out = []
    for i, (ps, common) in enumerate(zip(paths, commons, strict=True)):
        ambiguous = not common or any(
            j != i and (other == common or other.startswith(common + ".")) for j, other in enumerate(commons)
        )
        depth = len(common.split(".")) + 1 if common else 1
        out.append("+".join(dict.fromkeys(".".join(p[:depth]) for p in ps)) if ambiguous else common)
    return out


class TimmBackbone(Backbone):
    """Wraps a timm model with its classifier removed (`reset_classifier(0)`)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        model.reset_classifier(0)
        self.model = model
        self.name = name
        self.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
        self.preprocessing = preprocessing_from_timm(model)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)  # N x C x H x W

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(features, pre_logits=True)  # N x num_features

    def classifier_prefixes(self) -> tuple[str, ...]:
        classifier = self.model.pretrained_cfg.get("classifier") or ()
        names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        return tuple(f"model.{n}." for n in names)

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A torchvision-format VGG state dict (classifier.0/3/6) -> timm's layout (pre_logits convs, head.fc)."""
        if type(self.model).__name__ == "VGG" and any(k.split(".")[-3:-2] == ["classifier"] for k in state):
            from timm.models.vgg import _filter_fn

            prefix = "model." if any(k.startswith("model.") for k in state) else ""
            bare = _filter_fn({k.removeprefix(prefix): v for k, v in state.items()})
            return {prefix + k: v for k, v in bare.items()}
        return state

    def stages(self) -> list[Stage]:
        """timm's coarse `group_matcher` groups (stem, then one per block/stage), in forward order."""
        from timm.models import group_parameters

        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        norm_params = {
            f"{m_name}.{p}" if m_name else p
            for m_name, m in self.model.named_modules()
            if isinstance(m, NORM_TYPES)
            for p, _ in m.named_parameters(recurse=False)
        }
        ordered: list[list[str]] = []
        for _, names in sorted(groups.items(), key=lambda kv: kv[0]):
            if ordered and all(n in norm_params for n in names):
                ordered[-1].extend(names)  # a norm layer trains and freezes with the layer it normalises (VGG-BN)
            else:
                ordered.append(list(names))
        return [
            Stage(name=name, params=tuple(f"model.{p}" for p in names))
            for name, names in zip(stage_names(ordered), ordered, strict=True)
        ]


def timm_tags(arch: str) -> tuple[str, ...]:
    """The pretrained tags timm knows for `arch`, its default first (the order of timm's `default_cfgs`)."""
    from timm.models import get_arch_pretrained_cfgs

    return tuple(n.partition(".")[2] for n in get_arch_pretrained_cfgs(arch))


def check_timm_tag(arch: str, tag: str | None) -> None:
    """A UserError listing the valid tags when `tag` is not one of `arch`'s."""
    tags = timm_tags(arch)
    if tag and tag not in tags:
        raise UserError(
            f"backbone weights {tag!r}: not a file or folder here, and timm has no weights tagged {tag!r} for {arch}; "
            f"give a weights file, or a tag: {', '.join(tags) or '(none: use backbone.pretrained=false)'}."
        )


def create_timm_model(arch: str, pretrained: bool, tag: str | None, **kwargs) -> nn.Module:
    """timm.create_model with the offline check first (no 45 s of hub retries) and user-facing errors."""
    import timm

    full = f"{arch}.{tag}" if tag else arch
    if pretrained or tag:
        check_timm_tag(arch, tag)
    if pretrained:
        from transfer.backbones.sources.hub import ensure_timm_weights_reachable

        ensure_timm_weights_reachable(full)
    try:
        model = timm.create_model(full, pretrained=pretrained, **kwargs)
    except TypeError as e:
        raise UserError(f"backbone.kwargs: {arch} does not accept these arguments ({e}).") from None
    if pretrained:
        from transfer.backbones.sources.hub import hf_cache_dir

        log.info(
            "backbone %s: pretrained weights %s (hub cache %s)", arch, model.pretrained_cfg.get("tag"), hf_cache_dir()
        )
    return model


def build_timm(name: str, pretrained: bool = False, tag: str | None = None, **kwargs) -> TimmBackbone:
    """Create a timm model by name (optionally `name.tag`); hub downloads go through `sources.hub`."""
    arch, name_tag = split_tag(name)
    tag = tag or name_tag
    model = create_timm_model(arch, pretrained, tag, **kwargs)
    return TimmBackbone(model, name=f"{arch}.{tag}" if tag else arch)


def timm_spec(name: str) -> BackboneSpec | None:
    """A spec for any timm model name (with or without a pretrained tag), or None if timm does not know it."""
    import timm

    arch, _ = split_tag(name)
    if not timm.is_model(arch):
        return None
    return BackboneSpec(
        name=arch,
        builder=lambda pretrained=False, tag=None, **kw: build_timm(arch, pretrained=pretrained, tag=tag, **kw),
        source="timm",
        tags=timm_tags(arch),
        description=f"timm model {arch}",
    )

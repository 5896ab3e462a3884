"""The catalog of backbones: the classic ones registered from a table (builders live in own/ and sources/), the
user's plugins, and look-up by name (any timm model too). Everything above the registry asks here."""

from __future__ import annotations

import difflib

from transfer.backbones.own import lenet  # noqa: F401  (registers lenet5)
from transfer.backbones.registry import BackboneSpec, register_backbone, registered
from transfer.backbones.sources.timm_models import build_timm, timm_spec, timm_tags
from transfer.errors import UserError

# timm architectures registered by name: (name, what it is)
TIMM_CLASSICS = {
    "vgg11": "VGG-11 (Simonyan & Zisserman 2014, config A)",
    "vgg13": "VGG-13 (config B)",
    "vgg16": "VGG-16 (config D)",
    "vgg19": "VGG-19 (config E)",
    "vgg11_bn": "VGG-11 with BatchNorm",
    "vgg13_bn": "VGG-13 with BatchNorm",
    "vgg16_bn": "VGG-16 with BatchNorm",
    "vgg19_bn": "VGG-19 with BatchNorm",
    "inception_v4": "Inception v4 (Szegedy et al. 2016)",
    "inception_resnet_v2": "Inception-ResNet-v2 (Szegedy et al. 2016)",
    "resnet18": "ResNet-18 (He et al. 2015)",
    "resnet34": "ResNet-34",
    "resnet50": "ResNet-50 (bottleneck)",
    "resnet101": "ResNet-101",
    "resnet152": "ResNet-152",
}


def _register_timm(arch: str, description: str) -> None:
    @register_backbone(arch, source="timm", pretrained_tags=lambda: timm_tags(arch), description=description)
    def build(pretrained: bool = False, tag: str | None = None, **kwargs):
        return build_timm(arch, pretrained=pretrained, tag=tag, **kwargs)


def _register_own() -> None:
    from transfer.backbones.own.nin import build_nin
    from transfer.backbones.sources.inception import build_inception_v3
    from transfer.backbones.sources.torchvision_models import build_alexnet, build_googlenet

    register_backbone(
        "alexnet",
        source="torchvision",
        pretrained_tags=("IMAGENET1K_V1",),
        description="AlexNet (Krizhevsky et al. 2012); features: fc7 (4096)",
    )(build_alexnet)
    register_backbone(
        "googlenet",
        source="torchvision",
        pretrained_tags=("IMAGENET1K_V1",),
        description="GoogLeNet / Inception v1 (Szegedy et al. 2014); 2 aux heads at 0.3 while training",
    )(build_googlenet)
    register_backbone(
        "inception_v3",
        source="timm",
        pretrained_tags=lambda: timm_tags("inception_v3"),
        description="Inception v3 (Szegedy et al. 2015); 1 aux head at 0.4 while training",
    )(build_inception_v3)
    register_backbone(
        "nin",
        source="transfer",
        description="Network in Network (Lin et al. 2013), CIFAR-style 32x32 input; no public weights",
    )(build_nin)


for _arch, _description in TIMM_CLASSICS.items():
    _register_timm(_arch, _description)
_register_own()


PLUGINS_ENV = "TRANSFER_PLUGINS"  # comma-separated modules that register backbones/heads, for the CLI
ENTRY_POINT_GROUP = "transfer.plugins"  # or an installed package's entry points in this group


def load_plugins() -> None:
    """Import the user's registering modules so `backbone.name=<theirs>` works from the CLI too."""
    import importlib
    import os
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UserError(
                f"{PLUGINS_ENV}={module}: cannot import it ({e}); put its folder on PYTHONPATH or run from there."
            ) from None


load_plugins()


def list_backbones() -> list[str]:
    return sorted(registered())


def get_spec(name: str) -> BackboneSpec:
    """The spec registered for `name` (or its architecture, for 'arch.tag'); any other timm model gets one made."""
    specs = registered()
    arch = name.partition(".")[0]
    if name in specs or arch in specs:
        return specs.get(name) or specs[arch]
    spec = timm_spec(name)
    if spec is not None:
        return spec
    close = difflib.get_close_matches(name, list_backbones(), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UserError(
        f"backbone={name!r} is not a registered backbone nor a timm model.{hint} "
        "List them with `python -m transfer command=backbones`."
    )

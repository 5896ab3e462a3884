"""The default pretrained tag of each registered hub backbone, for messages printed before torch and timm load.

A plain table (no imports) so that the CLI's sub-second offline check (`offline.py`) can name the exact weights;
tests/test_hub_offline.py checks it against the registry (timm's `default_cfgs` order, torchvision's DEFAULT).
"""

from __future__ import annotations

DEFAULT_TAGS: dict[str, str] = {
    "alexnet": "IMAGENET1K_V1",
    "googlenet": "IMAGENET1K_V1",
    "inception_v3": "tv_in1k",
    "inception_v4": "tf_in1k",
    "inception_resnet_v2": "tf_in1k",
    "resnet18": "a1_in1k",
    "resnet34": "a1_in1k",
    "resnet50": "a1_in1k",
    "resnet101": "a1h_in1k",
    "resnet152": "a1h_in1k",
    **{f"vgg{depth}{bn}": "tv_in1k" for depth in (11, 13, 16, 19) for bn in ("", "_bn")},
}


def default_weights_name(name: str) -> str:
    """'resnet50' -> 'resnet50.a1_in1k'; a name with a tag, or one not in the table, comes back unchanged."""
    arch = name.partition(".")[0]
    return f"{arch}.{DEFAULT_TAGS[arch]}" if "." not in name and arch in DEFAULT_TAGS else name

"""A sub-second offline check run before torch loads: no network and nothing cached means a one-line error now.

The full check (exact tag, exact file) happens when the backbone is built; this one only avoids spending
seconds importing torch and timm to tell a user with no network what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from transfer.errors import UserError

TORCHVISION_ARCHS = ("alexnet", "googlenet")  # weights from download.pytorch.org, not the Hugging Face hub
TORCHVISION_HOST = "https://download.pytorch.org"


def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(
        os.environ.get("HF_HOME", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface")
    )
    return home / "hub"


def torch_hub_checkpoints() -> Path:
    home = Path(os.environ.get("TORCH_HOME", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"))
    return home / "hub" / "checkpoints"


def _cached_somewhere(arch: str) -> bool:
    hf = hf_hub_cache()
    if hf.is_dir() and any(hf.glob(f"models--timm--{arch}.*")) or hf.is_dir() and any(hf.glob(f"models--timm--{arch}")):
        return True
    tv = torch_hub_checkpoints()
    return tv.is_dir() and any(p.name.startswith(arch) for p in tv.iterdir())


def early_offline_check(name: str) -> None:
    """Raise the offline UserError if hub weights for `name` cannot be had: no network and no cached copy."""
    from transfer.backbones.sources.default_tags import DEFAULT_TAGS  # stdlib-free table: names the exact weights
    from transfer.backbones.sources.hub import network_reachable  # no torch import there either

    arch = name.partition(".")[0]
    host = TORCHVISION_HOST if arch in TORCHVISION_ARCHS else os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if _cached_somewhere(arch) or network_reachable(host):
        return

    tag = f"{arch}.{DEFAULT_TAGS[arch]}" if "." not in name and arch in DEFAULT_TAGS else name
    tag = tag if "." in tag else f"{arch} (its default ImageNet tag)"
    raise UserError(
        f"cannot download pretrained weights for {tag}: no network, and nothing for it in the caches "
        f"{hf_hub_cache()} or {torch_hub_checkpoints()}. Fix: backbone.weights=FILE.safetensors (a local file), "
        "or run once on a machine with network and copy those cache folders here, "
        "or train from random weights with backbone.pretrained=false."
    )

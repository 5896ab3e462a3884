"""Hub weights: find them in the local cache, or fail in seconds with the fix when there is no network."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from transfer.errors import UserError

PROBE_TIMEOUT_S = 2.0


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def network_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connect to the host of `url`; no retries. False when offline (HF_HUB_OFFLINE=1 counts as offline)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    parsed = urlparse(url)
    host, port = parsed.hostname or url, parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hf_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        hit = try_to_load_from_cache(repo_id, filename)
        if isinstance(hit, str):
            return True
    return False


def _torch_hub_cached(url: str) -> bool:
    import torch

    return os.path.exists(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path)))


def offline_error(tag: str, cache_dir: str) -> UserError:
    return UserError(
        f"cannot download pretrained weights {tag!r}: no network, and they are not in the cache {cache_dir}. "
        f"Fix: pass a local file with backbone.weights=FILE.safetensors, or download on a machine with network "
        f"(python -m transfer command=fit backbone={tag}) and copy {cache_dir} here, "
        f"or train from scratch with backbone.pretrained=false."
    )


def ensure_timm_weights_reachable(name: str) -> None:
    """Raise a UserError in seconds if timm would have to download `name`'s weights with no network."""
    import timm
    from timm.models import get_pretrained_cfg

    arch, _, tag = name.partition(".")
    if not tag:
        found = timm.list_pretrained(f"{arch}.*")
        tag = found[0].partition(".")[2] if found else ""
    cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch, allow_unregistered=False)
    if cfg is None:
        raise UserError(
            f"backbone={name!r} has no pretrained weights in timm; use backbone.pretrained=false "
            "or backbone.weights=FILE."
        )
    hf_id = cfg.hf_hub_id
    if hf_id:
        if _hf_cached(hf_id):
            return
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        if not network_reachable(endpoint):
            raise offline_error(f"{arch}.{tag}" if tag else arch, hf_cache_dir())
        return
    if cfg.url:
        import torch

        if _torch_hub_cached(cfg.url):
            return
        if not network_reachable(cfg.url):
            raise offline_error(f"{arch}.{tag}" if tag else arch, os.path.join(torch.hub.get_dir(), "checkpoints"))

"""Hub weights: find them in the local cache, or fail in seconds with the fix when there is no network.

timm's hub client retries for ~45 s before failing and torch.hub's download hangs on a dead route, so before
any download we look in the cache and, on a miss, probe the host once (DNS + one TCP connect, bounded in time).
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

from transfer.errors import UserError

PROBE_TIMEOUT_S = 2.0


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def torch_hub_checkpoints_dir() -> str:
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _offline_env() -> bool:
    return any(
        os.environ.get(v, "0").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFER_OFFLINE")
    )


def _probe_target(url: str) -> tuple[str, int]:
    """The host to reach for `url`: the HTTPS/HTTP proxy when one is configured, else the URL's own host."""
    parsed = urlparse(url)
    proxy = os.environ.get("HTTPS_PROXY" if parsed.scheme == "https" else "HTTP_PROXY") or os.environ.get(
        "https_proxy" if parsed.scheme == "https" else "http_proxy"
    )
    if proxy:
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    return parsed.hostname or url, parsed.port or (443 if parsed.scheme == "https" else 80)


def network_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One DNS lookup + TCP connect to the host of `url`, no retries, at most `timeout` seconds in all.

    False when offline; HF_HUB_OFFLINE=1 or TRANSFER_OFFLINE=1 count as offline.
    """
    if _offline_env():
        return False
    host, port = _probe_target(url)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts; bound it here
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def offline_error(tag: str, cache_dir: str, fetch: str) -> UserError:
    """The one-line error for missing hub weights with no network: the tag, the cache and the three fixes."""
    return UserError(
        f"cannot download pretrained weights {tag!r}: no network, and they are not in the cache {cache_dir}. "
        f"Fix: pass a local file with backbone.weights=FILE.safetensors; or on a machine with network run "
        f'`python -c "{fetch}"` and copy {cache_dir} here; or train from scratch with backbone.pretrained=false.'
    )


def _hf_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        hit = try_to_load_from_cache(repo_id, filename)
        if isinstance(hit, str):
            return True
    return False


def _torch_hub_cached(url: str) -> bool:
    return os.path.exists(os.path.join(torch_hub_checkpoints_dir(), os.path.basename(urlparse(url).path)))


def ensure_url_weights_reachable(tag: str, url: str, fetch: str | None = None) -> None:
    """For weights torch.hub downloads from `url` (torchvision's): cached, or the host answers, or a UserError."""
    if _torch_hub_cached(url):
        return
    if not network_reachable(url):
        fetch = fetch or f"import torch; torch.hub.load_state_dict_from_url('{url}')"
        raise offline_error(tag, torch_hub_checkpoints_dir(), fetch)


def ensure_timm_weights_reachable(name: str) -> None:
    """Raise a UserError in seconds if timm would have to download `name`'s weights with no network."""
    from timm.models import get_pretrained_cfg

    arch, _, tag = name.partition(".")
    try:
        cfg = get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:
        cfg = None
    if cfg is None:
        raise UserError(
            f"backbone={name!r} has no pretrained weights in timm; use backbone.pretrained=false "
            "or backbone.weights=FILE."
        )
    full = f"{arch}.{tag or cfg.tag}" if (tag or cfg.tag) else arch
    fetch = f"import timm; timm.create_model('{full}', pretrained=True)"
    if cfg.hf_hub_id:
        if _hf_cached(cfg.hf_hub_id):
            return
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        if not network_reachable(endpoint):
            raise offline_error(full, hf_cache_dir(), fetch)
        return
    if cfg.url:
        ensure_url_weights_reachable(full, cfg.url, fetch)

"""Digests that address cached features: the model (weights), the view namespace, each image's pixels, a set.

Content, never mtimes: an image is addressed by a hash of the uint8 pixels the backbone will see (decoded, oriented,
resized to store size), so a re-saved but identical file hits and a changed one misses, whatever its path.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from pathlib import Path

import torch
from torch import nn

from transfer.data.digests import tensor_bytes

FORMAT = "transfer.features/1"  # bump to orphan every cache written by an older layout


def library_versions() -> dict[str, str]:
    from importlib.metadata import version  # timm's version without importing timm (a second of start-up)

    from transfer import __version__

    return {"torch": torch.__version__, "timm": version("timm"), "transfer": __version__}


def weights_digest(module: nn.Module) -> str:
    """sha256 over every state-dict tensor (name, dtype, shape, bytes): any changed weight or buffer changes it."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()


LIBRARY_ROOTS = ("transfer", "torch", "torchvision", "timm")  # versioned in `library_versions`: not digested


def _source_digest(cls: type) -> str:
    """sha256 (16 hex) of the file that defines `cls`, else of its source text, else of its qualified name."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    try:
        data = Path(path).read_bytes() if path else inspect.getsource(cls).encode()
    except (OSError, TypeError):
        data = f"{cls.__module__}:{cls.__qualname__}".encode()
    return hashlib.sha256(data).hexdigest()[:16]


def code_digest(module: nn.Module) -> dict[str, str]:
    """{module name: digest of its file} for every module outside the versioned libraries that defines a class in
    `module`'s tree: a user's backbone (a plugin, a class in a script). Editing its `forward` changes the digest, so
    features extracted by the old code are never served for the new."""
    out: dict[str, str] = {}
    for m in module.modules():
        cls = type(m)
        if cls.__module__.split(".")[0] in LIBRARY_ROOTS or cls.__module__ in out:
            continue
        out[cls.__module__] = _source_digest(cls)
    return dict(sorted(out.items()))


def digest_of(obj: dict | list) -> str:
    """Stable short digest of a JSON-able description."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def set_digest(hashes: list[str], labels: list[int], classes: list[str]) -> str:
    """Addresses one labelled set (file list by content + class map): what `command=features` records."""
    return digest_of({"hashes": hashes, "labels": labels, "classes": classes})

"""Backbones: a registry of named bodies behind one contract (see `base.Backbone`).

Names load lazily so that `transfer.backbones.sources.offline` (the CLI's early check) does not import torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "AuxHead": "transfer.backbones.base",
    "Backbone": "transfer.backbones.base",
    "Preprocessing": "transfer.backbones.base",
    "Stage": "transfer.backbones.base",
    "create_backbone": "transfer.backbones.factory",
    "get_spec": "transfer.backbones.catalog",
    "list_backbones": "transfer.backbones.catalog",
    "register_backbone": "transfer.backbones.registry",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'transfer.backbones' has no attribute {name!r}")

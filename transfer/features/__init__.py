"""Backbone features computed once to disk and reused by every head, sweep and rerun."""

_LAZY = {
    "CacheStats": "transfer.features.cache",
    "FeatureCache": "transfer.features.cache",
    "FeatureConfig": "transfer.features.config",
    "extract_views": "transfer.features.extract",
}

__all__ = list(_LAZY)


def __getattr__(name: str):  # lazy: importing transfer.features.config (the torch-free settings) loads no torch
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'transfer.features' has no attribute {name!r}")

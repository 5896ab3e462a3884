"""transfer: a few hundred labelled images -> a good classifier, by transfer learning from classic CNN backbones."""

__version__ = "0.1.0"

_LAZY = {
    "Backbone": "transfer.backbones.base",
    "Preprocessing": "transfer.backbones.base",
    "Stage": "transfer.backbones.base",
    "AuxHead": "transfer.backbones.base",
    "register_backbone": "transfer.backbones.registry",
    "list_backbones": "transfer.backbones.catalog",
    "create_backbone": "transfer.backbones.factory",
    "register_head": "transfer.model.heads",
    "create_head": "transfer.model.heads",
    "Regime": "transfer.training.regimes",
    "load_model_dir": "transfer.model.model_dir",
    "save_model_dir": "transfer.model.model_dir",
    "scan_image_folder": "transfer.data.scan",
    "UserError": "transfer.errors",
    "fit": "transfer.app.api",
    "label_issues": "transfer.app.api",
    "suggest": "transfer.app.api",
    "rank_backbones": "transfer.app.api",
    "load": "transfer.inference.model",
    "Model": "transfer.inference.model",
    "load_weights": "transfer.backbones.sources.weights:load_backbone_weights",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):  # lazy: `import transfer` stays cheap; torch loads on first use
    if name in _LAZY:
        import importlib

        module, _, attr = _LAZY[name].partition(":")
        return getattr(importlib.import_module(module), attr or name)
    raise AttributeError(f"module 'transfer' has no attribute {name!r}")

"""How a model dir's card names its body so that it rebuilds in a fresh shell: a registered name (with the plugin
module that registered a user's backbone), or a wrapped nn.Module's class (`Backbone.from_module`)."""

from __future__ import annotations

import importlib

from transfer.backbones.base import Backbone, ModuleBackbone, Preprocessing
from transfer.errors import UserError


def rebuild_info(backbone: Backbone, name: str) -> dict:
    """The card's `rebuild` entry for `backbone` (saved under `name`)."""
    if isinstance(backbone, ModuleBackbone):
        return {"kind": "module", **backbone.rebuild_info()}
    from transfer.backbones.catalog import registered

    spec = registered().get(name) or registered().get(name.partition(".")[0])
    module = getattr(spec.builder, "__module__", None) if spec is not None and spec.source == "user" else None
    return {"kind": "registry", "plugin": module} if module else {"kind": "registry"}


def _import(module: str, key: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(
            f"{key}: this model was trained with {what} from module {module!r}, which cannot be imported here "
            f"({e}); install it or put its folder on PYTHONPATH."
        ) from e


def rebuild_backbone(card: dict, key: str = "model") -> Backbone:
    """An untrained body of the card's architecture, ready for the saved weights."""
    from transfer.backbones.factory import create_backbone

    info = card.get("rebuild") or {"kind": "registry"}
    if info.get("kind") == "module":
        mod_name, _, qualname = info["module_class"].partition(":")
        obj = _import(mod_name, key, f"the backbone class {qualname}")
        for part in qualname.split("."):
            obj = getattr(obj, part)
        body = Backbone.from_module(
            obj(),
            stages=info.get("stages"),
            preprocessing=Preprocessing.from_dict(card["preprocessing"]),
            classifier=info.get("classifier"),
            name=card["backbone"],
        )
        return body
    if info.get("plugin"):
        from transfer.backbones.catalog import registered

        if card["backbone"] not in registered():
            _import(info["plugin"], key, f"backbone {card['backbone']!r}")
    return create_backbone(card["backbone"], pretrained=False, **card.get("backbone_kwargs", {}))

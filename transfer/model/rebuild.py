"""How a model dir's card names its body so that it rebuilds in a fresh shell: a registered name (with the plugin
module that registered a user's backbone), or a wrapped nn.Module's class (`Backbone.from_module`)."""

from __future__ import annotations

import importlib

from transfer.backbones.base import Backbone, ModuleBackbone, Preprocessing
from transfer.errors import UserError


def rebuild_info(backbone: Backbone, name: str, head_name: str | None = None) -> dict:
    """The card's `rebuild` entry for `backbone` (saved under `name`) and the module that registered its head."""
    head = head_module(head_name) if head_name else None
    extra = {"head_plugin": head} if head else {}
    if isinstance(backbone, ModuleBackbone):
        return {"kind": "module", **backbone.rebuild_info(), **extra}
    from transfer.backbones.catalog import registered

    spec = registered().get(name) or registered().get(name.partition(".")[0])
    if spec is not None and spec.source == "library":  # a Backbone object given to transfer.fit: its class
        return {"kind": "class", "module_class": f"{type(backbone).__module__}:{type(backbone).__qualname__}", **extra}
    module = getattr(spec.builder, "__module__", None) if spec is not None and spec.source == "user" else None
    return {"kind": "registry", **({"plugin": module} if module else {}), **extra}


def head_module(name: str) -> str | None:
    """The module that registered head `name`, when it is not one of this package's."""
    from transfer.model.heads import head_factory

    module = getattr(head_factory(name), "__module__", "") or ""
    return None if module.startswith("transfer.") else module


def ensure_head(card: dict, key: str = "model") -> None:
    """Import the module that registered the card's head, if this process has not (a fresh shell)."""
    from transfer.model.heads import list_heads

    plugin = (card.get("rebuild") or {}).get("head_plugin")
    if plugin and card["head"]["name"] not in list_heads():
        _import(plugin, key, f"head {card['head']['name']!r}")


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
    if info.get("kind") in ("module", "class"):
        mod_name, _, qualname = info["module_class"].partition(":")
        obj = _import(mod_name, key, f"the backbone {qualname}")
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if info["kind"] == "class":
            return obj()
        body = Backbone.from_module(
            obj(),
            stages=info.get("stages"),
            preprocessing=Preprocessing.from_dict(card["preprocessing"]),
            classifier=info.get("classifier"),
            name=card["backbone"],
            builder=info["module_class"],
        )
        return body
    if info.get("plugin"):
        from transfer.backbones.catalog import registered

        if card["backbone"] not in registered():
            _import(info["plugin"], key, f"backbone {card['backbone']!r}")
    return create_backbone(card["backbone"], pretrained=False, **card.get("backbone_kwargs", {}))

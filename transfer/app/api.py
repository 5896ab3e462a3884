"""The library's `fit`: the same composed config and the same pipeline as `python -m transfer`, from Python."""

from __future__ import annotations

import copy
import time
from pathlib import Path

from torch import nn

from transfer.inference.model import Model


def _register_module_backbone(backbone: nn.Module) -> str:
    """Make a user's module (or Backbone) buildable by name for this process; returns the name."""
    from transfer.backbones.base import Backbone
    from transfer.backbones.registry import register_backbone

    body = backbone if isinstance(backbone, Backbone) else Backbone.from_module(backbone)
    name = getattr(body, "name", None) or type(body).__name__.lower()

    @register_backbone(name, source="library", description=f"{type(body).__name__} passed to transfer.fit")
    def build(pretrained: bool = False, tag: str | None = None, **kwargs) -> Backbone:
        return copy.deepcopy(body)

    return name


def fit(
    data: str | Path,
    backbone: str | nn.Module = "resnet18",
    regime: str = "frozen",
    head: str = "softmax",
    out_dir: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    pretrained: bool | None = None,
) -> Model:
    """Train on an image folder (`data/<class>/*`) and return the saved model; `overrides` are command-line style
    (`"head.lr=0.01"`, `"trainer.max_epochs=5"`). A module or Backbone object is used as the body as it is (its
    weights are its own: `pretrained` is ignored)."""
    from transfer.app.commands.fit import fit_config
    from transfer.app.compose import compose, group_options

    args = ["~recipe", "data=folder", f"data.root={Path(data).expanduser()}", f"regime={regime}", f"head={head}"]
    if isinstance(backbone, nn.Module):
        args += ["backbone=lenet5", f"backbone.name={_register_module_backbone(backbone)}", "backbone.pretrained=false"]
    else:
        args += [f"backbone={backbone}"] if _is_group_option(backbone) else [f"backbone.name={backbone}"]
        if pretrained is not None:
            args.append(f"backbone.pretrained={str(pretrained).lower()}")
    if head not in group_options("head"):
        args[-1] = f"head.name={head}"
    out = Path(out_dir) if out_dir else Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S")
    cfg = compose(
        [
            *(a for a in args if not a.startswith("head.name")),
            *overrides,
            *(a for a in args if a.startswith("head.name")),
        ]
    )
    fit_config(cfg, out, quiet=True)
    return Model(out / "model")


def _is_group_option(name: str) -> bool:
    from transfer.app.compose import group_options

    return name in group_options("backbone")

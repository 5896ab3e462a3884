"""The library's `fit`: the same dataclasses and the same pipeline as `python -m transfer`, from Python, without
Hydra. The config groups' YAML files (conf/<group>/<option>.yaml) are merged onto the dataclasses with OmegaConf, as
Hydra would merge them; `overrides` are `key=value` strings as on the command line."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from transfer.app.schema import Config
from transfer.inference.model import Model

if TYPE_CHECKING:
    from transfer.eval.label_issues import LabelIssues
    from transfer.studies.rank_backbones import Ranking
    from transfer.studies.suggest import SuggestRun

GROUPS = ("data", "optimizer", "scheduler", "trainer", "augment", "regime", "head", "backbone")  # `group=option`
DEFAULTS = {  # conf/config.yaml's defaults list without the digits recipe: what a folder of images starts from
    "data": "folder",
    "optimizer": "adamw",
    "scheduler": "cosine",
    "trainer": "default",
    "augment": "standard",
}


def _register_module_backbone(backbone: nn.Module) -> str:
    """Make a user's module (or Backbone) buildable by name for this process; returns the name."""
    from transfer.backbones.base import Backbone
    from transfer.backbones.registry import register_backbone

    body = backbone if isinstance(backbone, Backbone) else Backbone.from_module(backbone)
    name = body.name if body.name not in (None, "", Backbone.name) else type(body).__name__.lower()

    @register_backbone(name, source="library", description=f"{type(body).__name__} passed to transfer.fit")
    def build(pretrained: bool = False, tag: str | None = None, **kwargs) -> Backbone:
        return copy.deepcopy(body)

    return name


def library_config(
    data: str | Path,
    backbone: str | nn.Module = "resnet18",
    regime: str = "frozen",
    head: str = "softmax",
    overrides: list[str] | tuple[str, ...] = (),
    pretrained: bool | None = None,
) -> Config:
    """The typed config `transfer.fit` trains with. A name that is a config group's option (`backbone="resnet50"`,
    `head="mlp"`) takes that option's YAML; any other name is set as `backbone.name` / `head.name` (a timm model, a
    registered head). A module is registered as a backbone and used with its own weights. `overrides` are command-line
    style: `group=option` (`augment=none`) takes that option's YAML, `key=value` sets one key."""
    from omegaconf import OmegaConf

    from transfer.app.compose import explain, group_options
    from transfer.app.config_source import conf_dir
    from transfer.errors import UserError

    def option(group: str, name: str) -> dict:
        return OmegaConf.to_container(OmegaConf.load(conf_dir() / group / f"{name}.yaml")) or {}  # type: ignore[return-value]

    tree: dict = {group: option(group, name) for group, name in DEFAULTS.items()}
    tree["regime"] = option("regime", regime) if regime in group_options("regime") else {"name": regime}
    tree["head"] = option("head", head) if head in group_options("head") else {"name": head}
    if isinstance(backbone, nn.Module):
        tree["backbone"] = {"name": _register_module_backbone(backbone), "pretrained": False}
    else:
        tree["backbone"] = option("backbone", backbone) if backbone in group_options("backbone") else {"name": backbone}
        if pretrained is not None:
            tree["backbone"]["pretrained"] = bool(pretrained)
    tree["data"]["root"] = str(Path(data).expanduser())
    dotlist = []
    for o in overrides:
        key, eq, value = o.lstrip("+").partition("=")  # `+key=value` as on the command line: the key is the same
        if eq and key in GROUPS:  # `augment=none`: that option's YAML, as Hydra merges it
            if value not in group_options(key):
                raise UserError(
                    f"{key}={value}: not an option of the {key} group; choose one of {', '.join(group_options(key))}"
                    + (f" (or set {key}.name=)." if key in ("backbone", "head", "regime") else ".")
                )
            tree[key] = option(key, value) | ({"root": tree["data"]["root"]} if key == "data" else {})
        else:
            dotlist.append(o.lstrip("+"))
    try:
        node = OmegaConf.merge(OmegaConf.structured(Config), tree, OmegaConf.from_dotlist(dotlist))
    except Exception as e:  # noqa: BLE001 -- an unknown key or a wrong type in `overrides`: one line naming it
        raise explain(e) from e
    from transfer.app.compose import to_config

    return to_config(node)  # type: ignore[arg-type]


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

    cfg = library_config(data, backbone, regime, head, overrides, pretrained)
    out = Path(out_dir) if out_dir else Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S")
    fit_config(cfg, out, quiet=True)
    return Model(out / "model")


def label_issues(
    data: str | Path,
    backbone: str | nn.Module = "resnet18",
    out_dir: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    pretrained: bool | None = None,
) -> LabelIssues:
    """Suspected label errors in a labelled folder (`data/<class>/*`): the frozen linear probe cross-validated on
    cached features, then confident learning on its out-of-fold probabilities. Returns the ranked list (`.issues`,
    `.summary()`, `.to_csv()`); label_issues.csv, metrics.json and report.html are written to `out_dir`."""
    from dataclasses import replace

    from transfer.app.commands.label_issues import label_issues_config

    cfg = replace(library_config(data, backbone, "frozen", "softmax", overrides, pretrained), command="label-issues")
    return label_issues_config(cfg, _out(out_dir), quiet=True).issues


def suggest(
    model: str | Path,
    images: str | Path,
    n: int = 50,
    out_dir: str | Path | None = None,
    labelled: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> SuggestRun:
    """Which images under `images` to label next for the model dir `model` (margin x diversity on its own features):
    suggest.csv and the contact sheet suggest.html in `out_dir`. `labelled`: the folder of images already labelled
    (default: the fit's, found beside the model dir); `overrides` such as "suggest.diversity=0"."""
    from dataclasses import replace

    from transfer.app.commands.suggest import suggest_config

    cfg = library_config(labelled if labelled is not None else images, "resnet18", "frozen", "softmax", overrides)
    cfg = replace(cfg, command="suggest", model=str(model), images=str(images), n=int(n))
    return suggest_config(cfg, _out(out_dir), None if labelled is None else str(labelled))


def rank_backbones(
    data: str | Path,
    backbones: list[str | dict],
    out_dir: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Ranking:
    """Rank candidate bodies on a labelled folder by the frozen linear probe's cross-validated accuracy (LogME first
    when the list is long). `backbones`: names (`"resnet50"`: its pretrained weights) or backbone.* dicts
    (`{"name": "mine", "weights": "mine.safetensors"}`); a name that cannot be built here (no network) is skipped
    and said. Returns the Ranking (`.winner`, `.candidates`); rank_backbones.json is written to `out_dir`."""
    from dataclasses import replace

    from transfer.app.commands.rank_backbones import rank_config

    cfg = library_config(data, "resnet18", "frozen", "softmax", overrides)
    cfg = replace(cfg, command="rank-backbones", backbones=list(backbones))
    return rank_config(cfg, _out(out_dir), quiet=True)


def _out(out_dir: str | Path | None) -> Path:
    """The run dir a library call writes to: `out_dir`, else outputs/DATE/TIME as the CLI's Hydra would name it."""
    out = Path(out_dir) if out_dir else Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    return out

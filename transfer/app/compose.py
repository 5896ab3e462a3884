"""Compose the config the way `python -m transfer` does, and turn Hydra's and OmegaConf's composition errors into one
line naming the key and what is allowed. Used before Hydra's own run (so a mistake costs no run dir and no
traceback) and by the library's `transfer.fit`."""

from __future__ import annotations

import re
import typing
from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transfer.app import schema
from transfer.app.config_source import conf_dir, register_recipe_source
from transfer.errors import UserError


def group_options(group: str) -> list[str]:
    """The options of a config group (conf/<group>/*.yaml; recipes from recipes/)."""
    if group == "recipe":
        from transfer.app.config_source import list_recipes

        return list_recipes()
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def _schema_keys(dotted_parent: str) -> list[str]:
    """The keys the schema accepts under `dotted_parent` ("" for the top level)."""
    node: Any = schema.Config
    hints = typing.get_type_hints
    for part in [p for p in dotted_parent.split(".") if p]:
        types = hints(node) if is_dataclass(node) else {}
        kind = types.get(part)
        kind = next((a for a in typing.get_args(kind) if is_dataclass(a)), kind)  # SourceConfig | None
        if kind is None or not is_dataclass(kind):
            return []
        node = kind
    return sorted(f.name for f in fields(node))


def explain(e: BaseException) -> UserError:
    """One line for a composition error: an unknown group option, key, or a value of the wrong type."""
    from hydra.errors import MissingConfigException

    text = str(e)
    if isinstance(e, MissingConfigException) or "Could not find '" in text:
        m = re.search(r"Could not find '([\w/]+)'", text) or re.search(r"In '[^']*': Could not find '([\w/]+)'", text)
        if m and "/" in m.group(1):
            group, name = m.group(1).rsplit("/", 1)
            if group == "hydra/sweeper" and name == "optuna":
                return UserError(
                    "hydra/sweeper=optuna (recipe=search_finetune): the Optuna sweeper is not installed; "
                    'python -m pip install -e ".[optuna]" (hydra-optuna-sweeper).'
                )
            hint = ""
            if group == "backbone":
                hint = f" Any timm or torchvision model goes in backbone.name= (e.g. backbone.name={name})."
            return UserError(f"{group}={name}: no such option; choose one of {', '.join(group_options(group))}.{hint}")
    chain: list[BaseException] = [e]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    cause = next((c for c in chain if getattr(c, "full_key", None)), chain[-1])
    full_key = getattr(cause, "full_key", None)
    ctext = str(cause).splitlines()[0] if str(cause) else text.splitlines()[0]
    if "not in struct" in ctext or "Key '" in ctext and "not in" in ctext:
        key = full_key or (re.search(r"Key '([\w.]+)'", ctext) or re.search(r"'([\w.]+)'", ctext)).group(1)  # type: ignore[union-attr]
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        allowed = _schema_keys(parent)
        where = f"{parent}." if parent else ""
        return UserError(
            f"{key}: unknown key; {where}* accepts {', '.join(allowed) if allowed else 'no such key'}"
            " (check the spelling; `python -m transfer --help` lists the groups)."
        )
    m = re.search(r"Value '([^']*)'(?: of type '[\w.]+')? could not be converted to (\w+)", ctext) or re.search(
        r"Value '([^']*)' is not a valid (\w+)", ctext
    )
    if m:
        kind = m.group(2).lower()
        accepts = {
            "bool": "true or false",
            "boolean": "true or false",
            "int": "a whole number",
            "integer": "a whole number",
        }
        return UserError(f"{full_key or 'a value'}={m.group(1)}: expected {accepts.get(kind, kind)}.")
    if "Invalid value" in ctext or "Incompatible value" in ctext or "Unsupported value" in ctext:
        return UserError(f"{full_key or 'config'}: {ctext}")
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return UserError(f"config: {first}")


def check_keys(node: Any, kind: type = schema.Config, prefix: str = "") -> None:
    """Keys the dataclasses do not know: Hydra's `+key=value` adds them to a typed node and OmegaConf.to_object
    would drop them without a word, so a misspelt `+head.lrr=3` would train with the default."""
    if not isinstance(node, DictConfig):
        return
    hints = typing.get_type_hints(kind)
    for key in node:
        if key == "hydra" and not prefix:
            continue
        if key not in hints:
            where = f"{prefix.rstrip('.')}.*" if prefix else "the top level"
            raise UserError(
                f"{prefix}{key}: unknown key; {where} accepts {', '.join(sorted(f.name for f in fields(kind)))} "
                "(check the spelling; `python -m transfer --help` lists the groups)."
            )
        sub = next((a for a in (hints[key], *typing.get_args(hints[key])) if is_dataclass(a)), None)
        if sub is not None:
            check_keys(node._get_node(key), sub, f"{prefix}{key}.")


def to_config(node: DictConfig) -> schema.Config:
    """The composed tree as the package's dataclasses: each one's `__post_init__` checks its own fields, so the first
    bad value is a UserError naming the key; a required value left unset (`???`) names its key too."""
    from omegaconf.errors import MissingMandatoryValue

    check_keys(node)
    try:
        return OmegaConf.to_object(node)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or "a value"
        hint = " (the folder of images: data.root=/path/to/folder)" if key == "data.root" else ""
        raise UserError(f"{key}: required and not set; pass {key}=...{hint}.") from None
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 -- OmegaConf's type errors: one line with the key
        raise explain(e) from e


def compose(overrides: list[str]) -> schema.Config:
    """The typed config for these command-line overrides, checked; UserError otherwise."""
    return to_config(compose_node(overrides))


def compose_node(overrides: list[str]) -> DictConfig:
    """The composed config for these command-line overrides (no sweep values), as Hydra composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_recipe_source()
    schema.register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
            cfg = hydra_compose(config_name="config", overrides=overrides, return_hydra_config=False)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 -- Hydra/OmegaConf composition errors: one line with the key
        raise explain(e) from e
    finally:
        GlobalHydra.instance().clear()
    return cfg


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """The override lists to check for a `-m` sweep: the first value of every sweep, then each other value in turn."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    base, sweeps = [], []
    for o in parsed:
        if o.is_sweep_override():
            values = [str(v) for v in o.sweep_string_iterator()]
            sweeps.append((o, values))
            base.append(f"{o.get_key_element()}={values[0]}" if values else o.input_line)
        else:
            base.append(o.input_line)
    variants = [base]
    for o, values in sweeps:
        key = o.get_key_element()
        for v in values[1:]:
            variants.append([f"{key}={v}" if line.split("=", 1)[0] == key else line for line in base])
    return variants


def precheck(argv: list[str]) -> None:
    """Compose every configuration the command line asks for; the first mistake is a UserError."""
    from transfer.app.early import check_resume, check_run_dir

    check_run_dir(argv)
    check_resume(argv)
    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = [a for a in argv if not a.startswith("-")]
    if any(a.startswith("hydra.") or a.startswith("hydra/") for a in overrides):
        overrides = [a for a in overrides if not (a.startswith("hydra.") or a.startswith("hydra/"))]
    from transfer.app.early import check_before_run

    for variant in sweep_variants(overrides) if multirun else [overrides]:
        check_before_run(compose(variant))

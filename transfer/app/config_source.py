"""Where the Hydra configs live, and the small config source that serves top-level `recipes/` as group `recipe`.

Hydra looks up `recipe=NAME` as `<search root>/recipe/NAME.yaml`; our recipes live in `recipes/NAME.yaml` at the
top of the checkout (or in the installed wheel, under `transfer/recipes`). `conf/config.yaml` puts `recipes://` on
the search path and this source maps the group onto that folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

GROUP = "recipe"
_PKG = Path(__file__).resolve().parents[1]  # the transfer package


def _find(name: str) -> Path:
    for candidate in (_PKG / name, _PKG.parent / name):  # wheel: transfer/<name>; checkout: <repo>/<name>
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"transfer: cannot find the {name}/ folder next to {_PKG}; reinstall the package")


def conf_dir() -> Path:
    return _find("conf")


def recipes_dir() -> Path:
    return _find("recipes")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


class RecipeSource(ConfigSource):
    """Serves `recipe/<name>` from the recipes folder; nothing else."""

    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        self.root = recipes_dir()

    @staticmethod
    def scheme() -> str:
        return "recipes"

    def _file(self, config_path: str) -> Path | None:
        group, _, name = config_path.partition("/")
        if group != GROUP or not name:
            return None
        return self.root / self._normalize_file_name(name)

    def load_config(self, config_path: str) -> ConfigResult:
        f = self._file(config_path)
        if f is None or not f.is_file():
            raise ConfigLoadError(f"Recipe not found: {config_path}")
        text = f.read_text(encoding="utf-8")
        return ConfigResult(
            config=OmegaConf.create(OmegaConf.load(f)),
            path=f"{self.scheme()}://{self.root}",
            provider=self.provider,
            header=ConfigSource._get_header_dict(text[:512]),
        )

    def available(self) -> bool:
        return self.root.is_dir()

    def is_group(self, config_path: str) -> bool:
        return config_path in ("", GROUP)

    def is_config(self, config_path: str) -> bool:
        f = self._file(config_path)
        return f is not None and f.is_file()

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        files: list[str] = []
        if config_path == "":
            if results_filter in (None, ObjectType.GROUP):
                files.append(GROUP)
            return files
        if config_path == GROUP:
            for f in sorted(os.listdir(self.root)):
                self._list_add_result(files=files, file_path=f"{GROUP}/{f}", file_name=f, results_filter=results_filter)
        return sorted(set(files))


def register_recipe_source() -> None:
    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.core.plugins import Plugins  # noqa: F401  (initialises Hydra's registry first)

    registry = SourcesRegistry.instance()
    if RecipeSource.scheme() not in registry.types:
        registry.register(RecipeSource)

"""Hydra composition: every recipe composes, overrides apply, recipes are found from the top-level folder."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from transfer.app.config_source import conf_dir, list_recipes, recipes_dir, register_recipe_source
from transfer.app.schema import register_schema


@pytest.fixture
def compose_cfg():
    register_recipe_source()
    register_schema()

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def test_recipes_live_in_top_level_folder():
    assert recipes_dir().name == "recipes"
    assert {"digits", "cat_detector"} <= set(list_recipes())


@pytest.mark.parametrize("recipe", list_recipes())
def test_every_recipe_composes(compose_cfg, recipe):
    cfg = compose_cfg(f"recipe={recipe}")
    assert cfg.command == "fit"
    assert cfg.backbone.name
    assert cfg.data.kind in ("folder", "digits")
    assert cfg.trainer.max_epochs > 0


def test_default_is_the_digits_study(compose_cfg):
    cfg = compose_cfg()
    assert cfg.backbone.name == "lenet5"
    assert cfg.data.kind == "digits" and list(cfg.data.classes) == [5, 6, 7, 8, 9] and cfg.data.shots == 10
    assert list(cfg.study.regimes) == ["frozen", "partial", "full", "scratch"]
    assert list(cfg.study.seeds) == [0, 1, 2]
    assert list(cfg.source.classes) == [0, 1, 2, 3, 4]


def test_cat_detector_recipe_and_command_line_overrides(compose_cfg):
    cfg = compose_cfg("recipe=cat_detector")
    assert (cfg.backbone.name, cfg.regime.name, cfg.data.kind) == ("resnet50", "auto", "folder")
    assert cfg.data.root == "data/cat_detector"
    cfg = compose_cfg(
        "recipe=cat_detector",
        "backbone=resnet18",
        "regime=partial",
        "data.root=/home/me/cats",
        "trainer.max_epochs=5",
        "backbone.pretrained=false",
        "backbone.weights=w.safetensors",
    )
    assert (cfg.backbone.name, cfg.backbone.pretrained, cfg.backbone.weights) == ("resnet18", False, "w.safetensors")
    assert (cfg.regime.name, cfg.regime.frozen_stages, cfg.data.root, cfg.trainer.max_epochs) == (
        "partial",
        2,
        "/home/me/cats",
        5,
    )


def test_unknown_recipe_lists_the_options(compose_cfg):
    with pytest.raises(Exception, match="cat_detector"):
        compose_cfg("recipe=no_such_recipe")


@pytest.mark.parametrize("regime,frozen,factor", [("frozen", None, 0.0), ("partial", 2, 0.1), ("full", 0, 0.1)])
def test_regime_group(compose_cfg, regime, frozen, factor):
    cfg = compose_cfg(f"regime={regime}")
    assert cfg.regime.name == regime and cfg.regime.frozen_stages == frozen and cfg.regime.body_lr_factor == factor


def test_tilde_in_a_path_is_expanded_before_hydra_parses_it():
    import os

    from transfer.app.cli import expand_home

    home = os.path.expanduser("~")
    assert expand_home(["data.root=~/cats", "x=~", "~backbone", "model=a~b"]) == [
        f"data.root={home}/cats",
        f"x={home}",
        "~backbone",
        "model=a~b",
    ]

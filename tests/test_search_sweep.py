"""Sweeps that search: a job returns the fit's selection accuracy (Optuna's objective); recipe=search_finetune."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]


def test_fit_run_returns_the_selection_accuracy_not_the_test_score(monkeypatch, tmp_path):
    from transfer.app.commands import fit

    report = {"best": {"accuracy": 0.625}, "test": {"accuracy": 0.9}, "headline": {"value": 0.9}}
    printed = []
    monkeypatch.setattr(fit, "output_dir", lambda: tmp_path)
    monkeypatch.setattr(fit, "fit_config", lambda cfg, out: report)
    monkeypatch.setattr(fit, "print_summary", lambda r, out: printed.append(r))
    value = fit.run(OmegaConf.create({}))
    assert value == 0.625 and isinstance(value, float)
    assert printed == [report]
    monkeypatch.setattr(fit, "fit_config", lambda cfg, out: {})  # a DDP rank other than 0 reports nothing
    assert fit.run(OmegaConf.create({})) is None


def test_the_hydra_task_returns_the_commands_value(monkeypatch):
    from transfer.app import cli, dispatch

    monkeypatch.setitem(dispatch.MODULES, "fit", "tests.test_search_sweep")
    from transfer.app.compose import compose_node

    assert cli._task(compose_node(["~recipe"])) == 0.5


def run(cfg) -> float:  # the stand-in command module of the test above
    return 0.5


def test_the_recipe_searches_lr_on_a_log_scale_epochs_and_frozen_stages():
    recipe = OmegaConf.load(REPO / "recipes" / "search_finetune.yaml")
    params = dict(recipe.hydra.sweeper.params)
    assert params == {
        "head.lr": "tag(log, interval(0.0001, 0.1))",
        "trainer.max_epochs": "choice(10, 20, 40)",
        "regime.frozen_stages": "choice(1, 2, 3)",
    }
    assert recipe.hydra.sweeper.direction == "maximize"
    assert "override /regime" in str(recipe.defaults) and {"override /regime": "partial"} in list(recipe.defaults)


def test_a_missing_optuna_sweeper_is_one_line_with_the_install_command():
    from hydra.errors import MissingConfigException

    from transfer.app.compose import explain

    e = MissingConfigException("In 'recipe/search_finetune': Could not find 'hydra/sweeper/optuna'", "hydra/sweeper")
    msg = str(explain(e))
    assert msg.startswith("hydra/sweeper=optuna (recipe=search_finetune): the Optuna sweeper is not installed")
    assert 'pip install -e ".[optuna]"' in msg and "\n" not in msg


@pytest.mark.slow
def test_an_optuna_search_runs_its_trials_and_keeps_the_best(run_cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='the optuna extra: pip install -e ".[optuna]"')
    from tests.synthetic import write_image_folder

    folder = write_image_folder(tmp_path / "pets", n=10)
    sweep = tmp_path / "search"
    r = run_cli(
        "-m",
        "recipe=search_finetune",
        "hydra.sweeper.n_trials=2",
        f"data.root={folder}",
        "backbone=lenet5",
        "backbone.pretrained=false",
        "trainer.max_epochs=1",  # fixed on the command line: no longer searched
        f"hydra.sweep.dir={sweep}",
        env={"PYTHONPATH": str(REPO)},  # this checkout's package, whichever one the environment installed
    )
    assert r.returncode == 0, r.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    selection = []
    for job in jobs:
        m = json.loads((job / "metrics.json").read_text(encoding="utf-8"))
        assert m["best"]["regime"] == "partial"
        overrides = dict(o.split("=", 1) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        assert 1e-4 <= float(overrides["head.lr"]) <= 0.1
        assert overrides["regime.frozen_stages"] in ("1", "2", "3")
        selection.append(m["best"]["accuracy"])
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(results.best_params) == {"head.lr", "regime.frozen_stages"}
    assert results.best_value == pytest.approx(max(selection))
    summary = json.loads((sweep / "summary.json").read_text(encoding="utf-8"))
    assert [j["job"] for j in summary["jobs"]] == ["0", "1"]
    assert "head.lr" in summary["keys"]  # drawn from a continuous range: differs between the trials
    assert "setup plugin alembic" not in r.stdout + r.stderr

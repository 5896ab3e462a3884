"""bench/quality.py --quick end to end on a tiny generated folder with LeNet-5: the JSON line has every key, finite."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bench_run import run_bench

from tests.imagegen import make_image_folder

ROOT = Path(__file__).resolve().parents[1]


def _numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return [float(obj)] if isinstance(obj, int | float) and not isinstance(obj, bool) else []


@pytest.mark.slow
def test_quick_bench_on_a_tiny_folder(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), n_per_class=12, size=(32, 32))
    args = ["--quick", "--data", str(data), "--backbone", "lenet5"]
    args += ["--out", str(tmp_path / "work"), "--threads", "1", "--override", "trainer.accelerator=cpu"]
    args += ["--override", "trainer.max_epochs=2", "--override", "auto.budget_s=5"]
    lines, out = run_bench("quality.py", *args)
    assert "RANDOM weights" in lines[0]  # no --weights: the output says the body is random
    assert sum(line.startswith("(a) ") for line in lines) == 2 and sum(line.startswith("(b) ") for line in lines) == 4
    heads, regimes = out["heads"], out["regimes"]
    assert heads["train_images"] + heads["held_out_images"] == 36
    for name in ("fit_classifier", "fit_linear_probe"):
        assert {"accuracy", "seconds", "minus_sklearn_points", "goal_met"} <= set(heads[name])
    assert {"accuracy", "seconds", "C", "folds"} <= set(heads["sklearn"])
    assert set(regimes["regimes"]) == {"frozen", "partial", "full"}
    for row in [*regimes["regimes"].values(), regimes["auto"]]:
        assert row["n"] == heads["held_out_images"]
        assert row["ci95"][0] <= row["accuracy"] <= row["ci95"][1]
    assert regimes["auto"]["chosen"] in ("frozen", "partial", "full")
    assert regimes["best_single"] in ("frozen", "partial", "full")
    for key in ("auto_minus_best_points", "auto_wall_s", "singles_wall_sum_s", "auto_over_singles_time"):
        assert key in regimes
    assert out["finite"] is True and all(math.isfinite(x) for x in _numbers(out))

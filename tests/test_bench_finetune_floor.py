"""bench/finetune_floor.py: its paired tests against known values, and the whole bench in its tiny mode (1 epoch, one
seed) on a generated folder and on a handful of the shared real photos."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
from bench_run import run_bench

from tests.imagegen import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "bench"))

from floor_stats import betainc, mcnemar_exact, paired_t  # noqa: E402


def test_paired_t_matches_the_closed_form_for_two_degrees_of_freedom() -> None:
    a, b = [0.90, 0.80, 0.85], [0.70, 0.75, 0.80]
    out = paired_t(a, b)
    t = out["t"]
    assert out["df"] == 2 and out["mean_diff"] == pytest.approx(0.1)
    assert out["p_value"] == pytest.approx(1 - abs(t) / math.sqrt(t * t + 2), rel=1e-9)  # Student t, df = 2
    assert paired_t([0.5], [0.4])["p_value"] is None  # one seed: no test
    assert paired_t([0.5, 0.6], [0.5, 0.6])["p_value"] == 1.0
    assert paired_t([0.6, 0.6], [0.5, 0.5])["p_value"] is None  # deterministic runs: a constant difference, no spread
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-4)


def test_mcnemar_exact_counts_discordant_pairs() -> None:
    a = [True] * 10 + [False] * 2 + [True] * 5
    b = [False] * 10 + [True] * 2 + [True] * 5
    out = mcnemar_exact(a, b)
    assert (out["b"], out["c"], out["n"]) == (10, 2, 17)
    assert out["p_value"] == pytest.approx(2 * sum(math.comb(12, i) for i in range(3)) / 2**12)
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


def _bench(args: list[str], tmp_path: Path) -> tuple[list[str], dict]:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    return run_bench("finetune_floor.py", *args, "--out", str(tmp_path / "work"), env=env)


@pytest.mark.slow  # five CLI runs (a few seconds each to start) and two plain loops: about a minute on 2 CPU cores
def test_tiny_bench_on_a_generated_folder(tmp_path: Path) -> None:
    data = tmp_path / "imgs"
    make_image_folder(data / "train", classes=("a", "b"), n_per_class=6, size=(40, 36))
    make_image_folder(data / "test", classes=("a", "b"), n_per_class=4, size=(40, 36), seed=1)
    args = ["--data", str(data), "--backbone", "nin", "--tiny", "--variant", "lp_off=regime.lp_init=false"]
    lines, out = _bench([*args, "--variant-regimes", "full"], tmp_path)
    labels = [r["label"] for r in out["rows"]]
    expected = ["toolkit frozen", "toolkit partial", "toolkit full", "toolkit auto", "plain full", "plain partial"]
    assert labels == [*expected, "sklearn probe", "toolkit full [lp_off]"]
    assert out["epochs"] == 1 and out["seeds"] == [0] and out["partial_frozen_stages"] == 2
    rows = {r["label"]: r for r in out["rows"]}
    assert rows["toolkit frozen"]["vs_floor"]["vs"] == "sklearn probe"
    assert rows["toolkit partial"]["vs_floor"]["vs"] == "plain partial"
    assert rows["toolkit full [lp_off]"]["vs_floor"]["vs"] == "plain full"
    for r in out["rows"]:
        assert 0.0 <= r["mean"] <= 1.0
        if r["label"] != "plain full":
            assert r["vs_plain_full"]["pairs"] == 8  # the same 8 test images on both sides, matched by class/stem
    assert rows["toolkit auto"]["per_seed"]["0"]["chosen"] in ("frozen", "partial", "full")
    assert any(line.startswith("| toolkit full [lp_off] | 1 |") for line in lines)
    # a second call reuses every stored result (no CLI run): the same numbers
    again = _bench([*args, "--variant-regimes", "full"], tmp_path)[1]
    assert [r["mean"] for r in again["rows"]] == [r["mean"] for r in out["rows"]]
    assert again["wall_s"] < out["wall_s"] / 3


@pytest.mark.slow  # one CLI fine-tune and one plain loop on 12 + 12 real photos at 64 px
def test_tiny_bench_on_the_shared_weather_photos(tmp_path: Path) -> None:
    if not (SHARED / "weather").is_dir() or not (SHARED / "backbones" / "mnv2_coral.py").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the bench on the shared real data: {SHARED} is missing")
        pytest.skip(
            f"the shared real data ({SHARED}: weather photos, the MobileNet v2 plugin) is not beside this checkout"
        )
    args = ["--set", "weather64", "--tiny", "--limit-per-class", "3", "--regimes", "full", "--plain", "full"]
    _, out = _bench(args, tmp_path)
    rows = {r["label"]: r for r in out["rows"]}
    # the shared MobileNet v2 has folded BatchNorm: its plain loop keeps BN in eval mode at SGD 0.001 (see the bench)
    assert set(rows) == {"toolkit full", "plain full [bn eval] [lr 0.001]", "sklearn probe"}
    assert rows["toolkit full"]["vs_floor"]["vs"] == "plain full [bn eval] [lr 0.001]"
    assert rows["toolkit full"]["vs_floor"]["pairs"] == 12  # 3 test photos of each of the 4 classes
    assert "+backbone.kwargs.size=64" in out["toolkit_args"]

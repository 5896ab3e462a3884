"""bench/duplicates.py on a small subset of the real weather photos: the planted copies are found, no false pair."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bench_run import run_bench

ROOT = Path(__file__).resolve().parents[1]
WEATHER = ROOT.parent / "shared" / "data" / "weather"


def test_bench_on_a_subset_of_real_photos(tmp_path: Path) -> None:
    if not any(WEATHER.glob("*/*/*.jpg")):
        if os.environ.get("CI"):
            pytest.fail(f"{WEATHER} is missing under CI: ../shared/data must be beside the checkout")
        pytest.skip(f"real photos not here: {WEATHER} (../shared/data beside the checkout)")
    args = ("--limit", "150", "--originals", "8")
    lines, out = run_bench("duplicates.py", *args, timeout=300, env={"TMPDIR": str(tmp_path)})
    assert out["images"] == 150 + 32 and out["planted"] == 32 and out["near_checked"]
    assert out["recall"] >= 0.9 and out["false_pairs_among_originals"] == 0 and out["goals_met"]
    assert set(out["recall_by_kind"]) == {"jpeg60", "half", "crop5", "all3"}
    assert any(line.startswith("recall per copy: ") for line in lines)

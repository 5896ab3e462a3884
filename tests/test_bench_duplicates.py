"""bench/duplicates.py on a small subset of the real weather photos: the planted copies are found, no false pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEATHER = ROOT.parent / "shared" / "data" / "weather"


def test_bench_on_a_subset_of_real_photos(tmp_path: Path) -> None:
    if not any(WEATHER.glob("*/*/*.jpg")):
        if os.environ.get("CI"):
            pytest.fail(f"{WEATHER} is missing under CI: ../shared/data must be beside the checkout")
        pytest.skip(f"real photos not here: {WEATHER} (../shared/data beside the checkout)")
    cmd = [sys.executable, str(ROOT / "bench" / "duplicates.py"), "--limit", "150", "--originals", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    assert out["images"] == 150 + 32 and out["planted"] == 32 and out["near_checked"]
    assert out["recall"] >= 0.9 and out["false_pairs_among_originals"] == 0 and out["goals_met"]
    assert set(out["recall_by_kind"]) == {"jpeg60", "half", "crop5", "all3"}
    assert any(line.startswith("recall per copy: ") for line in lines)

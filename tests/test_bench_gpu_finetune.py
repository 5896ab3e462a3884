"""Smoke test of bench/gpu_finetune.py --tiny: it runs on CPU and prints one parseable JSON line (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_finetune.py"


@pytest.mark.slow
def test_tiny_bench_prints_one_json_line() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--tiny", "--device", "cpu"], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert (r["model"], r["size"], r["images"], r["steps"], r["device"]) == ("resnet18", 64, 64, 2, "cpu")
    assert r["precision"] == "32-true" and r["channels_last"] is False and r["gpu"] is None
    assert r["toolkit_fraction_of_peak_flops"] is None
    for key in ("ceiling_images_per_s", "toolkit_images_per_s", "imagefolder_images_per_s", "inference_images_per_s"):
        assert r[key] > 0
    assert r["toolkit_vs_ceiling"] == pytest.approx(r["toolkit_images_per_s"] / r["ceiling_images_per_s"], rel=0.01)
    assert r["toolkit_vs_imagefolder"] == pytest.approx(
        r["toolkit_images_per_s"] / r["imagefolder_images_per_s"], rel=0.01
    )
    assert 0.5 < r["train_gflops_per_image"] < 1.5  # 1.8 GMACs at 224 -> 0.15 at 64; x2 x3: 0.89

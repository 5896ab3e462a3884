"""The real photos and weights in ../shared/data: tests that use them skip without them, but fail under CI (CI set),
where the folder is always there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def need_shared_data() -> None:
    """Skip (or, under CI, fail) when the weather photos or the MobileNet v2 weights are missing."""
    missing = [
        p for p in (SHARED / "weather", SHARED / "backbones" / "mobilenet_v2_coral.safetensors") if not p.exists()
    ]
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must have ../shared/data: {missing[0]} is missing")
    if missing:
        pytest.skip(f"{missing[0]} is missing (real photos and weights in ../shared/data beside the checkout)")

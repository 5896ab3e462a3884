from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli(tmp_path):
    """Run `python -m transfer ARGS` in tmp_path with no network; returns the CompletedProcess."""

    def _run(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "transfer", *args],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return _run


@pytest.fixture(autouse=True, scope="session")
def _private_caches(tmp_path_factory):
    """Feature, hub and torch caches live in a temporary folder: tests never read or fill the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "TORCH_HOME", "HF_HOME")}
    os.environ["XDG_CACHE_HOME"] = str(cache)
    os.environ["TORCH_HOME"] = str(cache / "torch")
    os.environ["HF_HOME"] = str(cache / "huggingface")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

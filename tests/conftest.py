from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Feature, hub and torch caches live in a temporary folder, set before any test module imports huggingface_hub
# (which reads these at import): tests never read or fill the user's ~/.cache.
_CACHE = Path(tempfile.mkdtemp(prefix="transfer-tests-cache-"))
os.environ["XDG_CACHE_HOME"] = str(_CACHE)
os.environ["TORCH_HOME"] = str(_CACHE / "torch")
os.environ["HF_HOME"] = str(_CACHE / "huggingface")
os.environ.pop("HF_HUB_CACHE", None)


@pytest.fixture
def run_cli(tmp_path):
    """Run `python -m transfer ARGS` in tmp_path with no network; returns the CompletedProcess."""

    def _run(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)  # this checkout's code
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "transfer", *args],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return _run

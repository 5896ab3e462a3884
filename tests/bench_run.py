"""Run one bench script as a user runs it and read what it printed: its lines, and the ONE JSON line it ends with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(
    script: str, *args: str, cwd: Path = ROOT, timeout: int = 900, env: dict | None = None
) -> tuple[list[str], dict]:
    """`python bench/<script> <args>` on one thread: (stdout lines, the last line's JSON); a non-zero exit fails the
    test with the end of stderr."""
    cmd = [sys.executable, str(ROOT / "bench" / script), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])

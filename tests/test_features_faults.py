"""Faults across processes: kill -9 during extraction, and two processes extracting the same key at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from features_helpers import images, lenet

from transfer.features import FeatureCache, FeatureConfig

N = 32
SCRIPT = """
import json, sys, time
sys.path.insert(0, {tests!r})
from features_helpers import images, lenet
from transfer.features import FeatureCache, FeatureConfig

import torch
torch.manual_seed(0)
bb = lenet()  # the same class, code and weights as the test's lenet(): the same cache key
bb.register_forward_pre_hook(lambda module, args: time.sleep(float(sys.argv[2])))  # slow, without new code
cfg = FeatureConfig(cache_dir=sys.argv[1], views=1, progress=False, chunk=4, batch_size=4)
c = FeatureCache(bb, cfg)
c.features(images({n}))
print(json.dumps({{"extracted": c.last.extracted, "hits": c.last.hits}}))
"""


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "extract.py"
    path.write_text(SCRIPT.format(tests=str(Path(__file__).parent), n=N))
    return path


def _start(tmp_path: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(_script(tmp_path)), str(tmp_path / "cache"), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _reference() -> torch.Tensor:
    return FeatureCache(lenet(), FeatureConfig(enabled=False, views=1, progress=False)).features(images(N))


@pytest.mark.slow
def test_kill_9_during_extraction_then_rerun_serves_no_partial_data(tmp_path):
    proc = _start(tmp_path, delay=0.4)
    deadline = time.time() + 120
    while len(list((tmp_path / "cache").glob("*/shard-*.json"))) < 2:
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "extraction never committed a shard"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(list((tmp_path / "cache").glob("*/shard-*.json")))
    assert 2 <= done < N // 4  # 4 images per shard: some, not all, were committed

    rerun = FeatureCache(lenet(), FeatureConfig(cache_dir=str(tmp_path / "cache"), views=1, progress=False))
    out = rerun.features(images(N))
    assert rerun.last.hits >= 4 * done and rerun.last.extracted == N - rerun.last.hits  # finished chunks reused
    torch.testing.assert_close(out, _reference(), rtol=0, atol=1e-6)
    assert not list((tmp_path / "cache").glob("*/.*.tmp"))  # the killed process's temp files were swept


@pytest.mark.slow
def test_two_processes_extracting_the_same_key_share_the_work(tmp_path):
    a, b = _start(tmp_path, delay=0.05), _start(tmp_path, delay=0.05)
    outs = []
    for p in (a, b):
        stdout, stderr = p.communicate(timeout=240)
        assert p.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sum(o["extracted"] for o in outs) == N  # the lock: the second process waited, then hit
    assert all(o["extracted"] + o["hits"] == N for o in outs)
    again = FeatureCache(lenet(), FeatureConfig(cache_dir=str(tmp_path / "cache"), views=1, progress=False))
    torch.testing.assert_close(again.features(images(N)), _reference(), rtol=0, atol=1e-6)
    assert again.last.extracted == 0

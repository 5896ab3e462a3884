"""Hostile files on disk: damaged feature shards, model dirs cut short or refused by the disk, weights files that
are empty, truncated or of another suffix. Each ends in the previous good state or one line naming the fix."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from features_helpers import images, lenet
from safetensors.torch import save_file

from transfer.errors import UserError
from transfer.features import FeatureCache, FeatureConfig
from transfer.features.store import ShardStore


def _cache(root: Path) -> FeatureCache:
    return FeatureCache(lenet(), FeatureConfig(cache_dir=str(root), views=1, progress=False, chunk=4))


def _shards(c: FeatureCache) -> list[tuple[Path, dict]]:
    d = c.store("center").dir
    return [(p, json.loads(p.read_text())) for p in sorted(d.glob("shard-*.json"))]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_shard_with_flipped_bytes_is_dropped_and_re_extracted(tmp_path, caplog):
    imgs = images(8)
    expected = _cache(tmp_path).features(imgs)
    manifest, m = _shards(_cache(tmp_path))[0]
    npy = manifest.parent / m["file"]
    data = bytearray(npy.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])  # same length, header intact
    npy.write_bytes(bytes(data))
    again = _cache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="transfer.features"):
        out = again.features(imgs)
    assert torch.equal(out, expected)
    assert (again.last.hits, again.last.extracted) == (4, 4)  # one 4-row shard of two
    (line,) = _warnings(caplog)
    assert line.startswith(f"feature cache: dropping shard {npy}: its bytes changed since it was written (sha256 ")
    assert not manifest.exists() and not npy.exists()
    assert torch.equal(_cache(tmp_path).features(imgs), expected)  # the rebuilt shard is served, no new warning
    assert len(_warnings(caplog)) == 1


def test_a_shard_holding_nan_rows_is_treated_as_corrupt(tmp_path, caplog):
    import hashlib
    import io

    imgs = images(4)
    expected = _cache(tmp_path).features(imgs)
    manifest, m = _shards(_cache(tmp_path))[0]
    npy = manifest.parent / m["file"]
    arr = np.load(npy)
    arr[2, 5] = np.nan
    buf = io.BytesIO()
    np.save(buf, arr)
    npy.write_bytes(buf.getvalue())  # a digest that matches: only the value check can catch it
    manifest.write_text(json.dumps({**m, "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}))
    again = _cache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="transfer.features"):
        out = again.features(imgs)
    assert torch.equal(out, expected) and again.last.extracted == 4
    assert _warnings(caplog) == [
        f"feature cache: dropping shard {npy}: 1 of 4 rows hold NaN or inf; its rows will be extracted again"
    ]


def test_non_finite_features_are_never_committed(tmp_path):
    store = ShardStore(tmp_path, "ns", {}, "float16")
    with pytest.raises(
        UserError,
        match=r"1 of 2 extracted feature rows hold NaN or inf \(first image digest bb\).*"
        r"They overflow float16: set features.dtype=float32\.$",
    ):
        store.commit(["aa", "bb"], np.array([[1.0, 2.0], [1e6, 0.0]], np.float32))
    assert not list((tmp_path / "ns").glob("shard-*"))

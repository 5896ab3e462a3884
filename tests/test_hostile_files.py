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


# --- model dirs ---------------------------------------------------------------------------------------------------


def _classifier(seed: int = 0):
    from transfer.backbones.factory import create_backbone
    from transfer.model.classifier import Classifier
    from transfer.model.heads import create_head

    torch.manual_seed(seed)
    return Classifier(create_backbone("lenet5", pretrained=False), create_head("softmax", 84, 3))


def _save(path: Path, seed: int = 0, **extra) -> Path:
    from transfer.model.model_dir import save_model_dir

    return save_model_dir(path, _classifier(seed), "lenet5", ["a", "b", "c"], {"name": "softmax"}, extra=extra)


def _modes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in [path, *path.iterdir()]}


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


@pytest.mark.parametrize(("umask", "dir_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_model_dir_files_get_the_users_umask(tmp_path, umask, dir_mode, file_mode):
    old = os.umask(umask)
    try:
        path = _save(tmp_path / "model")
    finally:
        os.umask(old)
    assert _modes(path) == {"model": dir_mode, "card.json": file_mode, "model.safetensors": file_mode}
    assert _siblings(path) == []  # no temp dir left beside it


def test_a_kill_while_replacing_a_model_dir_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    from transfer.model.model_dir import load_model_dir

    path = _save(tmp_path / "model", seed=0, run="first")
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def killed(self, *a, **k):  # the weights are written; the process dies before the card
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(path, seed=1, run="second")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # old weights with the old card
    assert load_model_dir(path)[1]["run"] == "first"
    _save(path, seed=1, run="second")
    assert load_model_dir(path)[1]["run"] == "second" and _siblings(path) == []


def test_non_finite_weights_are_not_saved(tmp_path):
    from transfer.model.model_dir import save_model_dir

    clf = _classifier()
    with torch.no_grad():
        next(p for n, p in clf.named_parameters() if n.startswith("head.")).view(-1)[3] = float("nan")
    first_head = next(n for n, _ in clf.named_parameters() if n.startswith("head."))
    with pytest.raises(UserError) as info:
        save_model_dir(tmp_path / "model", clf, "lenet5", ["a", "b", "c"], {"name": "softmax"})
    assert str(info.value) == (
        f"{tmp_path / 'model'}: not saved: tensor {first_head} holds NaN or inf; training diverged: lower head.lr "
        "(and the body's lr in a fine-tuning regime)."
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_disk_is_one_line_and_keeps_the_previous_model_dir(tmp_path, monkeypatch, err):
    import transfer.model.model_dir as mdir

    path = _save(tmp_path / "model", run="first")

    def full(*a, **k):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(mdir, "save_file", full)
    with pytest.raises(UserError) as info:
        _save(path, run="second")
    assert str(info.value) == (
        f"{tmp_path}: cannot write the model dir model ({os.strerror(err)}); free space on that disk or run "
        "where the output folder is writable (hydra.run.dir=<folder>)."
    )
    assert json.loads((path / "card.json").read_text())["run"] == "first" and _siblings(path) == []


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(UserError, match=r"^.*a_file: cannot write the model dir model \(Not a directory\); free"):
        _save(tmp_path / "a_file" / "model")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_a_read_only_output_folder_is_one_line(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(UserError, match=r"ro: cannot write the model dir model \(Permission denied\)"):
            _save(out / "model")
    finally:
        out.chmod(0o755)


def test_copy_model_dir_replaces_whole_with_umask_modes(tmp_path):
    from transfer.model.model_dir import copy_model_dir, load_model_dir

    src = _save(tmp_path / "runs" / "best", seed=1, run="best")
    dst = _save(tmp_path / "model", seed=0, run="old")
    (dst / "stale.txt").write_text("from the old dir")
    old = os.umask(0o022)
    try:
        copy_model_dir(src, dst)
    finally:
        os.umask(old)
    assert sorted(p.name for p in dst.iterdir()) == ["card.json", "model.safetensors"]
    assert (dst / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert load_model_dir(dst)[1]["run"] == "best"
    assert _modes(dst) == {"model": 0o755, "card.json": 0o644, "model.safetensors": 0o644}
    assert _siblings(dst) == ["runs"]
    with pytest.raises(UserError, match="not a model dir"):
        copy_model_dir(tmp_path / "runs", dst)


# --- weights files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_an_empty_weights_file_is_one_line(tmp_path, suffix):
    from transfer.backbones.sources.weights import read_state_dict

    path = tmp_path / f"w{suffix}"
    path.write_bytes(b"")
    with pytest.raises(UserError) as info:  # .pth was IndexError: list index out of range
        read_state_dict(path)
    assert str(info.value) == (
        f"backbone.weights={path}: empty file (0 bytes), an interrupted download or copy; fetch or save it again."
    )


def test_a_truncated_pth_is_one_short_line(tmp_path):
    from transfer.backbones.sources.weights import read_state_dict

    path = tmp_path / "w.pth"
    torch.save({"a": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(UserError) as info:
        read_state_dict(path)
    assert str(info.value) == (
        f"backbone.weights={path}: not a readable checkpoint (PytorchStreamReader failed reading zip archive: "
        "failed finding central directory); truncated or damaged: fetch or save it again."
    )


class _NotATensor:
    pass


def test_a_th_checkpoint_loads_with_weights_only(tmp_path):
    from transfer.backbones.sources.weights import read_state_dict

    torch.save({"state_dict": {"conv.weight": torch.arange(4.0)}}, tmp_path / "ok.th")
    assert torch.equal(read_state_dict(tmp_path / "ok.th")["conv.weight"], torch.arange(4.0))
    torch.save({"conv.weight": _NotATensor()}, tmp_path / "code.th")
    with pytest.raises(UserError, match="refused to load: the file holds pickled code"):
        read_state_dict(tmp_path / "code.th")

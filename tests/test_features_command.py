"""`python -m transfer command=features`: extraction only, the set manifest, the probe, and cache-dir errors."""

from __future__ import annotations

import json

import pytest
from features_helpers import lenet
from safetensors.torch import save_file


def _weights(tmp_path):
    path = tmp_path / "lenet.safetensors"
    save_file(lenet(3).state_dict(), str(path))
    return path


def test_unwritable_cache_dir_is_one_line_exit_2(tmp_path, run_cli):
    (tmp_path / "afile").write_text("not a folder")
    r = run_cli(
        "command=features",
        "source=null",
        f"backbone.weights={_weights(tmp_path)}",
        f"features.cache_dir={tmp_path / 'afile' / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: features.cache_dir={tmp_path / 'afile' / 'cache'}: cannot create")
    assert "features.cache_dir=<a writable folder" in last and "Traceback" not in r.stderr


@pytest.mark.slow
def test_features_command_extracts_then_hits_and_probes(tmp_path, run_cli):
    args = [
        "command=features",
        "source=null",
        f"backbone.weights={_weights(tmp_path)}",
        "data.shots=5",
        f"features.cache_dir={tmp_path / 'fc'}",
        "features.stage=c5",
        "features.probe=true",
        "trainer.max_epochs=3",
    ]
    first = run_cli(*args, f"hydra.run.dir={tmp_path / 'run1'}")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "features: 896 images x 1 views (center) x 120 from lenet5 at stage c5" in first.stdout
    assert "extracted 896" in first.stdout and "probe:    softmax head on test: accuracy" in first.stdout
    second = run_cli(*args, f"hydra.run.dir={tmp_path / 'run2'}")
    assert "feature cache hit: 896 of 896 image-views" in second.stdout
    report = json.loads((tmp_path / "run2" / "features.json").read_text())
    assert report["extracted"] == 0 and report["hits"] == 896 and report["dim"] == 120
    manifest = json.loads((tmp_path / "fc" / "sets" / report["manifest"].rsplit("/", 1)[1]).read_text())
    assert len(manifest["digests"]) == 896 and manifest["classes"] == ["5", "6", "7", "8", "9"]
    assert set(manifest["namespaces"]) == {"center"}

"""Runs that are killed, interrupted or resumed: nothing lost, nothing silent (atomic files, resume, Ctrl-C)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transfer.atomic import write_bytes_atomic, write_text_atomic
from transfer.studies.resume import completed_runs, read_run_record, write_run_record
from transfer.training.resumable import resume_checkpoint


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_write_replaces_whole_with_umask_mode_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    write_text_atomic(path, "old\n")
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_atomic_write_interrupted_keeps_previous_file_and_no_temp(tmp_path):
    from transfer.atomic import write_atomic

    path = tmp_path / "predictions.csv"
    write_bytes_atomic(path, b"a,b\n1,2\n")

    def dies_half_way(fh):
        fh.write(b"a,b\n3")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, dies_half_way)
    assert path.read_bytes() == b"a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]


def test_report_writers_go_through_the_atomic_helper(tmp_path, monkeypatch):
    """metrics/predictions/plots/report.html: each lands via transfer.atomic (a rename), never an in-place write."""
    import transfer.atomic as atomic
    from transfer.eval.page import write_report
    from transfer.eval.plots import plot_confusion
    from transfer.eval.scoring import write_rows_csv

    written = []
    real = atomic.write_atomic
    monkeypatch.setattr(atomic, "write_atomic", lambda p, w: written.append(Path(p).name) or real(p, w))
    write_rows_csv([{"path": "a.png", "label": "x"}], tmp_path / "predictions.csv")
    plot_confusion([[2, 0], [1, 1]], ["a", "b"], tmp_path / "confusion.png")
    write_report({"title": "t"}, tmp_path / "report.html")
    assert written == ["predictions.csv", "confusion.png", "report.html"]
    assert (tmp_path / "predictions.csv").read_text(encoding="utf-8").splitlines() == ["path,label", "a.png,x"]
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "confusion.png").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _fake_model_dir(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "card.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"x")


def test_run_record_read_back_only_with_complete_model_dir_and_same_key(tmp_path):
    mdir = tmp_path / "models" / "frozen-seed0"
    key = {"regime": {"name": "frozen"}, "seed": 0, "train_idx": [0, 2], "eval_idx": [1]}
    _fake_model_dir(mdir)
    write_run_record(mdir, key, {"metrics": {"accuracy": 0.5}, "seconds": 1.0, "trainable_params": 3, "probs": None})
    assert read_run_record(mdir, key)["metrics"] == {"accuracy": 0.5}
    assert read_run_record(mdir, {**key, "seed": 1}) is None  # another config: rerun
    assert completed_runs(tmp_path) == ["models/frozen-seed0"]
    (mdir / "model.safetensors").unlink()  # the weights are gone: the record alone proves nothing
    assert read_run_record(mdir, key) is None
    assert completed_runs(tmp_path) == []


def test_resume_checkpoint_newest_loadable_and_skips_truncated(tmp_path):
    import torch

    ckdir = tmp_path / "model.checkpoints"
    ckdir.mkdir(parents=True)
    assert resume_checkpoint(ckdir) is None and resume_checkpoint(None) is None
    torch.save({"epoch": 1}, ckdir / "epoch=0-step=1.ckpt")
    old = time.time() - 100
    os.utime(ckdir / "epoch=0-step=1.ckpt", (old, old))
    torch.save({"epoch": 2}, ckdir / "epoch=1-step=2.ckpt")
    torch.save({"state_dict": {}}, ckdir / "best.ckpt")  # the epoch selection's weights: nothing to resume from
    assert resume_checkpoint(ckdir) == str(ckdir / "epoch=1-step=2.ckpt")
    data = (ckdir / "epoch=1-step=2.ckpt").read_bytes()
    (ckdir / "epoch=1-step=2.ckpt").write_bytes(data[: len(data) // 2])  # killed while saving
    assert resume_checkpoint(ckdir) == str(ckdir / "epoch=0-step=1.ckpt")


STUDY = ("study.regimes=[frozen,partial]", "study.seeds=[0]", "trainer.max_epochs=3", "source=null")


def _table(report: dict) -> dict:
    return {k: {n: v for n, v in row.items() if n != "seconds_per_run"} for k, row in report["table"].items()}


@pytest.mark.slow
def test_resume_reruns_only_the_killed_run_and_matches_uninterrupted(tmp_path):
    from tests.requests import fit_request
    from transfer.studies.fit import run_fit

    full = run_fit(fit_request(tmp_path / "a", *STUDY))
    run = tmp_path / "b"
    run_fit(fit_request(run, *STUDY))
    kept = json.loads((run / "models" / "frozen-seed0.run.json").read_text())
    shutil.rmtree(run / "models" / "partial-seed0")  # killed during the partial run: its outputs never finished
    (run / "models" / "partial-seed0.run.json").unlink()
    (run / "metrics.json").unlink()
    resumed = run_fit(fit_request(run, *STUDY, "resume=true"))
    assert _table(resumed) == _table(full)
    assert resumed["table"]["frozen"]["seconds_per_run"] == kept["seconds"]  # read back, not retrained
    saved = json.loads((run / "metrics.json").read_text())
    assert _table(saved) == _table(json.loads((tmp_path / "a" / "metrics.json").read_text()))
    assert saved["best"]["accuracy"] == full["best"]["accuracy"]
    assert completed_runs(run) == ["models/frozen-seed0", "models/partial-seed0"]


@pytest.mark.slow
def test_ctrl_c_during_fit_one_line_exit_130_and_resume_hint(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": str(Path(__file__).parents[1]),
    }
    run = tmp_path / "run"
    args = ["study.regimes=[frozen,partial]", "study.seeds=[0,1,2]", "trainer.max_epochs=200", "source=null"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "transfer", "trainer.accelerator=cpu", *args, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run / "models" / "frozen-seed0.run.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)  # wait for the first finished run, then interrupt the next ones
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: kept "), err
    assert "models/frozen-seed0" in lines[0]
    assert f"rerun with resume=true hydra.run.dir={run}" in lines[0]
    assert not (run / "metrics.json").exists()  # nothing that claims the study finished
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".*.tmp-*"))


def test_ddp_rank_one_reads_rank_zeros_manifest_and_decodes_the_same_pixels(tmp_path, monkeypatch):
    import torch

    from tests.synthetic import write_image_folder
    from transfer.backbones.base import Preprocessing
    from transfer.data.shared_scan import SPLIT_MANIFEST, TOKEN_ENV, scan_once, wait_for_manifest
    from transfer.errors import UserError

    root = write_image_folder(tmp_path / "data", n=4)
    pre = Preprocessing(input_size=(3, 32, 32), crop_pct=1.0)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    for var in ("RANK", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    m0, px0, scanned0 = scan_once(str(root), pre, False, tmp_path / "run")
    assert scanned0 and (tmp_path / "run" / "scan_report.json").is_file()
    monkeypatch.setenv("RANK", "1")  # the token set by rank 0 is inherited, as by Lightning's children
    m1, px1, scanned1 = scan_once(str(root), pre, False, tmp_path / "run")
    assert not scanned1 and m1.samples == m0.samples and m1.classes == m0.classes
    assert torch.equal(px1, px0)
    monkeypatch.setenv(TOKEN_ENV, "another-launch")  # a manifest left by an earlier run is not trusted
    with pytest.raises(UserError, match=f"{SPLIT_MANIFEST}: rank 1 waited 1 s .*TRANSFER_SCAN_WAIT_S"):
        wait_for_manifest(tmp_path / "run", str(root), 1, timeout_s=1.0)

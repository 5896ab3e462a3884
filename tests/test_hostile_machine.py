"""The machine says no: a GPU trainer where there is none, a full disk under the run dir. Each is one line naming the
setting or file and the fix, exit code 2, no traceback, and nothing left that a later run would trust."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from transfer.app import cli
from transfer.app.early import check_accelerator
from transfer.errors import UserError
from transfer.training.config import TrainerConfig

REPO = Path(__file__).resolve().parents[1]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: trainer=ddp is valid here")


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@NO_GPU
def test_a_gpu_trainer_without_a_gpu_names_the_cpu_settings():
    with pytest.raises(UserError) as err:
        check_accelerator(TrainerConfig(accelerator="gpu", devices=-1, strategy="ddp"))
    assert str(err.value).startswith("trainer=ddp: this machine has no GPU")
    assert "trainer=default" in str(err.value) and "trainer.accelerator=cpu" in str(err.value)
    with pytest.raises(UserError, match=r"^trainer.accelerator=cuda: this machine has no GPU"):
        check_accelerator(TrainerConfig(accelerator="cuda"))
    check_accelerator(TrainerConfig(accelerator="cpu", strategy="ddp"))  # DDP on CPU processes is allowed
    check_accelerator(TrainerConfig())  # auto: the CPU here


@NO_GPU
def test_trainer_ddp_on_the_cli_stops_before_any_run_dir(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "transfer", "trainer=ddp", "hydra.run.dir=run"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = _one_error_line(proc)
    assert "trainer=ddp" in line and "trainer=default" in line and "trainer.accelerator=cpu" in line
    assert not (tmp_path / "run").exists()  # no regime ran first, nothing was written


def test_a_full_disk_anywhere_in_a_run_is_one_line_naming_the_file(monkeypatch, capsys):
    import transfer.app.dispatch as dispatch

    def full(_cfg):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/model.checkpoints/epoch=0-step=2.ckpt")

    monkeypatch.setattr(dispatch, "dispatch", full)
    with pytest.raises(SystemExit) as exit_:
        cli._task(None)
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: /runs/x/model.checkpoints/epoch=0-step=2.ckpt: cannot write (No space left on")
    assert "hydra.run.dir=" in line
    monkeypatch.setattr(dispatch, "dispatch", lambda _cfg: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):  # another OSError is a bug to see, not a user's disk
        cli._task(None)


ENOSPC_RUNNER = """
import errno, os, shutil, sys
real_move = shutil.move


def full(src, dst, *args, **kwargs):  # the disk fills while Lightning commits an epoch checkpoint (fsspec's move)
    if str(dst).endswith(".ckpt"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
    return real_move(src, dst, *args, **kwargs)


shutil.move = full
from transfer.app.cli import main

sys.argv = ["transfer", *sys.argv[1:]]
main()
"""


@pytest.mark.slow  # one fine-tune of LeNet-5 on digits: ~10-20 s
def test_a_full_disk_under_the_run_dir_leaves_nothing_a_later_run_would_trust(tmp_path):
    runner = tmp_path / "runner.py"
    runner.write_text(ENOSPC_RUNNER)
    args = ["study.regimes=[partial]", "study.seeds=[0]", "source=null", "trainer.max_epochs=2"]
    args += ["study.probe_stages=null", "trainer.accelerator=cpu", "hydra.run.dir=run"]
    proc = subprocess.run(
        [sys.executable, str(runner), *args], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600
    )
    line = _one_error_line(proc)
    assert ".ckpt: cannot write (No space left on device)" in line and "hydra.run.dir=" in line
    run = tmp_path / "run"
    assert not (run / "metrics.json").exists() and not (run / "model").exists()
    assert not list(run.rglob("*.run.json")) and not list(run.rglob("*.ckpt"))  # no record, no checkpoint to resume
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]  # no half-written file beside them

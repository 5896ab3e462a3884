"""Hostile command lines through the real CLI: each ends in exit code 2, exactly one `error:` line naming the key or
file, no traceback, and no model dir left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# (arguments, what the error line must name); {tmp} is the test's folder. All fail before torch loads.
FAST = [
    (["trainer.max_epochs=abc"], "trainer.max_epochs"),
    (["trainer.max_epochs=-3"], "trainer.max_epochs"),
    (["data.batch_size=0"], "data.batch_size"),
    (["trainer.precision=banana"], "trainer.precision"),
    (["+trainer.max_epoch=3"], "trainer.max_epoch"),
    (["head.lr=-1"], "head.lr"),
    (["scheduler=hyperrule", "scheduler.reference_batch=0"], "scheduler.reference_batch"),
    (["scheduler.name=linear"], "scheduler.name"),
    (["data=folder", "data.root={tmp}/afile"], "data.root"),
    (["hydra.run.dir={tmp}/afile/run"], "hydra.run.dir"),
    (["resume=true"], "resume=true"),
    (["trainer.num_nodes=2"], "trainer.num_nodes"),
    (["command=predict", "model={tmp}/nocard"], "command=predict"),  # images= missing
    (["command=predict", "model={tmp}/nocard", "images={tmp}/afile"], "model="),
    (["command=evaluate", "model={tmp}/nocard", "data=folder", "data.root={tmp}/two"], "model="),
]


def _env() -> dict:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": str(Path(__file__).parents[1]),
    }


def _assert_one_line_error(proc: subprocess.CompletedProcess, names: str, cwd: Path) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert names in errors[0], errors[0]
    assert not [p for p in cwd.rglob("model") if p.is_dir()] and not list(cwd.rglob("model.safetensors.*"))


def _setup(tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder\n")
    (tmp / "nocard").mkdir()
    for c in ("x", "y"):
        (tmp / "two" / c).mkdir(parents=True)


def test_fast_hostile_command_lines(tmp_path):
    """Started together (each waits mostly on imports), checked one by one."""
    _setup(tmp_path)
    procs = []
    for i, (args, _) in enumerate(FAST):
        cwd = tmp_path / f"case{i}"
        cwd.mkdir()
        argv = [a.format(tmp=tmp_path) for a in args]
        procs.append(
            (
                cwd,
                subprocess.Popen(
                    [sys.executable, "-m", "transfer", "trainer.accelerator=cpu", *argv],
                    cwd=cwd,
                    env=_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    for (cwd, p), (_args, names) in zip(procs, FAST, strict=True):
        out, err = p.communicate(timeout=300)
        _assert_one_line_error(subprocess.CompletedProcess(p.args, p.returncode, out, err), names, cwd)


@pytest.mark.slow
def test_empty_pth_as_backbone_weights(run_cli, tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    proc = run_cli("trainer.accelerator=cpu", f"backbone.weights={tmp_path / 'empty.pth'}", "source=null")
    _assert_one_line_error(proc, "empty.pth", tmp_path)


@pytest.mark.slow
def test_evaluate_a_three_class_model_on_two_other_classes(run_cli, tmp_path):
    import torch

    from tests.imagegen import class_image
    from transfer.backbones.factory import create_backbone
    from transfer.model.classifier import Classifier
    from transfer.model.heads import create_head
    from transfer.model.model_dir import save_model_dir

    torch.manual_seed(0)
    bb = create_backbone("lenet5", pretrained=False)
    save_model_dir(
        tmp_path / "m",
        Classifier(bb, create_head("softmax", bb.num_features, 3)),
        "lenet5",
        ["a", "b", "c"],
        {"name": "softmax"},
    )
    for c in ("dog", "cow"):
        (tmp_path / "data" / c).mkdir(parents=True)
        class_image(0, 1, (40, 40)).save(tmp_path / "data" / c / "1.png")
    proc = run_cli("command=evaluate", f"model={tmp_path / 'm'}", "data=folder", f"data.root={tmp_path / 'data'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data.root=" in errors[0] and "cow" in errors[0], proc.stderr

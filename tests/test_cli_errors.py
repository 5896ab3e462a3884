"""Mistakes a user can make end in one line that names the key or file and the fix, exit code 2, no traceback."""

from __future__ import annotations

import pytest

from tests.synthetic import write_image_folder


def check_one_clean_line(proc, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_cat_detector_without_data(run_cli):
    check_one_clean_line(run_cli("recipe=cat_detector"), "data.root=data/cat_detector", "no such folder", "data.root=")


def test_cat_detector_offline_without_weights(run_cli, tmp_path):
    write_image_folder(tmp_path / "cats", n=3)
    line = check_one_clean_line(
        run_cli(
            "recipe=cat_detector",
            "data.root=cats",
            env={"HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "th")},
        ),
        "resnet50",
        "no network",
        "backbone.weights=",
        "backbone.pretrained=false",
    )
    assert str(tmp_path / "hf") in line


def test_missing_weights_file(run_cli, tmp_path):
    write_image_folder(tmp_path / "cats", n=3)
    check_one_clean_line(
        run_cli("recipe=cat_detector", "data.root=cats", "backbone.weights=nowhere/w.safetensors"),
        "backbone.weights=nowhere/w.safetensors",
        "no such file",
    )


@pytest.mark.parametrize(
    "args,needles",
    [
        (("command=frobnicate",), ("command='frobnicate'", "fit", "predict")),
        (("command=predict",), ("model=", "images=")),
        (("command=predict", "model=nowhere", "images=."), ("model=nowhere", "not a model dir")),
        (("study.regimes=[frozen,sideways]",), ("study.regimes", "sideways", "partial")),
        (("+head.lrr=3",), ("head.lrr: unknown key", "lr", "weight_decay")),
        (("+trainer.max_epoch=3",), ("trainer.max_epoch: unknown key", "max_epochs")),
        (("trainer.max_epochs=abc",), ("trainer.max_epochs=abc", "expected a whole number")),
        (("trainer.max_epochs=0",), ("trainer.max_epochs=0", ">= 1")),
        (("head.lr=-1",), ("head.lr=-1", "> 0")),
        (("data.batch_size=0",), ("data.batch_size=0", ">= 1")),
        (("trainer.precision=banana",), ("trainer.precision='banana'", "bf16-mixed")),
        (("augment=huge",), ("augment=huge", "light, none, standard, strong")),
        (("optimizer=adam",), ("optimizer=adam", "adamw, sgd")),
        (("command=export", "model=m", "format=banana"), ("format='banana'", "onnx, torchscript")),
        (("-m", "head.lr=0.1,-2"), ("head.lr=-2", "> 0")),
        (("command=label-issues", "data=folder", "data.root=nowhere"), ("data.root=nowhere", "no such folder")),
        (("command=suggest",), ("command=suggest needs model=", "images=")),
        (("command=suggest", "model=nowhere", "images=."), ("model=nowhere", "not a model dir")),
        (("command=suggest", "n=0"), ("n=0", ">= 1")),
        (("command=rank-backbones", "data=folder", "data.root=."), ("backbones=[", "needs the candidates")),
        (("command=rank-backbones", "backbones=[]"), ("backbones=[]", "no candidates")),
        (("command=rank-backbones", "backbones=[a]", "data=folder", "data.root=gone"), ("data.root=gone", "no such")),
    ],
)
def test_bad_values(run_cli, args, needles):
    check_one_clean_line(run_cli(*args), *needles)


def test_an_unknown_backbone_in_the_candidates_is_named_with_the_close_names(run_cli):
    proc = run_cli("command=rank-backbones", "backbones=[resnet18,resnt50]", "data=folder", "data.root=.")
    check_one_clean_line(proc, "backbones[1]", "resnt50", "not a registered backbone", "resnet50")


def test_debug_env_prints_the_chain_behind_the_one_line(run_cli):
    proc = run_cli("head.lr=-1", env={"TRANSFER_DEBUG": "1"})
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("error: head.lr=-1")


def test_help_teaches_commands_recipes_groups_and_examples(run_cli):
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for needle in ("commands", "fit", "predict", "export", "recipes", "cat_detector", "digits", "config groups"):
        assert needle in out
    assert "regime           auto, frozen, full, partial, scratch" in out
    assert "optimizer        adamw, sgd" in out
    assert out.count("python -m transfer") >= 3 and "--hydra-help" in out

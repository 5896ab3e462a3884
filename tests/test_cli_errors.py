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
    ],
)
def test_bad_values(run_cli, args, needles):
    check_one_clean_line(run_cli(*args), *needles)

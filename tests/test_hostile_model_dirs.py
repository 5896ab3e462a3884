"""Damaged model dirs and non-image files in `predict`: one line naming the model dir or file and the fix, exit code 2,
no traceback, and no predictions.csv (nothing a later step would read as a result)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.synthetic import write_image_folder
from transfer.backbones import create_backbone
from transfer.errors import UserError
from transfer.model.classifier import Classifier
from transfer.model.heads import create_head
from transfer.model.model_dir import load_model_dir, save_model_dir

REPO = Path(__file__).resolve().parents[1]


def _model_dir(path: Path) -> Path:
    torch.manual_seed(0)
    backbone = create_backbone("lenet5")
    clf = Classifier(backbone, create_head("softmax", backbone.num_features, 3))
    return save_model_dir(path, clf, "lenet5", ["a", "b", "c"], {"name": "softmax"})


def _nan_weights(d: Path) -> None:
    state = load_file(str(d / "model.safetensors"))
    state["backbone.c1.weight"].view(-1)[0] = float("nan")
    save_file(state, str(d / "model.safetensors"))


def _truncated(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def _edit_card(change):
    def edit(d: Path) -> None:
        card = json.loads((d / "card.json").read_text())
        change(card)
        (d / "card.json").write_text(json.dumps(card))

    return edit


# (name, damage, what the one line must say)
DAMAGE = [
    ("nan", _nan_weights, "backbone.c1.weight holds NaN or inf"),
    ("truncated", _truncated, "model.safetensors is not readable"),
    ("fewer_classes", _edit_card(lambda c: c.update(classes=["a", "b"])), "lists 2 classes but the weights' head"),
    ("no_preprocessing", _edit_card(lambda c: c.pop("preprocessing")), "card.json lacks 'preprocessing'"),
]


@pytest.mark.parametrize(("name", "damage", "says"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_model_dir_is_refused_in_one_line_when_loaded(tmp_path, name, damage, says):
    d = _model_dir(tmp_path / name)
    damage(d)
    with pytest.raises(UserError) as err:
        load_model_dir(d)
    line = str(err.value)
    assert says in line and f"model={d}" in line and "\n" not in line
    assert "fit again" in line  # the fix


def test_a_card_with_malformed_preprocessing_names_the_key(tmp_path):
    d = _model_dir(tmp_path / "m")
    _edit_card(lambda c: c.update(preprocessing={"mean": [0.5]}))(d)
    with pytest.raises(UserError, match=r"card.json: 'preprocessing' is incomplete or malformed \(KeyError"):
        load_model_dir(d)


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}


@pytest.mark.slow  # five CLI processes importing torch: ~15 s on 2 idle cores
def test_predict_through_the_cli_refuses_each_damaged_dir_and_a_text_file_named_jpg(tmp_path):
    """Started together (each waits mostly on imports), checked one by one."""
    good = _model_dir(tmp_path / "good")
    images = write_image_folder(tmp_path / "imgs", n=1)
    text = tmp_path / "notes.jpg"
    text.write_text("a shopping list, not a photo\n")
    cases = []
    for name, damage, says in DAMAGE:
        d = shutil.copytree(good, tmp_path / name)
        damage(d)
        cases.append((name, [f"model={d}", f"images={images}"], [says, f"model={d}"]))
    cases.append(("text", [f"model={good}", f"images={text}"], [f"images={text}: not an image", ".jpg suffix"]))
    procs = []
    for name, args, _ in cases:
        cwd = tmp_path / f"run_{name}"
        cwd.mkdir()
        cmd = [sys.executable, "-m", "transfer", "command=predict", *args, "hydra.run.dir=out"]
        procs.append((cwd, subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    for (cwd, proc), (name, _, says) in zip(procs, cases, strict=True):
        out, err = (b.decode() for b in proc.communicate(timeout=300))
        assert proc.returncode == 2, (name, err[-2000:])
        assert "Traceback" not in err + out and "BytesIO" not in err + out, name
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert all(s in lines[0] for s in says), (name, lines[0])
        assert not (cwd / "out" / "predictions.csv").exists(), name  # no NaN rows, no partial result


def test_a_folder_with_one_text_file_among_photos_predicts_the_photos_and_names_the_other(tmp_path):
    from transfer.app.commands.predict import refuse_if_nothing_readable
    from transfer.inference.predict import predict_files

    images = write_image_folder(tmp_path / "imgs", n=1)
    (images / "misty" / "notes.jpg").write_text("not a photo")
    rows = predict_files(_model_dir(tmp_path / "m"), images)
    bad = [r for r in rows if r.get("error")]
    assert len(rows) == 4 and len(bad) == 1 and bad[0]["file"].endswith("notes.jpg")
    assert bad[0]["error"] == "not an image (no image format Pillow reads; the .jpg suffix is only a name)"
    refuse_if_nothing_readable(rows, str(images))  # some photos were read: no error
    with pytest.raises(UserError, match=r"none of its 2 files is a readable image \(.*notes.jpg: not an image"):
        refuse_if_nothing_readable([bad[0], bad[0]], "folder")

"""command=evaluate writes the same predictions.csv columns as fit, intervals and a baseline, and report.html."""

from __future__ import annotations

import csv
import json

import torch

from tests.synthetic import write_image_folder
from transfer.backbones import create_backbone
from transfer.inference.evaluate import evaluate_folder
from transfer.model.classifier import Classifier
from transfer.model.heads import create_head
from transfer.model.model_dir import save_model_dir

CLASSES = ["misty", "neither", "tigger"]


def test_evaluate_writes_predictions_intervals_baseline_and_the_page(tmp_path):
    torch.manual_seed(0)
    backbone = create_backbone("lenet5")
    clf = Classifier(backbone, create_head("softmax", backbone.num_features, 3))
    model = save_model_dir(tmp_path / "m", clf, "lenet5", CLASSES, {"name": "softmax"})
    write_image_folder(tmp_path / "data" / "train", n=2)
    write_image_folder(tmp_path / "data" / "val", n=3, seed=1)
    m = evaluate_folder(model, tmp_path / "data", tmp_path / "out")
    with (tmp_path / "out" / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 and {r["split"] for r in rows} == {"val"}
    assert all(r["label"] == r["path"].split("/")[-2] and "/val/" in r["path"] for r in rows)
    assert list(rows[0])[:6] == ["path", "split", "label", "prediction", "confidence", "p_misty"]
    assert sum(r["label"] == r["prediction"] for r in rows) == round(m["accuracy"] * 9)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["majority_baseline"] == 1 / 3 and len(saved["accuracy_ci95"]) == 2
    assert saved["headline"]["name"] == "val accuracy" and saved["headline"]["n"] == 9
    assert {"recall_ci95", "precision_ci95"} <= set(saved["per_class"]["tigger"])
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'id="headline"' in page and 'id="gallery"' in page and 'id="calibration"' in page


def test_a_folder_without_split_folders_is_scored_as_plain_accuracy(tmp_path):
    torch.manual_seed(0)
    backbone = create_backbone("lenet5")
    clf = Classifier(backbone, create_head("softmax", backbone.num_features, 3))
    model = save_model_dir(tmp_path / "m", clf, "lenet5", CLASSES, {"name": "softmax"})
    write_image_folder(tmp_path / "data", n=2)
    m = evaluate_folder(model, tmp_path / "data", tmp_path / "out")
    assert m["split"] == "all" and m["headline"]["name"] == "accuracy"  # not "all accuracy" (the page shouts it)
    page = (tmp_path / "out" / "report.html").read_text()
    assert '<div class="hl-name">accuracy</div>' in page and "all accuracy" not in page
    assert "<li>weights of m: random initialisation of lenet5" in page  # the card says where the body started

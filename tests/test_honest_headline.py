"""Issue 12: splits keep every class in validation; without test/ the headline is cross-validated over all images;
command=learning-curve."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.requests import fit_request
from tests.synthetic import pattern_image, write_image_folder
from transfer.data.splits import stratified_split
from transfer.errors import UserError
from transfer.studies.crossval import fold_count, stratified_folds


def write_imbalanced_folder(root: Path, counts: dict[str, int], seed: int = 0, size=(32, 32)) -> Path:
    """One sub-folder per class with counts[class] pattern images (write_image_folder writes balanced folders)."""
    rng = np.random.default_rng(seed)
    for ci, (c, n) in enumerate(counts.items()):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pattern_image(ci, rng, size).save(root / c / f"{c}_{i:03d}.png")
    return root


def test_a_rare_class_keeps_an_image_in_validation_and_in_training():
    labels = torch.tensor([0] * 100 + [1] * 2)  # 50:1; proportional rounding gives class 1 no val image
    for seed in range(4):
        train, val = stratified_split(labels, 0.2, seed)
        assert torch.bincount(labels[val]).tolist() == [19, 1] and len(val) == 20
        assert torch.bincount(labels[train]).tolist() == [81, 1]
        assert sorted(train + val) == list(range(102))


def test_a_balanced_split_is_what_it_was():
    labels = torch.tensor([0] * 12 + [1] * 12 + [2] * 12)
    assert stratified_split(labels, 0.25, 0)[1] == [0, 3, 5, 13, 20, 22, 28, 32, 33]


def test_a_class_with_one_distinct_image_is_named_with_the_fix():
    labels = torch.tensor([0] * 10 + [1] * 2)
    groups = [str(i) for i in range(10)] + ["same", "same"]  # class b: two identical files
    with pytest.raises(UserError, match=r"^class 'b' has 1 distinct image\(s\): .*add images of it, or give train/"):
        stratified_split(labels, 0.2, 0, groups, ["a", "b"])


def test_folds_are_stratified_keep_duplicates_together_and_shrink_for_a_small_class():
    labels = torch.tensor([0] * 9 + [1] * 3)
    groups = [str(i) for i in range(12)]
    groups[1] = groups[0]  # an identical pair
    k, note = fold_count(labels, groups, 5, ["a", "b"])
    assert k == 3 and note.startswith("3 folds, not 5: class 'b' has 3 distinct image(s)")
    fold_of = stratified_folds(labels, groups, k, 0)
    assert fold_of[0] == fold_of[1] and sorted(set(fold_of)) == [0, 1, 2]
    rare = [f for f, y in zip(fold_of, labels.tolist(), strict=True) if y == 1]
    rare_per_fold = [rare.count(fold) for fold in (0, 1, 2)]
    assert rare_per_fold == [1, 1, 1]
    assert fold_count(labels, groups, 2, ["a", "b"]) == (2, "")


def _overrides(root: Path, tmp_path: Path, *more: str) -> list[str]:
    return [
        "data=folder",
        f"data.root={root}",
        "augment=none",
        "trainer.max_epochs=2",
        "head.lr=0.01",
        f"features.cache_dir={tmp_path / 'features'}",
        *more,
    ]


@pytest.mark.slow
def test_an_imbalanced_fit_scores_every_class_and_cross_validates_every_image_once(tmp_path, capsys):
    from transfer.studies.fit import run_fit

    root = write_imbalanced_folder(tmp_path / "data", {"common": 100, "rare": 2})
    out = tmp_path / "run"
    report = run_fit(fit_request(out, *_overrides(root, tmp_path)))
    printed = capsys.readouterr().out
    best = report["best"]
    assert best["n"] == 20 and best["confusion"][1] != [0, 0]  # the rare class is in validation
    recalls = [best["per_class"][c]["recall"] for c in ("common", "rare")]
    assert best["balanced_accuracy"] == pytest.approx(sum(recalls) / 2)
    cv = report["crossval"]
    assert (cv["folds"], cv["n"], cv["regime"], cv["seed"]) == (2, 102, "frozen", 0)
    assert cv["note"].startswith("2 folds, not 5: class 'rare' has 2 distinct image(s)")
    assert sum(map(sum, cv["confusion"])) == 102 and [sum(r) for r in cv["confusion"]] == [100, 2]
    assert cv["balanced_accuracy"] == pytest.approx(
        (cv["per_class"]["common"]["recall"] + cv["per_class"]["rare"]["recall"]) / 2
    )
    h = report["headline"]
    assert (h["name"], h["n"], h["value"], h["ci95"]) == (
        "2-fold cross-validated accuracy",
        102,
        cv["accuracy"],
        cv["accuracy_ci95"],
    )
    expected = "stratified 2-fold cross-validation of the chosen regime (frozen, seed 0) over all 102 images"
    assert h["source"].startswith(expected)
    assert report["selection"]["name"] == "val accuracy, used to select" and report["selection"]["n"] == 20
    with (out / "predictions.csv").open() as fh:
        cv_rows = [r for r in csv.DictReader(fh) if r["split"] == "cv"]
    names = [r["path"] for r in cv_rows]
    assert len(names) == 102 and len(set(names)) == 102  # every image predicted exactly once, out of fold
    assert "cross-validation: stratified 2-fold of frozen (seed 0) over all 102 images" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["headline"] == h and saved["best"]["n"] == 20
    assert "2-fold cross-validated accuracy" in (out / "report.html").read_text()


def test_without_test_folder_the_headline_cross_validates_every_image_once(tmp_path):
    from transfer.studies.fit import run_fit

    root = write_image_folder(tmp_path / "data", n=4, size=(32, 32))
    report = run_fit(fit_request(tmp_path / "run", *_overrides(root, tmp_path, "trainer.max_epochs=1")))
    cv, h = report["crossval"], report["headline"]
    assert (cv["folds"], cv["n"], sum(map(sum, cv["confusion"]))) == (4, 12, 12)
    assert (h["name"], h["n"], h["value"]) == ("4-fold cross-validated accuracy", 12, cv["accuracy"])
    # the chosen model is the frozen regime's probe: the linear-probe baseline is its own number, marked so
    assert h["baselines"] == {"majority class": cv["majority_baseline"], "linear probe": cv["accuracy"]}
    assert h["same_as_model"] == ["linear probe"]
    with (tmp_path / "run" / "predictions.csv").open() as fh:
        names = [r["path"] for r in csv.DictReader(fh) if r["split"] == "cv"]
    assert sorted(names) == sorted(str(p) for p in root.rglob("*.jpg"))  # each image once, out of fold


def test_with_a_test_folder_the_headline_is_test_and_nothing_is_cross_validated(tmp_path, capsys):
    from transfer.studies.fit import run_fit

    for split, n, seed in (("train", 4, 0), ("val", 2, 1), ("test", 2, 2)):
        write_image_folder(tmp_path / "data" / split, n=n, seed=seed, size=(32, 32))
    report = run_fit(fit_request(tmp_path / "run", *_overrides(tmp_path / "data", tmp_path)))
    assert "crossval" not in report and "selection" not in report
    assert report["headline"]["name"] == "test accuracy" and report["headline"]["n"] == 6
    assert "cross-validation" not in capsys.readouterr().out


def test_a_val_folder_missing_a_class_is_warned_in_the_fit_output(tmp_path, capsys):
    from transfer.studies.fit import run_fit

    write_image_folder(tmp_path / "data" / "train", n=4, size=(32, 32))
    write_image_folder(tmp_path / "data" / "val", classes=("misty", "neither"), n=2, seed=1, size=(32, 32))
    report = run_fit(fit_request(tmp_path / "run", *_overrides(tmp_path / "data", tmp_path, "report.cv_folds=0")))
    printed = capsys.readouterr().out
    assert f"warning: {tmp_path / 'data' / 'val'}: no image of class(es) ['tigger'] that train/ holds" in printed
    assert "crossval" not in report and report["headline"]["name"] == "val accuracy"


def test_cv_folds_of_one_is_refused_with_the_fix(tmp_path):
    with pytest.raises(UserError, match=r"report.cv_folds=1: one fold cannot cross-validate; use 0 \(off\) or 2"):
        fit_request(tmp_path, "report.cv_folds=1")


@pytest.mark.slow
def test_learning_curve_command_prints_four_points_and_the_sentence_and_writes_its_files(run_cli, tmp_path):
    root = write_image_folder(tmp_path / "data", n=10, size=(32, 32))
    run_dir = tmp_path / "run"
    proc = run_cli(
        "command=learning-curve",
        "~recipe",
        *_overrides(root, tmp_path, "trainer.accelerator=cpu", "features.progress=false"),
        f"hydra.run.dir={run_dir}",
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},  # this checkout's package
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "learning curve: frozen (seed 0), scored on the same 6 val images" in proc.stdout
    assert "doubling the training images (from 24 to 48)" in proc.stdout.lower()
    saved = json.loads((run_dir / "learning_curve.json").read_text())
    assert [p["n"] for p in saved["points"]] == [3, 6, 12, 24] and saved["eval_n"] == 6
    assert saved["sentence"] in proc.stdout.replace("\n", " ") or saved["sentence"][:60] in proc.stdout
    assert (run_dir / "learning_curve.png").stat().st_size > 1000
    page = (run_dir / "report.html").read_text()
    assert 'id="learning_curve"' in page and "training images" in page


def test_learning_curve_engine_scores_nested_parts_on_the_same_images(tmp_path):
    from transfer.studies.learning_curve import run_learning_curve

    root = write_image_folder(tmp_path / "data", n=8, size=(32, 32))
    req = fit_request(tmp_path / "run", *_overrides(root, tmp_path, "trainer.max_epochs=1"))
    result = run_learning_curve(req, [0.25, 0.5, 1.0])
    assert [p["n"] for p in result["points"]] == [6, 10, 19] and result["eval_n"] == 5  # 20% of 24, stratified
    assert all(len(p["ci95"]) == 2 for p in result["points"]) and result["fit"]["n_sizes"] == 3
    assert result["sentence"].startswith(("Doubling", "The learning curve", "Accuracy did not rise"))
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"learning_curve.json", "learning_curve.png", "report.html"} <= written
    assert result["weights"]["kind"] == "random"  # lenet5 with no weights: the page says so in its title and warnings
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<h1>Learning curve: lenet5 from random initialisation (frozen)</h1>" in page
    assert "<li>random weights: lenet5 was not pretrained" in page

"""End to end: the digits study, a folder fit through the CLI with a local weights file, and predict."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from tests.requests import fit_request
from tests.synthetic import save_random_timm_weights, write_image_folder
from transfer.studies.fit import run_fit


def test_reduced_digits_study_transfers_above_chance(tmp_path, caplog):
    caplog.set_level("INFO")
    report = run_fit(
        fit_request(
            tmp_path,
            "study.regimes=[frozen,full]",
            "study.seeds=[0]",
            "study.probe_stages=[pooled,c5]",
            "source.max_epochs=4",
            "trainer.max_epochs=30",
            recipe="digits",
        )
    )
    assert list(report["table"]) == ["frozen", "full"]
    probe = report["stage_probe"]
    assert [(s, probe[s]["width"]) for s in probe] == [("pooled", 84), ("c5", 120)]
    assert all(len(r["accuracy_runs"]) == 1 and r["accuracy_mean"] > 0.45 for r in probe.values())
    assert report["source"]["accuracy"] > 0.8  # 5-way source task after 4 epochs
    for row in report["table"].values():
        assert row["accuracy_mean"] > 0.45  # chance is 0.2; 10 labelled images per class
    assert report["table"]["frozen"]["trainable_params"] == 84 * 5 + 5
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["table"]["full"]["accuracy_runs"] == report["table"]["full"]["accuracy_runs"]
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    assert card["classes"] == ["5", "6", "7", "8", "9"] and card["backbone"] == "lenet5"
    assert card["preprocessing"]["input_size"] == [1, 32, 32]
    assert (tmp_path / "source_model" / "model.safetensors").is_file()
    weights = card["weights"]  # the source model trained in this run, not "an earlier run's model dir"
    assert (weights["kind"], weights["path"], weights["classes"]) == (
        "source_model",
        str(tmp_path / "source_model"),
        [0, 1, 2, 3, 4],
    )
    assert (
        weights["sha256"] == hashlib.sha256((tmp_path / "source_model" / "model.safetensors").read_bytes()).hexdigest()
    )
    assert report["weights"] == weights and "feature_cache" in report and not report["random_body"]
    assert {p.name for p in (tmp_path / "models").iterdir() if p.is_dir()} == {"frozen-seed0", "full-seed0"}
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "regimes.png").stat().st_size > 1000
    rows = (tmp_path / "summary.md").read_text().splitlines()
    assert len(rows) == 2 + 2 and rows[2].startswith(("| frozen", "| full")) and "(chosen)" in "".join(rows)
    # a study prints one line per run: no per-run INFO lines from the source model's or the runs' training loops
    chatty = ("transfer.training.fit", "transfer.data.device_batches", "transfer.features")
    assert [r.getMessage() for r in caplog.records if r.name.startswith(chatty) and r.levelname == "INFO"] == []


@pytest.mark.parametrize("name,frozen", [("partial", 2), ("full", 0)])
def test_folder_fit_end_to_end_regimes_learn(tmp_path, name, frozen):
    root = write_image_folder(tmp_path / "data", n=12)
    report = run_fit(
        fit_request(
            tmp_path / "run",
            "data=folder",
            f"data.root={root}",
            "data.val_fraction=0.25",
            "data.batch_size=8",
            f"regime={name}",
            f"regime.frozen_stages={frozen}",
            "regime.body_lr_factor=1.0",
            "regime.norm=train",
            "head.lr=0.01",
            "augment=none",
            "trainer.max_epochs=25",
            "report.cv_folds=0",  # this test is about learning; 5 more fine-tunes would only slow it
        )
    )
    best = report["best"]
    assert best["n"] == 9  # 25% of 3 x 12, stratified: 3 per class
    assert best["accuracy"] >= 0.75  # chance is 1/3
    card = json.loads((tmp_path / "run" / "model" / "card.json").read_text())
    assert card["classes"] == ["misty", "neither", "tigger"]
    assert card["epoch"] is None  # trainer.monitor=none, the default: every image trains, the schedule's last epoch
    assert card["selected_by"] == "last epoch of the schedule, every training image trained on (trainer.monitor=none)"
    scan = json.loads((tmp_path / "run" / "scan_report.json").read_text())
    assert len(scan["samples"]) == 36


@pytest.mark.slow
def test_cat_detector_recipe_with_local_weights_then_predict(run_cli, tmp_path):
    write_image_folder(tmp_path / "cats", n=12)
    save_random_timm_weights("resnet50", tmp_path / "r50.safetensors")
    proc = run_cli(
        "recipe=cat_detector",
        "data.root=cats",
        "backbone.weights=r50.safetensors",
        "trainer.max_epochs=20",
        "hydra.run.dir=run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model:   " in proc.stdout and "command=predict" in proc.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best"]["regime"] == "frozen" and metrics["best"]["n"] == 7  # 20% of 36, stratified
    assert metrics["best"]["accuracy"] > 0.5  # chance is 1/3; random-weight ResNet-50 features still see colour
    assert metrics["table"]["frozen"]["trainable_params"] == 2048 * 3 + 3
    card = json.loads((tmp_path / "run" / "model" / "card.json").read_text())
    assert card["backbone"] == "resnet50" and card["classes"] == ["misty", "neither", "tigger"]

    proc = run_cli("command=predict", "model=run/model", "images=cats/tigger", "hydra.run.dir=pred")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "pred" / "predictions.csv").read_text().splitlines()))
    assert len(rows) == 12
    assert set(rows[0]) >= {"file", "class", "probability", "p_misty", "p_neither", "p_tigger"}
    assert all(r["class"] in card["classes"] and 0.0 <= float(r["probability"]) <= 1.0 for r in rows)
    assert sum(r["class"] == "tigger" for r in rows) >= 6


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_report(run_cli, tmp_path):
    """Lightning relaunches the CLI per rank into the same Hydra run dir; only rank 0 reports and writes."""
    write_image_folder(tmp_path / "cats", n=8)
    proc = run_cli(
        "recipe=cat_detector",
        "data.root=cats",
        "backbone=lenet5",
        "regime=scratch",
        "trainer.max_epochs=3",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "hydra.run.dir=run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best: scratch") == 1
    assert (tmp_path / "run" / "train_ddp_process_1.log").is_file()  # the second rank ran, in the same run dir
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best"]["n"] == 5  # 20% of 24, whole val set
    assert [p.name for p in tmp_path.iterdir() if p.name == "outputs"] == []  # no stray run dirs


def test_a_test_folder_beside_val_is_scored_once_with_the_best_model(tmp_path):
    for split, n, seed in (("train", 10, 0), ("val", 3, 1), ("test", 4, 2)):
        write_image_folder(tmp_path / "data" / split, n=n, seed=seed)
    report = run_fit(
        fit_request(
            tmp_path / "run",
            "data=folder",
            f"data.root={tmp_path / 'data'}",
            "data.batch_size=8",
            "regime=scratch",
            "head.lr=0.01",
            "augment=none",
            "trainer.max_epochs=20",
        )
    )
    assert report["eval_split"] == "val" and report["best"]["n"] == 9
    assert report["test"]["n"] == 12 and sum(map(sum, report["test"]["confusion"])) == 12
    assert report["test"]["accuracy"] > 0.5  # chance is 1/3
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["model_dir"].endswith("model")
    # the temperature is fitted on val/ (never test/), saved beside the weights, and predict applies it on request
    from transfer.inference.predict import predict_files

    cal = json.loads((tmp_path / "run" / "model" / "calibration.json").read_text())
    assert cal["fitted_on"] == "val" and cal["temperature"] > 0
    plain = predict_files(tmp_path / "run" / "model", tmp_path / "data" / "test")
    tempered = predict_files(tmp_path / "run" / "model", tmp_path / "data" / "test", calibrate=True)
    assert [r["class"] for r in plain] == [r["class"] for r in tempered]
    assert any(abs(a["probability"] - b["probability"]) > 1e-6 for a, b in zip(plain, tempered, strict=True))


def test_an_unknown_probe_stage_names_the_choices(tmp_path):
    from transfer.errors import UserError

    expected = r"study.probe_stages: backbone 'lenet5' has no stage 'c9'; choose from pooled, features, c1, c3, c5, f6"
    with pytest.raises(UserError, match=expected):
        run_fit(
            fit_request(
                tmp_path,
                "data.classes=[5,6]",
                "data.shots=5",
                "trainer.max_epochs=1",
                "study.probe_stages=[c9]",
                "augment=none",
            )
        )

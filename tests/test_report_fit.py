"""Honest numbers in fit and evaluate: intervals, baselines, the headline, paired verdicts, predictions.csv and
report.html."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from tests.requests import fit_request
from tests.synthetic import write_image_folder
from transfer.eval.report_sections import calibration_section, gallery_section, headline_warnings
from transfer.eval.scoring import prediction_rows, scored_metrics
from transfer.studies.report_data import make_headline
from transfer.studies.study import RunResult, StudyResult, paired_comparison

CLASSES = ["a", "b", "c"]


def _probs(preds: list[int], k: int = 3, conf: float = 0.8) -> torch.Tensor:
    p = torch.full((len(preds), k), (1 - conf) / (k - 1))
    p[torch.arange(len(preds)), torch.tensor(preds)] = conf
    return p


def test_scored_metrics_add_intervals_and_the_majority_baseline_keeping_every_key():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    m = scored_metrics(_probs([0, 1, 1, 1, 2, 2, 2, 0]), labels, CLASSES, torch.tensor([1, 1, 1, 0, 2]))
    assert m["accuracy"] == pytest.approx(6 / 8) and m["n"] == 8
    low, high = m["accuracy_ci95"]
    assert low < 0.75 < high and low >= 0 and high <= 1
    assert m["balanced_accuracy_ci95"][0] < m["balanced_accuracy"] < m["balanced_accuracy_ci95"][1]
    assert m["majority_baseline"] == pytest.approx(2 / 8)  # training's majority is class 1: 2 of 8 eval labels
    a = m["per_class"]["a"]
    assert (a["precision"], a["recall"], a["support"]) == (0.5, 0.5, 2)
    assert len(a["recall_ci95"]) == 2 and len(a["precision_ci95"]) == 2
    assert {"f1_macro", "confusion", "balanced_accuracy"} <= set(m)


def test_prediction_rows_have_one_probability_column_per_class():
    rows = prediction_rows(["x/1.png", "x/2.png"], torch.tensor([2, 0]), _probs([2, 1], conf=0.7), CLASSES, "val")
    assert [r["path"] for r in rows] == ["x/1.png", "x/2.png"]
    assert [(r["label"], r["prediction"], r["split"]) for r in rows] == [("c", "c", "val"), ("a", "b", "val")]
    assert rows[0]["confidence"] == pytest.approx(0.7) and set(rows[0]) >= {"p_a", "p_b", "p_c"}


def _run(regime: str, seed: int, eval_idx: list[int], preds: list[int]) -> RunResult:
    acc = sum(p == y for p, y in zip(preds, LABELS[eval_idx].tolist(), strict=True)) / len(preds)
    return RunResult(regime, seed, {"accuracy": acc, "f1_macro": acc}, 1.0, 10, "", [], eval_idx, _probs(preds))


LABELS = torch.tensor([0] * 30 + [1] * 30)


def test_paired_verdicts_compare_each_regimes_best_seed_on_the_same_images():
    idx = list(range(60))
    truth = LABELS.tolist()
    bad = [1 - y if i % 2 else y for i, y in enumerate(truth)]  # half wrong
    result = StudyResult(runs=[_run("frozen", 0, idx, bad), _run("full", 0, idx, truth), _run("full", 1, idx, bad)])
    result.best = result.runs[1]
    paired = paired_comparison(result, LABELS, "val")
    assert paired["models"] == {"frozen": 0, "full": 0} and paired["n"] == 60
    assert paired["verdicts"] == ["full beats frozen, p < 0.001 (McNemar, 60 images)"]
    row = paired["rows"][0]
    assert (row["only_a_right"], row["only_b_right"]) == (0, 30)


def test_paired_verdicts_use_the_chosen_seed_when_seeds_split_differently():
    a, b = list(range(0, 40)), list(range(20, 60))
    result = StudyResult(
        runs=[
            _run("frozen", 0, a, [1, 1] + LABELS[a[2:]].tolist()),  # 2 wrong: seed 1 is frozen's best
            _run("frozen", 1, b, LABELS[b].tolist()),
            _run("full", 0, a, LABELS[a].tolist()),
            _run("full", 1, b, (1 - LABELS[b]).tolist()),
        ]
    )
    result.best = result.runs[2]  # full seed 0
    paired = paired_comparison(result, LABELS, "val")
    assert paired["models"] == {"frozen": 0, "full": 0} and "seed 0" in paired["basis"]
    assert paired["verdicts"] == ["no detectable difference between frozen and full on 40 images (p = 0.5)"]
    assert paired_comparison(StudyResult(runs=result.runs[:1], best=result.runs[0]), LABELS) is None


def test_headline_is_the_test_score_else_labelled_as_the_selection_split():
    best = {
        "regime": "full",
        "seed": 1,
        "accuracy": 0.9,
        "accuracy_ci95": [0.8, 0.95],
        "n": 50,
        "majority_baseline": 0.4,
    }
    test = {"accuracy": 0.7, "accuracy_ci95": [0.6, 0.8], "n": 20, "majority_baseline": 0.5}
    h = make_headline(best, test, "val", 4)
    assert (h["name"], h["value"], h["n"], h["baselines"]) == ("test accuracy", 0.7, 20, {"majority class": 0.5})
    assert h["source"].startswith("test/ folder, scored once by the chosen model (full, seed 1)")
    h = make_headline(best, None, "val", 4)
    assert (h["name"], h["value"], h["ci95"]) == ("val accuracy, used to select: optimistic", 0.9, [0.8, 0.95])
    assert make_headline(best, None, "val", 1)["name"] == "val accuracy"


def test_a_headline_whose_interval_reaches_the_baseline_is_warned_about():
    h = {"name": "test accuracy", "value": 0.55, "ci95": [0.41, 0.69], "n": 40, "baselines": {"majority class": 0.5}}
    (warning,) = headline_warnings(h)
    assert warning.startswith("the model is not clearly above the majority class baseline: test accuracy 55.0%")
    assert headline_warnings({**h, "ci95": [0.3, 0.45]})[0].startswith("the model is below")
    assert headline_warnings({**h, "ci95": [0.53, 0.6]}) == []


def test_gallery_orders_mistakes_by_confidence_and_calibration_fits_on_another_split():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
    labels = torch.tensor([1, 1, 1, 0])
    pixels = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    g = gallery_section(probs, labels, ["x", "y"], ["d/0.png", "d/1.png", "d/2.png", "d/3.png"], pixels)
    assert [it["name"] for it in g["mistakes"]] == ["0.png", "1.png", "3.png"]
    assert [it["name"] for it in g["uncertain_correct"]] == ["2.png"] and g["mistakes"][0]["image"].shape == (8, 8)
    c = calibration_section(probs, labels)
    assert c["temperature"] is None and sum(b["count"] for b in c["bins"]) == 4
    c = calibration_section(probs, labels, probs, labels)
    assert c["temperature"] > 0 and c["ece_after"] is not None


def _fit(out, root):
    from transfer.studies.fit import run_fit

    return run_fit(
        fit_request(
            out,
            "data=folder",
            f"data.root={root}",
            "data.batch_size=8",
            "study.regimes=[frozen,scratch]",
            "head.lr=0.01",
            "augment=none",
            "trainer.max_epochs=4",
            f"features.cache_dir={out.parent / 'features'}",
        )
    )


@pytest.mark.slow
def test_fit_writes_honest_numbers_predictions_and_the_page_and_poisoned_test_labels_change_only_the_test(tmp_path):
    for split, n, seed in (("train", 8, 0), ("val", 3, 1), ("test", 4, 2)):
        write_image_folder(tmp_path / "data" / split, n=n, seed=seed)
    report = _fit(tmp_path / "run", tmp_path / "data")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for m in (saved["best"], saved["test"]):
        assert {"accuracy_ci95", "balanced_accuracy_ci95", "majority_baseline"} <= set(m)
        assert {"recall_ci95", "precision_ci95"} <= set(m["per_class"]["misty"])
    assert saved["best"]["majority_baseline"] == pytest.approx(1 / 3)  # balanced training classes: the first wins
    h = saved["headline"]
    assert (h["name"], h["value"], h["n"]) == ("test accuracy", saved["test"]["accuracy"], 12)
    assert h["ci95"] == saved["test"]["accuracy_ci95"] and h["baselines"]["majority class"] == pytest.approx(1 / 3)
    probe = saved["probe_baseline"]  # the frozen probe on the same 12 test/ images (the chosen model, when frozen)
    assert h["baselines"]["linear probe"] == probe["accuracy"] and probe["n"] == 12
    assert probe["same_as_model"] == (saved["best"]["regime"] == "frozen")
    assert saved["paired"]["models"] == {"frozen": 0, "scratch": 0} and len(saved["paired"]["verdicts"]) == 1
    with (tmp_path / "run" / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["split"] for r in rows] == ["val"] * 9 + ["test"] * 12
    assert all(r["label"] == r["path"].split("/")[-2] for r in rows)
    assert {"path", "label", "prediction", "confidence", "p_misty", "p_neither", "p_tigger"} <= set(rows[0])
    page = (tmp_path / "run" / "report.html").read_text()
    for section in ('id="headline"', 'id="metrics"', 'id="gallery"', 'id="calibration"', 'id="evidence"'):
        assert section in page
    assert 'id="scan"' in page and 'id="duplicates"' in page and "temperature scaling" in page

    poisoned = tmp_path / "poisoned"
    shutil.copytree(tmp_path / "data", poisoned)
    (poisoned / "test" / "misty").rename(poisoned / "test" / "tmp")
    (poisoned / "test" / "tigger").rename(poisoned / "test" / "misty")
    (poisoned / "test" / "tmp").rename(poisoned / "test" / "tigger")
    again = _fit(tmp_path / "run2", poisoned)
    assert (again["best"]["regime"], again["best"]["seed"]) == (report["best"]["regime"], report["best"]["seed"])

    def selection(r: dict) -> dict:  # everything the choice rests on (seconds per run differ between runs)
        return {name: {k: v for k, v in row.items() if k != "seconds_per_run"} for name, row in r["table"].items()}

    assert selection(again) == selection(report)
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in report["runs"]]
    assert again["paired"]["rows"] == report["paired"]["rows"]
    assert again["test"]["accuracy"] != report["test"]["accuracy"]
    assert again["test"]["confusion"] != report["test"]["confusion"]


def test_a_frozen_fit_without_test_folder_writes_predictions_and_a_labelled_headline(tmp_path, capsys):
    from transfer.app.commands.fit import print_summary
    from transfer.studies.fit import run_fit

    root = write_image_folder(tmp_path / "data", n=8)
    out = tmp_path / "run"
    overrides = ("data=folder", f"data.root={root}", "data.val_fraction=0.25", "augment=none", "trainer.max_epochs=1")
    overrides += ("report.cv_folds=0",)  # the held-out headline (the cross-validated one: test_honest_headline.py)
    report = run_fit(fit_request(out, *overrides, "study.seeds=[0,1]", f"features.cache_dir={tmp_path / 'f'}"))
    h = report["headline"]
    assert h["name"] == "val accuracy, used to select: optimistic" and h["n"] == 6
    assert h["value"] == report["best"]["accuracy"] and "paired" not in report  # one regime: nothing to pair
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and all(r["split"] == "val" and r["label"] == r["path"].split("/")[-2] for r in rows)
    page = (out / "report.html").read_text()
    assert "no test/ folder: the headline is the val accuracy" in page and 'id="duplicates"' in page
    capsys.readouterr()
    print_summary(report, out)
    printed = capsys.readouterr().out
    assert "headline: val accuracy, used to select: optimistic" in printed and "6 images" in printed
    assert f"report:  {out / 'report.html'}" in printed


def test_a_held_out_split_named_test_never_says_there_is_no_test_folder():
    best = {"regime": "frozen", "seed": 0, "accuracy": 0.8, "accuracy_ci95": [0.7, 0.9], "n": 40}
    for n_runs in (1, 4):  # train/ + test/ folders (or the digits' test images): the held-out split is the test set
        assert "no test/ folder" not in make_headline(best, None, "test", n_runs)["source"]
        assert make_headline(best, None, "val", n_runs)["source"].endswith("; no test/ folder")


def test_the_evidence_tables_print_the_terminals_strings_on_the_page():
    from transfer.eval.evidence_tables import auto_rows, budget_text, regime_rows

    table = {
        "frozen": {
            "accuracy_mean": 0.71523,
            "accuracy_std": 0.009554,
            "f1_macro_mean": 0.70111,
            "seeds": [0, 1, 2],
            "trainable_params": 58709,
            "seconds_per_run": 1.234,
        }
    }
    assert regime_rows(table) == [["frozen", "0.715 ± 0.010", "0.701", "3", "58,709", "1.2"]]
    auto = {"seconds": 72.4, "budget_s": 60.0, "evidence": []}
    auto["evidence"] = [
        {
            "evidence": "linear probe, penultimate layer",
            "regime": None,
            "seconds": 0.61,
            "cv_accuracy": 0.7152,
            "folds": 5,
        },
        {"evidence": "candidate", "regime": "full", "seconds": 42.0, "accuracy": 0.8, "accuracy_ci95": [0.7, 0.9]},
    ]
    rows = auto_rows(auto)
    assert rows[0][2:5] == ["", "0.715 (5-fold)", "0.6"] and rows[1][2] == "0.800 (0.700-0.900)"
    assert budget_text(auto) == "72 s, over its 60 s budget by 12 s"
    assert budget_text({**auto, "seconds": 58.0}) == "58 s of a 60 s budget"

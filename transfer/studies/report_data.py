"""A fit run's honest report: the headline (metrics.json), predictions.csv, and report.html's data dict.

The headline is the test/ score when a test/ folder exists (scored once, by the chosen model); otherwise the chosen
regime and seed cross-validated over every labelled image (crossval.py), or, with report.cv_folds=0, the held-out
split the regime and seed were chosen on, and its name says so ("val accuracy, used to select: optimistic"). Beside it,
two baselines scored on the same images: the majority class of the training images, and the frozen linear probe
(probe_baseline.py).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from transfer.backbones.provenance import is_random
from transfer.data.labelled import LabelledImages
from transfer.eval.evidence_tables import (
    AUTO_COLUMNS,
    REGIME_COLUMNS,
    auto_rows,
    auto_scope,
    budget_text,
    regime_rows,
)
from transfer.eval.label_issues import LabelIssues
from transfer.eval.page import write_report
from transfer.eval.report_sections import (
    calibration_section,
    duplicates_section,
    gallery_section,
    headline_warnings,
    label_issues_section,
    provenance_lines,
    scan_section,
    weights_warnings,
)
from transfer.eval.scoring import prediction_rows, write_rows_csv
from transfer.model.calibration import save_temperature

PROBE = "linear probe"  # headline.baselines key of probe_baseline.py's number


@dataclass
class FitEvidence:
    """What the page needs beyond metrics.json: the task's images and the chosen model's probabilities on them."""

    images: LabelledImages  # the whole task, at store size
    train_idx: list[int]  # the chosen model's training split
    eval_idx: list[int]  # ... and its held-out split
    eval_probs: torch.Tensor | None  # N_eval x K softmax of the chosen model
    eval_name: str = "val"
    test_idx: list[int] | None = None
    test_probs: torch.Tensor | None = None
    cv_idx: list[int] | None = None  # cross-validated images (no test/): the headline's images
    cv_probs: torch.Tensor | None = None  # ... and their out-of-fold softmax
    label_issues: LabelIssues | None = None  # suspected label errors among the cv images (issue.index: into cv_idx)
    duplicates_cache: Path | None = None  # where duplicate pairs found among the same images are kept (None: none)


def make_headline(
    best: dict,
    test: dict | None,
    eval_name: str,
    n_runs: int,
    crossval: dict | None = None,
    probe: dict | None = None,
) -> dict:
    """{name, value, ci95, n, source, baselines, baseline_notes, same_as_model}: the one number to quote, labelled
    with where it comes from, beside the majority class and (with `probe`, probe_baseline.py's dict) the linear probe
    on the same images. `same_as_model` names the baselines that are the chosen model itself (no warning compares a
    model with itself)."""
    chosen = f"{best['regime']}, seed {best['seed']}"
    if test is not None:
        m, name = test, "test accuracy"
        source = f"test/ folder, scored once by the chosen model ({chosen})"
    elif crossval is not None:
        k = crossval["folds"]
        m, name = crossval, f"{k}-fold cross-validated accuracy"
        source = (
            f"stratified {k}-fold cross-validation of the chosen regime ({crossval['regime']}, seed "
            f"{crossval['seed']}) over all {crossval['n']} images; no test/ folder"
        )
        if n_runs > 1:
            source += f" (the regime and seed were chosen on the {eval_name} split, which the folds include)"
    elif n_runs > 1:
        m, name = best, f"{eval_name} accuracy, used to select: optimistic"
        source = f"the held-out {eval_name} split the regime and seed were chosen on ({chosen}){_no_test(eval_name)}"
    else:
        m, name = best, f"{eval_name} accuracy"
        source = f"the held-out {eval_name} split (one run: nothing was chosen on it){_no_test(eval_name)}"
    baselines = {"majority class": m["majority_baseline"]} if "majority_baseline" in m else {}
    notes, same, paired = {}, [], {}
    if probe is not None:
        notes[PROBE] = probe["note"]
        if probe.get("accuracy") is not None:
            baselines[PROBE] = probe["accuracy"]
            if probe.get("same_as_model"):
                same.append(PROBE)
            elif probe.get("paired"):
                paired[PROBE] = probe["paired"]  # the model and the probe on the same images: McNemar decides
    return {
        "name": name,
        "value": m["accuracy"],
        "ci95": m.get("accuracy_ci95"),
        "n": m["n"],
        "source": source,
        "baselines": baselines,
        "baseline_notes": notes,
        "same_as_model": same,
        "baseline_paired": paired,
    }


def _no_test(eval_name: str) -> str:
    """'; no test/ folder' when the held-out split is val (a split of train/, or val/); a held-out split named test (a
    test/ folder beside train/, the digits' test images) is the test set, and saying 'no test/ folder' is false."""
    return "; no test/ folder" if eval_name == "val" else ""


def prediction_table(ev: FitEvidence) -> list[dict]:
    """predictions.csv rows: the held-out split, then test/ when scored, then the out-of-fold predictions when
    cross-validated (split `cv`; a `split` column tells them apart)."""
    rows = []
    parts = (
        (ev.eval_idx, ev.eval_probs, ev.eval_name),
        (ev.test_idx, ev.test_probs, "test"),
        (ev.cv_idx, ev.cv_probs, "cv"),
    )
    for idx, probs, split in parts:
        if idx and probs is not None:
            part = ev.images.subset(idx)
            rows += prediction_rows(part.names, part.labels, probs, part.classes, split)
    return rows


def _scored(ev: FitEvidence) -> tuple[list[int], torch.Tensor] | None:
    """The images and probabilities behind the headline: test/ when scored, else the cross-validated images, else the
    held-out split."""
    if ev.test_idx and ev.test_probs is not None:
        return ev.test_idx, ev.test_probs
    if ev.cv_idx and ev.cv_probs is not None:
        return ev.cv_idx, ev.cv_probs
    return (ev.eval_idx, ev.eval_probs) if ev.eval_probs is not None else None


def _auto_evidence(auto: dict) -> dict:
    caption = (
        f"regime=auto measured on the training images only ({auto_scope(auto)}), "
        f"{budget_text(auto)}; chosen: {auto['chosen']}."
    )
    return {"columns": list(AUTO_COLUMNS), "rows": auto_rows(auto), "caption": caption, "verdicts": [auto["reason"]]}


def _evidence(report: dict) -> dict:
    if "auto" in report:
        return _auto_evidence(report["auto"])
    best = report["best"]
    caption = (
        f"{report.get('eval_split', 'val')} accuracy per regime, mean ± std over seeds; chosen: {best['regime']} "
        f"(seed {best['seed']})."
    )
    paired = report.get("paired") or {}
    if paired:
        caption += f" Paired tests: {paired['basis']}."
    rows = regime_rows(report["table"])  # the terminal's strings
    return {
        "columns": list(REGIME_COLUMNS),
        "rows": rows,
        "caption": caption,
        "verdicts": list(paired.get("verdicts") or []),
    }


def _duplicates(ev: FitEvidence) -> dict:
    held_out = [(ev.eval_name, ev.eval_idx), ("test", ev.test_idx)]  # from the pixels: every regime, no features
    return duplicates_section(ev.images, ev.train_idx, held_out, ev.duplicates_cache)


def page_title(report: dict) -> str:
    """'Training report: resnet50' names pretrained weights; a random body is said in the title itself."""
    name = report.get("backbone", "model")
    weights = report.get("weights") or {}
    if is_random(weights) and weights.get("by_design"):  # regime=scratch won: no pretrained start was meant
        return f"Training report: {name} trained from scratch (regime {(report.get('best') or {}).get('regime')})"
    if is_random(weights):
        return f"Training report: {name} from random initialisation (no pretrained weights)"
    if weights.get("kind") == "hub" and weights.get("tag") and "." not in str(name):
        return f"Training report: {name}.{weights['tag']}"
    return f"Training report: {name}"


def fit_page_data(report: dict, out_dir: Path, ev: FitEvidence) -> dict:
    """report.html's data dict (eval/page.py's contract) for a fit run."""
    out_dir = Path(out_dir)
    headline = report["headline"]
    on_test = "test" in report
    on_cv = not on_test and "crossval" in report
    data: dict = {
        "title": page_title(report),
        "subtitle": " · ".join(
            [str(out_dir), str(report.get("data", "")), datetime.datetime.now().strftime("%Y-%m-%d %H:%M")]
        ),
        "provenance": provenance_lines(report),
        "warnings": weights_warnings(report) + headline_warnings(headline),
        "headline": headline,
        "metrics": report["test"] if on_test else report["crossval"] if on_cv else report["best"],
        "images": {
            caption: str(out_dir / name)
            for name, caption in (("curves.png", "training curves"), ("regimes.png", "regimes"))
            if (out_dir / name).is_file()
        },
        "evidence": _evidence(report),
    }
    if not on_test and not on_cv and len(report.get("runs", [])) > 1:
        if ev.eval_name == "val":
            fix = "no test/ folder: the headline is the val accuracy the regime and seed were chosen on, which is "
            fix += "optimistic; add a test/ folder for an unbiased number"
        else:  # a test/ folder (or the digits' test images) is the held-out split: it chose the regime and seed
            fix = f"the headline is the {ev.eval_name} accuracy the regime and seed were chosen on, which is "
            fix += "optimistic; an unbiased number needs images that chose nothing (a val/ folder beside test/ to "
            fix += "choose on, or a single regime and seed)"
        data["warnings"].append(fix)
    scored = _scored(ev)
    if scored is not None:
        idx, probs = scored
        part = ev.images.subset(idx)
        data["gallery"] = gallery_section(probs, part.labels, part.classes, part.names, part.pixels)
        fit_probs = ev.eval_probs if on_test else None  # a temperature only from val/, when the headline is test/
        fit_labels = ev.images.labels[ev.eval_idx] if on_test else None
        data["calibration"] = calibration_section(probs, part.labels, fit_probs, fit_labels)
    scan_file = out_dir / "scan_report.json"
    if scan_file.is_file():
        data["scan"] = scan_section(json.loads(scan_file.read_text(encoding="utf-8")))
    if ev.label_issues is not None and ev.cv_idx:
        flagged = {it.index: ev.images.pixels[ev.cv_idx[it.index]] for it in ev.label_issues.issues}
        data["label_issues"] = label_issues_section(ev.label_issues, flagged)  # thumbnails of the flagged images only
    data["duplicates"] = _duplicates(ev)
    data["warnings"] += data["duplicates"]["warnings"]  # only when a held-out image copies a training image
    return data


def write_fit_report(report: dict, out_dir: Path, ev: FitEvidence) -> Path:
    """predictions.csv and report.html in the run dir; returns the page's path."""
    out_dir = Path(out_dir)
    write_rows_csv(prediction_table(ev), out_dir / "predictions.csv")
    data = fit_page_data(report, out_dir, ev)
    cal = data.get("calibration") or {}
    if cal.get("temperature") and (out_dir / "model").is_dir():  # fitted on val/, the headline on test/
        save_temperature(out_dir / "model", cal["temperature"], ev.eval_name, cal["ece"], cal["ece_after"])
    return write_report(data, out_dir / "report.html")

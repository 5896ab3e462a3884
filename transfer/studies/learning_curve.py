"""`command=learning-curve`'s engine: would more images help? Train the configured regime on nested, stratified parts
of the training images, score each on the same held-out images (with intervals), fit acc(n) and say what doubling the
images would likely gain. Writes learning_curve.json, learning_curve.png and report.html in the run dir.

The frozen regime caches features once, so each part costs only a head: the curve is nearly free. Every part uses
the same epochs and settings; the held-out images never change, so the points differ only by training-set size.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import replace
from pathlib import Path

import torch

from transfer.backbones.provenance import is_random, provenance_line
from transfer.eval.learning_curve import (
    doubling_sentence,
    fit_learning_curve,
    learning_curve_subsets,
    plot_learning_curve,
)
from transfer.eval.page import write_report
from transfer.eval.report_sections import scan_section, weights_warnings
from transfer.eval.scoring import scored_metrics
from transfer.studies.startup import FitRequest, start
from transfer.studies.study import quiet_per_run_logs, seeded_start
from transfer.training.fit import RunOptions, fit_classifier

FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def run_learning_curve(req: FitRequest, fractions: tuple[float, ...] | list[float] = FRACTIONS, on_point=None) -> dict:
    """Score req's first regime (frozen for regime=auto) with its first seed at each fraction of the training split;
    returns learning_curve.json's content: {"regime", "seed", "eval_split", "eval_n", "points", "fit", "sentence"}."""
    regime = req.regimes[0]
    if regime.name == "auto":  # the curve needs one regime: the cheap one, where features are cached once
        regime = req.presets["frozen"]
        print("learning curve: regime=auto -> frozen (the cheapest; set regime=partial or regime=full for another)")
    seed, cfg = req.seeds[0], replace(req.cfg, seed=req.seeds[0])
    setup = start(replace(req, regimes=[regime]), regime)
    task = setup.task
    train_idx, eval_idx = task.split(seed)
    labels, classes = task.images.labels, list(task.images.classes)
    held = task.images.subset(eval_idx)
    subsets = learning_curve_subsets(labels[torch.as_tensor(train_idx)], list(fractions), seed)
    once = RunOptions(validate_each_epoch=False)
    points = []
    with quiet_per_run_logs(True):
        for fraction, part in zip(fractions, subsets, strict=True):
            idx = [train_idx[i] for i in part]
            backbone, head = seeded_start(setup.make_backbone, regime, cfg.head, len(classes), seed)
            weights = backbone.weights_source  # every part starts from the same body
            fitted = fit_classifier(backbone, head, regime, task.images.subset(idx), held, cfg, None, True, once)
            m = scored_metrics(fitted.val_probs, held.labels, classes, labels[torch.as_tensor(idx)])
            point = {
                "fraction": float(fraction),
                "n": len(idx),
                "accuracy": m["accuracy"],
                "ci95": m.get("accuracy_ci95"),
                "balanced_accuracy": m["balanced_accuracy"],
                "majority_baseline": m.get("majority_baseline"),
                "seconds": fitted.seconds,
            }
            points.append(point)
            if on_point is not None:
                on_point(point)
    fit = fit_learning_curve([p["n"] for p in points], [p["accuracy"] for p in points])
    sentence = doubling_sentence(fit, len(train_idx))
    out = Path(req.out_dir)
    name = cfg.backbone.name
    png = plot_learning_curve(
        [(p["n"], p["accuracy"]) for p in points],
        fit,
        out / "learning_curve.png",
        f"{name} {regime.name}: {task.eval_name} accuracy",
    )
    result = {
        "backbone": name,
        "regime": regime.name,
        "seed": seed,
        "data": task.description,
        "eval_split": task.eval_name,
        "eval_n": len(eval_idx),
        "train_n": len(train_idx),
        "points": points,
        "fit": fit,
        "sentence": sentence,
        "weights": weights,
    }
    (out / "learning_curve.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_report(_page(result, out, png), out / "report.html")
    return result


def _page(result: dict, out: Path, png: Path) -> dict:
    """report.html's data (eval/page.py's contract): the learning_curve section, and the scan when there is one."""
    random = " from random initialisation" if is_random(result.get("weights")) else ""
    data = {
        "title": f"Learning curve: {result['backbone']}{random} ({result['regime']})",
        "subtitle": " · ".join([str(out), result["data"], datetime.datetime.now().strftime("%Y-%m-%d %H:%M")]),
        "provenance": [f"weights: {provenance_line(result.get('weights'))}"],
        "warnings": weights_warnings(result),
        "learning_curve": {
            "points": [{"n": p["n"], "accuracy": p["accuracy"], "ci95": p["ci95"]} for p in result["points"]],
            "sentence": (
                f"{result['sentence']} Every point is scored on the same {result['eval_n']} {result['eval_split']} "
                f"images; seed {result['seed']}."
            ),
            "image": str(png),
        },
    }
    scan_file = out / "scan_report.json"
    if scan_file.is_file():
        data["scan"] = scan_section(json.loads(scan_file.read_text(encoding="utf-8")))
    return data


def curve_table_rows(result: dict) -> list[tuple[str, ...]]:
    """The printed table: fraction, images, accuracy with its interval, balanced accuracy, seconds."""
    rows = []
    for p in result["points"]:
        ci = p["ci95"] or [p["accuracy"], p["accuracy"]]
        rows.append(
            (
                f"{p['fraction']:.0%}",
                str(p["n"]),
                f"{p['accuracy']:.3f} ({ci[0]:.3f}-{ci[1]:.3f})",
                f"{p['balanced_accuracy']:.3f}",
                f"{p['seconds']:.1f}",
            )
        )
    return rows

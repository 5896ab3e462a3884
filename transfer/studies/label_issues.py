"""Suspected label errors, wired into the product: every fit that cross-validates its headline, and
`command=label-issues` on a labelled folder.

Both hand out-of-fold probabilities to eval/label_issues.find_label_issues (confident learning, cleanlab): a fit its
headline's pooled folds (crossval.py), the command the frozen linear probe cross-validated the same way on cached
features (probe_cv.nested_probe_cv: a probe per fold, seconds once the features are cached). Both write
label_issues.csv, keep the ranked list in metrics.json["label_issues"], show it as a section of their report page and
print one line.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from transfer.atomic import write_text_atomic
from transfer.data.labelled import LabelledImages
from transfer.eval.label_issues import LabelIssues, find_label_issues
from transfer.eval.page import write_report
from transfer.eval.report_sections import label_issues_section, scan_section
from transfer.studies.probe_cv import frozen_features, nested_probe_cv
from transfer.studies.startup import FitRequest

CSV_NAME = "label_issues.csv"


def search_label_issues(images: LabelledImages, probs: torch.Tensor) -> LabelIssues:
    """Confident learning on `probs` (N x C, out of fold, rows in `images`' order); issue.index indexes `images`."""
    return find_label_issues(images.labels, probs, list(images.classes), list(images.names))


def fit_label_issues(
    images: LabelledImages, index: list[int], probs: torch.Tensor, out_dir: Path
) -> LabelIssues | None:
    """A fit's suspected label errors from its cross-validated headline (`index`: the images cross-validated, `probs`
    their out-of-fold softmax): label_issues.csv in the run dir; None (and one line saying why) when cleanlab cannot
    search these probabilities: a reference must not end the fit."""
    try:
        issues = search_label_issues(images.subset(index), probs)
    except (ValueError, IndexError) as e:
        print(f"label issues: not searched: {str(e).splitlines()[0]}")
        return None
    issues.to_csv(Path(out_dir) / CSV_NAME)
    return issues


def terminal_line(issues: LabelIssues, out_dir: Path | None = None) -> str:
    """'7 images may be mislabelled (of 605): see report (label_issues.csv)'; the search's count when nothing is."""
    where = f" ({Path(out_dir) / CSV_NAME})" if out_dir is not None and issues.issues else ""
    return issues.summary() + where


@dataclass
class ProbeLabelIssues:
    """What `command=label-issues` found, and how."""

    issues: LabelIssues
    images: LabelledImages  # the images searched (issue.index indexes these)
    report: dict  # metrics.json's content


def probe_label_issues(req: FitRequest) -> ProbeLabelIssues:
    """The frozen probe cross-validated over every labelled image (test/ included: a wrong label there misleads the
    score as much as one in train/), confident learning on its out-of-fold probabilities; label_issues.csv,
    metrics.json and report.html in `req.out_dir`."""
    started = time.perf_counter()
    ff = frozen_features(req, test_too=True)
    cv = nested_probe_cv(ff, req)
    issues = search_label_issues(ff.images, cv.probs)
    out = Path(req.out_dir)
    issues.to_csv(out / CSV_NAME)
    m = cv.metrics
    report = {
        "command": "label-issues",
        "backbone": ff.backbone.name,
        "data": ff.task.description,
        "classes": list(ff.images.classes),
        "probe": {
            "what": "frozen linear probe (L-BFGS), a probe per outer fold with its own inner CV for L2: out of fold",
            "folds": cv.folds,
            "l2": cv.l2,
            "accuracy": m["accuracy"],
            "accuracy_ci95": m.get("accuracy_ci95"),
            "n": m["n"],
            "feature_seconds": ff.seconds,
            "extracted": ff.extracted,
            "probe_seconds": cv.seconds,
            "notes": cv.notes,
        },
        "label_issues": issues.to_dict(),
        "wall_seconds": time.perf_counter() - started,
    }
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_report(page_data(report, issues, ff.images, out), out / "report.html")
    return ProbeLabelIssues(issues, ff.images, report)


def page_data(report: dict, issues: LabelIssues, images: LabelledImages, out_dir: Path) -> dict:
    """report.html's data (eval/page.py's contract) for `command=label-issues`: the probe's score as the headline, the
    suspected label errors, and the folder's scan."""
    p = report["probe"]
    data: dict = {
        "title": f"Suspected label errors: {report['backbone']}",
        "subtitle": " · ".join([str(out_dir), report["data"], datetime.datetime.now().strftime("%Y-%m-%d %H:%M")]),
        "headline": {
            "name": f"{p['folds']}-fold cross-validated linear probe accuracy",
            "value": p["accuracy"],
            "ci95": p["accuracy_ci95"],
            "n": p["n"],
            "source": (
                f"frozen {report['backbone']} features, an L-BFGS probe per fold (its L2 by an inner CV), each image "
                "scored by the probe that did not see it: the probabilities the label search reads"
            ),
        },
        "label_issues": label_issues_section(issues, images.pixels),
    }
    scan_file = Path(out_dir) / "scan_report.json"
    if scan_file.is_file():
        data["scan"] = scan_section(json.loads(scan_file.read_text(encoding="utf-8")))
    return data

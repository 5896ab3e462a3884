"""Honest scores of one model on one set of images: the metrics with bootstrap intervals and the majority-class
baseline beside them, and one predictions row per image. Shared by `fit` (held-out split, test/) and `evaluate`."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import torch

from transfer.atomic import write_text_atomic
from transfer.eval.metrics import classification_metrics
from transfer.eval.stats import majority_baseline, metric_intervals


def scored_metrics(
    probs: torch.Tensor, labels: torch.Tensor, classes: list[str], train_labels: torch.Tensor | None = None
) -> dict:
    """classification_metrics plus `accuracy_ci95`, `balanced_accuracy_ci95`, per-class `recall_ci95` /
    `precision_ci95` / `support`, and `majority_baseline` (train_labels' most common class, scored on `labels`)."""
    metrics = classification_metrics(probs, labels, classes)
    if labels.numel() == 0:
        return metrics
    iv = metric_intervals(labels, probs.argmax(1), len(classes), classes)
    metrics["accuracy_ci95"] = iv["accuracy_ci95"]
    metrics["balanced_accuracy_ci95"] = iv["balanced_accuracy_ci95"]
    for name, row in metrics["per_class"].items():
        got = iv["per_class"][name]
        row |= {"recall_ci95": got["recall_ci95"], "precision_ci95": got["precision_ci95"], "support": got["support"]}
    if train_labels is not None and train_labels.numel():
        metrics["majority_baseline"] = majority_baseline(train_labels, labels)
    return metrics


def prediction_rows(
    names: Sequence[str], labels: torch.Tensor, probs: torch.Tensor, classes: list[str], split: str
) -> list[dict]:
    """One row per image: path, split, label, prediction, confidence and p_<class> for every class."""
    if len(names) != len(labels) or len(labels) != len(probs):
        raise ValueError(f"{len(names)} names, {len(labels)} labels and {len(probs)} probability rows differ")
    rows = []
    for name, y, p in zip(names, labels.tolist(), probs.tolist(), strict=True):
        top = max(range(len(classes)), key=p.__getitem__)
        rows.append(
            {
                "path": str(name),
                "split": split,
                "label": classes[y],
                "prediction": classes[top],
                "confidence": p[top],
                **{f"p_{c}": v for c, v in zip(classes, p, strict=True)},
            }
        )
    return rows


def write_rows_csv(rows: list[dict], path: str | Path) -> Path:
    """Rows as CSV, columns in first-seen order (a key a row lacks is left empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return write_text_atomic(path, buf.getvalue())  # a kill mid-write leaves the previous file, never half a table

"""Classification metrics: accuracy beside balanced accuracy and macro F1, per class, and the confusion matrix."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Accuracy, macro F1 / balanced accuracy, per-class precision/recall and the confusion matrix (rows: truth)."""
    n = len(classes)
    preds = probs.argmax(1)
    per_p = multiclass_precision(preds, labels, n, average=None, zero_division=0).tolist()
    per_r = multiclass_recall(preds, labels, n, average=None, zero_division=0).tolist()
    return {
        "n": int(labels.numel()),
        "accuracy": float(multiclass_accuracy(preds, labels, n, average="micro")),
        "balanced_accuracy": float(multiclass_accuracy(preds, labels, n, average="macro")),
        "f1_macro": float(multiclass_f1_score(preds, labels, n, average="macro")),
        "per_class": {c: {"precision": p, "recall": r} for c, p, r in zip(classes, per_p, per_r, strict=True)},
        "confusion": multiclass_confusion_matrix(preds, labels, n).tolist(),
    }

"""Sections of the report page (eval/page.py's data contract) built from predictions: the gallery of mistakes,
calibration, warnings about the headline, the scan report and near-duplicate pairs. Plain inputs, no training."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from transfer.eval.calibration import expected_calibration_error, fit_temperature, reliability_bins
from transfer.eval.duplicates import label_conflicts, leakage_pairs

GALLERY_SIZE = 24  # items per gallery group
NEAR_BASELINE = 0.02  # a headline whose lower 95% bound is within 2 points of a baseline is not clearly above it


def image_array(pixels: torch.Tensor) -> np.ndarray:
    """A C x H x W uint8 tensor as the page's HxW (grey) or HxWx3 uint8 array."""
    arr = pixels.detach().cpu().numpy()
    return arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr[:3].transpose(1, 2, 0))


def gallery_section(
    probs: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    names: Sequence[str],
    images: Sequence | None = None,
    size: int = GALLERY_SIZE,
) -> dict:
    """The most confident mistakes and the least confident correct answers; `images` per item (arrays or paths),
    else the names are used as file paths."""
    conf, pred = probs.max(1)
    wrong = (pred != labels).tolist()

    def item(i: int) -> dict:
        img = images[i] if images is not None else names[i]
        if isinstance(img, torch.Tensor):
            img = image_array(img)
        return {
            "image": img,
            "true": classes[int(labels[i])],
            "predicted": classes[int(pred[i])],
            "confidence": float(conf[i]),
            "name": str(names[i]).rsplit("/", 1)[-1],
        }

    order = torch.argsort(conf, descending=True).tolist()
    mistakes = [i for i in order if wrong[i]][:size]
    uncertain = [i for i in reversed(order) if not wrong[i]][:size]
    return {"mistakes": [item(i) for i in mistakes], "uncertain_correct": [item(i) for i in uncertain]}


def calibration_section(probs: torch.Tensor, labels: torch.Tensor, fit_probs=None, fit_labels=None) -> dict:
    """ECE and reliability bins of `probs`; with (fit_probs, fit_labels) from another split (val/, never the scored
    one) a temperature is fitted there and the ECE after scaling reported on `probs`."""
    out = {
        "ece": expected_calibration_error(probs, labels),
        "ece_after": None,
        "temperature": None,
        "bins": [
            {
                "lo": b["lower"],
                "hi": b["upper"],
                "confidence": b["confidence"],
                "accuracy": b["accuracy"],
                "count": b["count"],
            }
            for b in reliability_bins(probs, labels)
            if b["count"]  # the page draws filled bins only
        ],
    }
    if fit_probs is not None and fit_labels is not None and len(fit_labels):
        temperature = fit_temperature(fit_probs.clamp_min(1e-12).log(), fit_labels)
        scaled = torch.softmax(probs.clamp_min(1e-12).log() / temperature, dim=1)
        out |= {"temperature": temperature, "ece_after": expected_calibration_error(scaled, labels)}
    return out


def baseline_shortfalls(headline: dict) -> list[tuple[str, str]]:
    """(baseline name, warning) for each baseline the headline is not clearly above (its lower 95% bound below or
    within NEAR_BASELINE of it); the baselines in `same_as_model` are the model itself and are skipped."""
    out = []
    ci = headline.get("ci95")
    value = headline.get("value")
    itself = set(headline.get("same_as_model") or [])
    for name, base in (headline.get("baselines") or {}).items():
        if not isinstance(base, int | float) or value is None or name in itself:
            continue
        low = ci[0] if ci else value
        if low <= base + NEAR_BASELINE:
            where = "below" if (ci[1] if ci else value) < base else "not clearly above"
            out.append(
                (
                    name,
                    f"the model is {where} the {name} baseline: {headline.get('name', 'accuracy')} {100 * value:.1f}% "
                    f"(95% CI {100 * low:.1f}-{100 * (ci[1] if ci else value):.1f}%) vs {100 * base:.1f}% "
                    f"on {headline.get('n', '?')} images",
                )
            )
    return out


def headline_warnings(headline: dict) -> list[str]:
    """Warnings about the headline: not clearly above a baseline (lower 95% bound below or near it)."""
    return [text for _, text in baseline_shortfalls(headline)]


def scan_section(scan: dict) -> dict:
    """scan_report.json's content as the page's scan section (files, images per class, refusals, warnings)."""
    counts = scan.get("class_counts", {}).get("all") or {}
    return {
        "files": len(scan.get("samples") or []),
        "classes": counts,
        "refused": [{"path": r.get("path", ""), "reason": r.get("reason", "")} for r in scan.get("refused") or []],
        "warnings": list(scan.get("warnings") or []),
    }


def duplicates_section(
    train_feats: torch.Tensor,
    eval_feats: torch.Tensor,
    train_images: Sequence,
    eval_images: Sequence,
    train_names: Sequence[str],
    eval_names: Sequence[str],
    train_labels: Sequence[str],
    eval_labels: Sequence[str],
    threshold: float = 0.95,
) -> dict:
    """Near-duplicates by cosine of centre-view features: held-out images leaked from train, and near-identical
    images with different labels (over both sets)."""

    def side(images, names, i):
        img = images[i]
        return (image_array(img) if isinstance(img, torch.Tensor) else img), str(names[i]).rsplit("/", 1)[-1]

    leak = []
    for i, j, s in leakage_pairs(train_feats, eval_feats, threshold):
        (a, an), (b, bn) = side(train_images, train_names, i), side(eval_images, eval_names, j)
        leak.append({"a": a, "b": b, "similarity": s, "a_name": an, "b_name": bn})
    n_train = len(train_names)
    every = torch.cat([train_feats, eval_feats])
    labels = list(train_labels) + list(eval_labels)
    index = {name: k for k, name in enumerate(sorted(set(labels)))}
    conflicts = []
    for i, j, s in label_conflicts(every, [index[x] for x in labels], threshold):
        pick = [
            (train_images, train_names, k) if k < n_train else (eval_images, eval_names, k - n_train) for k in (i, j)
        ]
        (a, an), (b, bn) = (side(*p) for p in pick)
        conflicts.append(
            {"a": a, "b": b, "similarity": s, "a_name": an, "b_name": bn, "a_label": labels[i], "b_label": labels[j]}
        )
    return {"leakage": leak, "label_conflicts": conflicts}

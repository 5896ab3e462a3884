"""Sections of the report page (eval/page.py's data contract) built from predictions: the gallery of mistakes,
calibration, warnings about the headline, the scan report, duplicate images and suspected label errors. Plain
inputs, no training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transfer.backbones.provenance import is_random, provenance_line
from transfer.data.labelled import LabelledImages
from transfer.eval.calibration import expected_calibration_error, fit_temperature, reliability_bins
from transfer.eval.duplicates import (
    MIN_IMAGES,
    DuplicatePair,
    Duplicates,
    label_conflicts,
    leakage_pairs,
    stored_duplicates,
)
from transfer.eval.label_issues import LabelIssues
from transfer.eval.stats import p_phrase
from transfer.features.cache import describe_key_record

GALLERY_SIZE = 24  # items per gallery group
LISTED = 50  # duplicate pairs listed per kind (all are counted)
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
    return {
        "mistakes": [item(i) for i in mistakes],
        "uncertain_correct": [item(i) for i in uncertain],
        "counts": {"mistakes": sum(wrong), "uncertain_correct": len(wrong) - sum(wrong)},  # all, not only those shown
    }


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
    """(baseline name, warning) for each baseline the headline is not clearly above; the baselines in `same_as_model`
    are the model itself and are skipped. A baseline scored on the same images with the model's per-image results
    (`baseline_paired`: an exact McNemar) is decided by that test at p < 0.05; one without them (the majority class)
    by the headline's lower 95% bound falling below or within NEAR_BASELINE of it."""
    out = []
    ci = headline.get("ci95")
    value = headline.get("value")
    itself = set(headline.get("same_as_model") or [])
    paired = headline.get("baseline_paired") or {}
    for name, base in (headline.get("baselines") or {}).items():
        if not isinstance(base, int | float) or value is None or name in itself:
            continue
        if name in paired:
            shortfall = paired_shortfall(name, base, headline, paired[name])
            if shortfall:
                out.append((name, shortfall))
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


def paired_shortfall(name: str, base: float, headline: dict, test: dict) -> str | None:
    """The warning when a paired test does not put the model above the baseline (None when it does)."""
    value, p = headline["value"], test["p_value"]
    if value > base and p < 0.05:
        return None
    where = "below" if value < base and p < 0.05 else "not clearly above"
    return (
        f"the model is {where} the {name} baseline: {headline.get('name', 'accuracy')} {100 * value:.1f}% vs "
        f"{100 * base:.1f}% on the same {test['n']} images (the model alone right on {test['b']}, the {name} alone on "
        f"{test['c']}; exact McNemar {p_phrase(p)})"
    )


def headline_warnings(headline: dict) -> list[str]:
    """Warnings about the headline: not clearly above a baseline (lower 95% bound below or near it)."""
    return [text for _, text in baseline_shortfalls(headline)]


def provenance_lines(report: dict) -> list[str]:
    """'weights: ...' (always) and 'feature cache: ...' (when a frozen run trained on cached features): the page's
    header and the terminal summary print these same lines."""
    best = report.get("best") or {}
    lines = [f"weights: {provenance_line(report.get('weights'))}"]
    if report.get("other_weights"):
        lines.append(f"weights of the pretrained regimes: {provenance_line(report['other_weights'])}")
    if best.get("norm") and not str(best["norm"]).startswith("norm none"):
        lines.append(f"batchnorm: {str(best['norm']).removeprefix('norm ')}")
    fc = report.get("feature_cache")
    if fc:
        which = f" ({fc['regime']}, seed {fc['seed']})" if "regime" in fc else ""
        chosen = "regime" in fc and (fc["regime"], fc.get("seed")) == (best.get("regime"), best.get("seed"))
        lines.append(f"feature cache{'' if chosen else which}: {describe_key_record(fc)}")
    return lines


def weights_warnings(report: dict) -> list[str]:
    """A warning when the chosen model's body started from random weights: its numbers are not what pretrained
    weights of that architecture give."""
    p = report.get("weights")
    if not is_random(p):
        return []
    name = p.get("name") or report.get("backbone", "the backbone")
    if p.get("by_design"):
        return [
            f"the chosen model ({(report.get('best') or {}).get('regime', 'scratch')}) trained {name} from random "
            "initialisation: no pretrained weights are behind this number"
        ]
    return [
        f"random weights: {name} was not pretrained (backbone.pretrained=false and no backbone.weights), so these "
        f"numbers say what a randomly initialised {name} learns from these images, not what pretrained {name} can "
        "do; give backbone.weights=<file> or backbone.pretrained=true"
    ]


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
    images: LabelledImages,
    train_idx: Sequence[int],
    held_out: Sequence[tuple[str, Sequence[int] | None]],
    cache: Path | None = None,
) -> dict:
    """Duplicates over all of the run's images (eval/duplicates.py: exact pixels, and near copies measured by
    bench/duplicates.py): held-out images that copy one of the chosen model's training images (`held_out`: (split name,
    indices) pairs), and copies filed under different labels. Always a one-line `summary`; `warnings` only when a
    held-out image copies a training image. Every pair is counted; the first LISTED of each kind get thumbnails.
    `cache`: where pairs found among the same images are kept (None: found afresh)."""
    found = stored_duplicates(images.pixels, images.digests(), cache)
    classes = [images.classes[y] for y in images.labels.tolist()]

    def entry(a: int, b: int, p: DuplicatePair) -> dict:
        names = [str(images.names[k]).rsplit("/", 1)[-1] for k in (a, b)]
        thumbs = [image_array(images.pixels[k]) for k in (a, b)]
        return {"a": thumbs[0], "b": thumbs[1], "similarity": p.similarity, "exact": p.exact}, names

    leaks, warnings = [], []
    for split, idx in held_out:
        pairs = leakage_pairs(found.pairs, train_idx, idx or [])
        leaks += [(split, *pair) for pair in pairs]
        held = {b for _, b, _ in pairs}
        if held:
            how = "duplicate" if all(p.exact for _, _, p in pairs) else "duplicate or nearly duplicate"
            warnings.append(
                f"{len(held)} {split} image(s) {how} the chosen model's training images: the {split} score is "
                "inflated (see Duplicates)"
            )
    conflicts = label_conflicts(found.pairs, images.labels)
    leakage = []
    for split, a, b, p in leaks[:LISTED]:
        item, (an, bn) = entry(a, b, p)
        leakage.append(item | {"a_name": an, "b_name": bn, "split": split})
    listed = []
    for p in conflicts[:LISTED]:
        item, (an, bn) = entry(p.i, p.j, p)
        listed.append(item | {"a_name": an, "b_name": bn, "a_label": classes[p.i], "b_label": classes[p.j]})
    shown = len({(p.i, p.j) for *_, p in leaks} | {(p.i, p.j) for p in conflicts})
    return {
        "summary": duplicates_summary(found, len(images), shown),
        "leakage": leakage,
        "label_conflicts": listed,
        "counts": {"leakage": len(leaks), "label_conflicts": len(conflicts)},
        "warnings": warnings,
    }


def duplicates_summary(found: Duplicates, n_images: int, shown: int) -> str:
    """The section's one line: what was looked for and what was found (`shown`: pairs listed below it)."""
    near = (
        "none is a resized, re-encoded or slightly cropped copy of another"
        if found.near_checked
        else f"near copies are looked for from {MIN_IMAGES} distinct images on"
    )
    if not found.pairs:
        return f"No duplicates among the {n_images:,} images: no two have the same pixels, and {near}."
    exact = sum(p.exact for p in found.pairs)
    line = (
        f"{len(found.pairs)} duplicate pair(s) among the {n_images:,} images ({exact} with the same pixels, "
        f"{len(found.pairs) - exact} near copies)"
    )
    same_side = "two images of one label on the same side of the split"
    if not shown:
        line += f", each between {same_side}: no held-out image copies a training image, no photo has two labels"
    else:
        line += f"; {shown} shown below"
        if shown < len(found.pairs):
            line += f"; the other {len(found.pairs) - shown} pair {same_side}"
    return line + ("." if found.near_checked else f"; {near}.")


def label_issues_section(
    issues: LabelIssues, images: Sequence | Mapping[int, Any] | None = None, size: int = 2 * GALLERY_SIZE
) -> dict:
    """The page's suspected-label-errors section: the `size` most suspicious images, ranked, each with its given and
    suggested label and score; `images` is indexed like the inputs of `find_label_issues` (uint8 C x H x W tensors,
    arrays or paths; a mapping from those indices needs only the flagged ones), else the names are used as file
    paths."""

    def item(issue) -> dict:
        img = images[issue.index] if images is not None else issue.name
        return {
            "image": image_array(img) if isinstance(img, torch.Tensor) else img,
            "name": issue.name.rsplit("/", 1)[-1],
            "given": issue.given,
            "suggested": issue.suggested,
            "score": issue.score,
            "p_given": issue.p_given,
            "p_suggested": issue.p_suggested,
        }

    return {
        "count": len(issues),
        "n": issues.n_images,
        "method": f"confident learning (cleanlab, filter_by={issues.filter_by}) on out-of-fold probabilities",
        "items": [item(issue) for issue in issues.issues[:size]],
    }

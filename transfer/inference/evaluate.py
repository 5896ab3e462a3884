"""Evaluate a model dir (or an ensemble, with multi-crop) on a labelled folder: metrics.json (with intervals and the
majority baseline), predictions.csv, the confusion plot and report.html."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from transfer.atomic import write_text_atomic
from transfer.backbones.provenance import provenance_line
from transfer.data.scan import scan_image_folder
from transfer.errors import UserError
from transfer.eval.page import write_report
from transfer.eval.plots import plot_confusion
from transfer.eval.report_sections import calibration_section, gallery_section, headline_warnings
from transfer.eval.scoring import prediction_rows, scored_metrics
from transfer.inference.ensemble import load_members
from transfer.inference.predict import predict_paths, write_csv


def evaluate_folder(
    model: str | Path | Sequence[str | Path], root: str | Path, out_dir: Path, tta: str = "center"
) -> dict:
    """Scan `root` (its test/ or val/ folder when it has split folders, else everything) and score the model(s)."""
    dirs = [model] if isinstance(model, str | Path) else list(model)
    members, classes = load_members(dirs)
    manifest = scan_image_folder(root)
    splits = {s.split for s in manifest.samples}
    split = "test" if "test" in splits else "val" if "val" in splits else None
    samples = [s for s in manifest.samples if split is None or s.split == split]
    unknown = sorted(set(manifest.classes) - set(classes))
    if unknown:
        raise UserError(f"data.root={root}: class folder(s) {unknown} are not classes of the model ({classes}).")
    index = {c: i for i, c in enumerate(classes)}
    rows = [r for r in predict_paths(dirs, [Path(s.path) for s in samples], tta) if not r.get("error")]
    scored = {r["file"] for r in rows}
    samples = [s for s in samples if s.path in scored]  # a file that cannot be decoded is left out (and said)
    labels = torch.tensor([index[manifest.classes[s.label]] for s in samples], dtype=torch.long)
    probs = torch.tensor([[r[f"p_{c}"] for c in classes] for r in rows]).reshape(len(rows), len(classes))
    train = [index[manifest.classes[s.label]] for s in manifest.samples if split and s.split == "train"]
    metrics = {
        "models": [str(d) for d in dirs],
        "data": str(root),
        "split": split or "all",
        "tta": tta,
        **scored_metrics(probs, labels, classes, torch.tensor(train, dtype=torch.long) if train else None),
    }
    unreadable = len(manifest.samples if split is None else manifest.paths(split)) - len(samples)
    metrics["headline"] = {
        "name": f"{split} accuracy" if split else "accuracy",  # every image of the folder: no split to name
        "value": metrics["accuracy"],
        "ci95": metrics.get("accuracy_ci95"),
        "n": metrics["n"],
        "source": f"{root}" + (f"/{split}" if split else "") + f", scored by command=evaluate (tta={tta})",
        "baselines": {"majority class": metrics["majority_baseline"]} if "majority_baseline" in metrics else {},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    names = [s.path for s in samples]
    write_csv(prediction_rows(names, labels, probs, classes, split or "all"), out_dir / "predictions.csv")
    plot_confusion(metrics["confusion"], classes, out_dir / "confusion.png", f"accuracy {metrics['accuracy']:.3f}")
    page = _page(metrics, probs, labels, names, dirs, out_dir, unreadable)
    page["provenance"] = [
        f"weights of {Path(str(d)).name}: {provenance_line(card.get('weights'))}"
        for d, (_, card) in zip(dirs, members, strict=True)
    ]
    write_report(page, out_dir / "report.html")
    return metrics


def _page(metrics: dict, probs, labels, names: list[str], dirs: list, out_dir: Path, unreadable: int) -> dict:
    """report.html's data (eval/page.py's contract) for an evaluation; the gallery shows the image files."""
    classes = list(metrics["per_class"])
    warnings = headline_warnings(metrics["headline"])
    if unreadable:
        warnings.append(f"{unreadable} image(s) could not be decoded and are not scored")
    return {
        "title": f"Evaluation: {', '.join(Path(str(d)).name for d in dirs)}",
        "subtitle": f"{out_dir} · models: {', '.join(map(str, dirs))}",
        "warnings": warnings,
        "headline": metrics["headline"],
        "metrics": metrics,
        "gallery": gallery_section(probs, labels, classes, names) if len(names) else None,
        "calibration": calibration_section(probs, labels) if len(names) else None,
        "images": {"confusion matrix": str(out_dir / "confusion.png")},
    }

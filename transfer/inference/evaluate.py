"""Evaluate a model dir (or an ensemble, with multi-crop) on a labelled folder: metrics.json + confusion plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from transfer.data.scan import scan_image_folder
from transfer.errors import UserError
from transfer.eval.metrics import classification_metrics
from transfer.eval.plots import plot_confusion
from transfer.inference.ensemble import load_members
from transfer.inference.predict import predict_paths, write_csv


def evaluate_folder(
    model: str | Path | Sequence[str | Path], root: str | Path, out_dir: Path, tta: str = "center"
) -> dict:
    """Scan `root` (its test/ or val/ folder when it has split folders, else everything) and score the model(s)."""
    dirs = [model] if isinstance(model, str | Path) else list(model)
    _, classes = load_members(dirs)
    manifest = scan_image_folder(root)
    splits = {s.split for s in manifest.samples}
    split = "test" if "test" in splits else "val" if "val" in splits else None
    samples = [s for s in manifest.samples if split is None or s.split == split]
    unknown = sorted(set(manifest.classes) - set(classes))
    if unknown:
        raise UserError(f"data.root={root}: class folder(s) {unknown} are not classes of the model ({classes}).")
    index = {c: i for i, c in enumerate(classes)}
    rows = predict_paths(dirs, [Path(s.path) for s in samples], tta)
    labels = torch.tensor([index[manifest.classes[s.label]] for s in samples])
    probs = torch.tensor([[r[f"p_{c}"] for c in classes] for r in rows])
    metrics = {
        "models": [str(d) for d in dirs],
        "data": str(root),
        "split": split or "all",
        "tta": tta,
        **classification_metrics(probs, labels, classes),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_csv(rows, out_dir / "predictions.csv")
    plot_confusion(metrics["confusion"], classes, out_dir / "confusion.png", f"accuracy {metrics['accuracy']:.3f}")
    return metrics

"""Predict classes for image files with a model dir: file, class, probability."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from transfer.data.augment import build_eval_transform
from transfer.data.images import load_image
from transfer.data.pixels import image_to_tensor, resize_center, store_size
from transfer.data.scan import IMAGE_SUFFIXES, natural_key
from transfer.errors import UserError
from transfer.model_dir import load_model_dir


def list_images(path: str | Path) -> list[Path]:
    """One file, or every image file under a folder (hidden files and sidecars skipped), in a stable order."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"images={path}: no such file or folder.")
    files = [
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    if not files:
        raise UserError(f"images={path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in that folder.")
    return sorted(files, key=lambda p: natural_key(str(p)))


@torch.inference_mode()
def predict_files(model_dir: str | Path, images: str | Path, batch_size: int = 32) -> list[dict]:
    """Rows of {file, class, probability} (the top class), plus every class's probability; unreadable files say so."""
    classifier, card = load_model_dir(model_dir)
    pre = classifier.backbone.preprocessing
    tf = build_eval_transform(pre)
    side = store_size(pre)
    classes = card["classes"]
    rows: list[dict] = []
    files = list_images(images)
    for start in range(0, len(files), batch_size):
        batch, kept = [], []
        for f in files[start : start + batch_size]:
            try:
                img = load_image(f, channels=pre.channels, draft_size=(side, side))
            except Exception as e:  # noqa: BLE001  -- one bad file must not stop the others
                rows.append(
                    {"file": str(f), "class": "", "probability": float("nan"), "error": f"{type(e).__name__}: {e}"}
                )
                continue
            batch.append(tf(image_to_tensor(resize_center(img, side, pre.interpolation))))
            kept.append(f)
        if not batch:
            continue
        probs = torch.softmax(classifier(torch.stack(batch)), dim=1)  # B x num_classes
        for f, p in zip(kept, probs, strict=True):
            top = int(p.argmax())
            rows.append(
                {
                    "file": str(f),
                    "class": classes[top],
                    "probability": float(p[top]),
                    **{f"p_{c}": float(v) for c, v in zip(classes, p.tolist(), strict=True)},
                }
            )
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path

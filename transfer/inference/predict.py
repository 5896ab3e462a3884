"""Predict classes for image files with one model dir or an ensemble of them, optionally with multi-crop."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.transforms import v2

from transfer.backbones.base import Preprocessing
from transfer.data.images import load_image
from transfer.data.pixels import image_to_tensor, resize_center, store_size
from transfer.data.scan import IMAGE_SUFFIXES, natural_key, walk_image_files
from transfer.errors import UserError
from transfer.eval.scoring import write_rows_csv
from transfer.inference.ensemble import load_members
from transfer.inference.tta import MultiCrop
from transfer.model.calibration import Tempered, read_temperature
from transfer.model.model_dir import read_card

log = logging.getLogger(__name__)


def list_images(path: str | Path) -> list[Path]:
    """One file, or every image file under a folder (hidden files and sidecars skipped), in a stable order."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"images={path}: no such file or folder.")
    files, refused = walk_image_files(path)  # links followed; loops and broken links named, never a hang
    for r in refused:
        log.warning("images: skipped %s: %s", r.path, r.reason)
    if not files:
        raise UserError(f"images={path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in that folder.")
    return sorted(files, key=lambda p: natural_key(str(p)))


def unreadable_reason(path: Path, e: Exception) -> str:
    """Why `path` is not predicted, in words (Pillow's own message names an in-memory buffer, not the file); the row
    or the error line it goes into names the file."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return f"not an image (no image format Pillow reads; the {path.suffix or 'missing'} suffix is only a name)"
    if isinstance(e, Image.DecompressionBombError):
        return f"refused, a decompression bomb ({e})"
    if isinstance(e, OSError) and "truncat" in str(e).lower():
        return "truncated image (a half-written or cut-off file)"
    text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", path.name, str(e))
    return f"cannot decode ({type(e).__name__}: {text})"


def decode_pixels(files: Sequence[Path], pre: Preprocessing) -> tuple[torch.Tensor | None, list[str | None]]:
    """The readable files as uint8 stored squares (N x C x S x S, S = the eval resize size: what a fit keeps in RAM and
    what the feature cache reads), and an error (or None) per file."""
    side = store_size(pre)
    tensors, errors = [], []
    for f in files:
        try:
            img = load_image(f, channels=pre.channels, draft_size=(side, side))
        except Exception as e:  # noqa: BLE001  -- one unreadable file must not stop the others
            errors.append(unreadable_reason(Path(f), e))
            continue
        tensors.append(image_to_tensor(resize_center(img, side, pre.interpolation)))
        errors.append(None)
    return (torch.stack(tensors) if tensors else None), errors


def decode_images(files: Sequence[Path], pre: Preprocessing) -> tuple[torch.Tensor | None, list[str | None]]:
    """Normalised stored squares (N x C x S x S) for the readable files, and an error (or None) per file."""
    pixels, errors = decode_pixels(files, pre)
    if pixels is None:
        return None, errors
    norm = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))])
    return norm(pixels), errors


@torch.inference_mode()
def predict_files(
    model: str | Path | Sequence[str | Path],
    images: str | Path,
    tta: str = "center",
    batch_size: int = 32,
    calibrate: bool = False,
) -> list[dict]:
    """Rows of {file, class, probability, p_<class>...}: the mean over ensemble members and crops.

    An unreadable file gets a row with its error instead of stopping the run.
    """
    for d in [model] if isinstance(model, str | Path) else model:
        read_card(d)  # a wrong model dir is reported before the images are looked at
    return predict_paths(model, list_images(images), tta, batch_size, calibrate)


@torch.inference_mode()
def predict_paths(
    model: str | Path | Sequence[str | Path],
    files: Sequence[Path],
    tta: str = "center",
    batch_size: int = 32,
    calibrate: bool = False,
) -> list[dict]:
    """`predict_files` for an explicit list of files, in that order; `calibrate` divides each member's logits by the
    temperature saved in its model dir (members without one are used as they are)."""
    dirs = [model] if isinstance(model, str | Path) else list(model)
    members, classes = load_members(dirs)
    if calibrate:
        temps = [read_temperature(d) for d in dirs]
        members = [(Tempered(c, t) if t else c, card) for (c, card), t in zip(members, temps, strict=True)]
    rows: list[dict] = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        probs, errors = None, None
        for classifier, card in members:
            pre = Preprocessing.from_dict(card["preprocessing"])
            x, errors = decode_images(chunk, pre)
            if x is None:
                break
            p = MultiCrop(classifier, pre.size, tta)(x)  # B x num_classes
            probs = p if probs is None else probs + p
        ok = iter((probs / len(members)).tolist()) if probs is not None else iter(())
        for f, err in zip(chunk, errors or [], strict=True):
            if err:
                rows.append({"file": str(f), "class": "", "probability": float("nan"), "error": err})
                continue
            p = next(ok)
            top = max(range(len(classes)), key=p.__getitem__)
            rows.append(
                {
                    "file": str(f),
                    "class": classes[top],
                    "probability": p[top],
                    **{f"p_{c}": v for c, v in zip(classes, p, strict=True)},
                }
            )
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    """predictions.csv: one row per image, columns in first-seen order (eval.scoring.write_rows_csv)."""
    return write_rows_csv(rows, path)

"""`command=suggest`: which unlabelled images to label next, for a trained model dir.

The pool's images are decoded once to the model's stored squares (inference/predict.decode_pixels); the model scores
them through its eval transform (its probabilities: the uncertainty), and its own body gives their features through
the FeatureCache (the centre view, keyed by the body's weights: a frozen model's cache from its fit is read back).
The images already labelled count as covered: those of data.root when given, else those the fit scanned
(scan_report.json beside the model dir) when they are still on disk; else none, and the notes say so. Then
eval/suggest.suggest_to_label (margin x distance to the nearest labelled-or-chosen image; bench/suggest.py measured
it) picks `n`; suggest.csv and the contact sheet suggest.html go to the run dir.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from transfer.backbones.base import Preprocessing
from transfer.data.labelled import LabelledImages
from transfer.errors import UserError
from transfer.eval.contact_sheet import write_contact_sheet
from transfer.eval.scoring import write_rows_csv
from transfer.eval.suggest import Suggestions, suggest_to_label
from transfer.features.cache import FeatureCache
from transfer.features.config import FeatureConfig
from transfer.inference.predict import decode_pixels, list_images
from transfer.model.model_dir import load_model_dir
from transfer.studies.fit import classifier_probs

log = logging.getLogger("transfer")

CSV_NAME, PAGE_NAME = "suggest.csv", "suggest.html"


@dataclass
class SuggestRun:
    """What `suggest_next` chose and from what."""

    suggestions: Suggestions
    rows: list[dict]  # suggest.csv's rows, in the order to label
    pool: int  # unlabelled images scored
    labelled: int | None  # images counted as already labelled (None: none found)
    notes: list[str] = field(default_factory=list)  # how the ranking was made; files skipped
    csv: Path | None = None
    page: Path | None = None


def decode_files(files: list[Path], pre: Preprocessing, what: str) -> tuple[LabelledImages | None, list[str]]:
    """The readable files at the model's stored size (labels unused: -1), and one note per unreadable file."""
    pixels, errors = decode_pixels(files, pre)
    ok = [f for f, e in zip(files, errors, strict=True) if e is None]
    notes = [f"{what}: skipped {f}: {e}" for f, e in zip(files, errors, strict=True) if e is not None]
    if pixels is None:
        return None, notes
    return LabelledImages(pixels, torch.full((len(ok),), -1, dtype=torch.long), [], [str(f) for f in ok]), notes


def labelled_files(model_dir: Path, data_root: str | None) -> tuple[list[Path] | None, str]:
    """The images already labelled, and where they came from: data.root when given, else the files of the fit's
    scan_report.json (beside the model dir) that are still on disk; None (and why) when neither is there."""
    if data_root:
        return list_images(data_root), f"data.root={data_root}"
    report = model_dir.expanduser().resolve().parent / "scan_report.json"
    if not report.is_file():
        return None, (
            f"no training images found (no {report.name} beside the model dir): diversity counts only the suggestions "
            "themselves; pass data=folder data.root=<labelled folder> to count the labelled images as covered"
        )
    samples = json.loads(report.read_text(encoding="utf-8")).get("samples") or []
    files = [Path(s["path"]) for s in samples if Path(s["path"]).is_file()]
    if not files:
        return None, (
            f"the {len(samples)} training images {report} lists are no longer on disk: diversity counts only the "
            "suggestions themselves; pass data=folder data.root=<labelled folder>"
        )
    gone = f", {len(samples) - len(files)} listed there are gone" if len(files) < len(samples) else ""
    return files, f"the fit's training images, listed in {report}{gone}"


def suggest_next(
    model_dir: str | Path,
    images: str | Path,
    n: int,
    out_dir: Path,
    *,
    data_root: str | None = None,
    measure: str = "margin",
    diversity: float = 1.0,
    features: FeatureConfig | None = None,
    device: str | torch.device = "cpu",
) -> SuggestRun:
    """Rank the images under `images` (a folder, or one file) for labelling and write suggest.csv + suggest.html."""
    model_dir = Path(model_dir).expanduser()
    classifier, card = load_model_dir(model_dir)
    pre = Preprocessing.from_dict(card["preprocessing"])
    classes = list(card["classes"])
    root = Path(images).expanduser()
    pool, notes = decode_files(list_images(root), pre, "images")
    if pool is None:
        raise UserError(f"images={images}: none of its image files could be decoded ({notes[0].split(': ', 2)[-1]}).")
    cache = FeatureCache(classifier.backbone, replace(features or FeatureConfig(), stage=None), device)
    pool_digests = pool.digests()
    lab_feats, labelled, known = None, None, set()
    files, where = labelled_files(model_dir, data_root)
    lab, skipped = decode_files(files, pre, "labelled") if files is not None else (None, [])
    notes += skipped
    if lab is not None:
        lab_feats = cache.features(lab, ["center"], rank=0, world_size=1)[:, 0].numpy()  # M x D
        labelled, known = len(lab), set(lab.digests())
        where = f"already labelled: {labelled} images count as covered: {where}"
    keep = [i for i, d in enumerate(pool_digests) if d not in known]
    if not keep:
        raise UserError(f"images={images}: every image there is already labelled (the same pixels, {where}).")
    if len(keep) < len(pool):
        notes.append(f"{len(pool) - len(keep)} image(s) of images= are already labelled (the same pixels): left out")
        pool, pool_digests = pool.subset(keep), [pool_digests[i] for i in keep]
    notes.append(where)
    probs = classifier_probs(classifier, pre, pool, device)  # N x K, the eval transform
    feats = cache.features(pool, ["center"], pool_digests, rank=0, world_size=1)[:, 0].numpy()  # N x D
    chosen = suggest_to_label(
        probs.numpy(), feats, n, labelled_features=lab_feats, measure=measure, diversity=diversity
    )
    names = [_relative(p, root) for p in pool.names]
    rows = chosen.rows(names)
    for row in rows:
        p = probs[row["index"]]
        row |= {"predicted": classes[int(p.argmax())], "p_predicted": float(p.max())}
        row |= {k: float(f"{v:.6g}") for k, v in row.items() if isinstance(v, float)}  # as label_issues.csv
    how = f"{measure} uncertainty x distance ** {diversity:g} to the nearest labelled-or-chosen image (k-center greedy)"
    notes.insert(0, f"{len(pool)} unlabelled images scored by {model_dir} ({card['backbone']}); ranked by {how}")
    if n > len(pool):
        notes.append(f"n={n}: the folder holds {len(pool)} usable images, all are listed")
    run = SuggestRun(chosen, rows, len(pool), labelled, notes)
    return write_suggestions(run, pool, f"{root} · model {model_dir}", Path(out_dir))


def write_suggestions(run: SuggestRun, pool: LabelledImages, subtitle: str, out_dir: Path) -> SuggestRun:
    """suggest.csv (the rows, in the order to label) and the contact sheet suggest.html (thumbnails of the files)."""
    run.csv = write_rows_csv(run.rows, out_dir / CSV_NAME)
    items = [{**r, "image": pool.names[r["index"]]} for r in run.rows]
    data = {
        "title": f"Label these {len(run.rows)} images next",
        "subtitle": subtitle,
        "notes": run.notes,
        "items": items,
    }
    run.page = write_contact_sheet(data, out_dir / PAGE_NAME)
    return run


def _relative(path: str, root: Path) -> str:
    """A pool image's name as the user knows it: relative to the images= folder."""
    try:
        return str(Path(path).relative_to(root)) if root.is_dir() else Path(path).name
    except ValueError:
        return path

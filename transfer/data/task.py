"""Load the task's images once (at the backbone's store size) and say how each seed splits them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from transfer.backbones.base import Preprocessing
from transfer.data.config import DataConfig
from transfer.data.labelled import LabelledImages
from transfer.data.pixels import resize_pixels
from transfer.data.splits import Splitter, few_shot_split, split_counts, stratified_split
from transfer.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class TaskData:
    images: LabelledImages
    split: Splitter
    description: str
    eval_name: str  # what the held-out part is called in reports: "val" or "test"
    test_idx: list[int] | None = None  # a test/ folder beside val/: scored once, with the best model, at the end


def load_digits_task(classes: list[int], shots: int, pre: Preprocessing) -> TaskData:
    from transfer.data.digits import load_digits_images

    digits = load_digits_images(classes)
    images = LabelledImages(resize_pixels(digits.pixels, pre), digits.labels, digits.classes, digits.names)
    n = len(classes)
    return TaskData(
        images,
        lambda seed: few_shot_split(images.labels, shots, seed),
        f"digits {classes}: {shots} training images per class ({shots * n}), the other {len(images) - shots * n} "
        "for testing",
        "test",
    )


def load_folder_task(
    root: str,
    val_fraction: float,
    strict: bool,
    pre: Preprocessing,
    out_dir: Path,
    ram_budget_mb: float | None = None,
    split_seed: int | None = None,
) -> TaskData:
    """Scan `root` (each file decoded once, straight into the pixel store), write scan_report.json, print the report.

    Splits: root/train + root/val (or test) folders as given, else a seeded stratified split per study seed
    (or `split_seed` for all seeds) that keeps byte-identical files on one side.
    """
    from transfer.data.shared_scan import scan_once

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest, pixels, scanned = scan_once(root, pre, strict, out_dir, ram_budget_mb)  # DDP: rank 0 alone scans
    if scanned:
        print(manifest.report())
        print(f"  scan report: {out_dir / 'scan_report.json'}")
    labels = torch.tensor([s.label for s in manifest.samples], dtype=torch.long)
    images = LabelledImages(pixels, labels, manifest.classes, [s.path for s in manifest.samples])
    splits = [s.split for s in manifest.samples]
    if any(splits):
        held_out = "val" if "val" in splits else "test" if "test" in splits else None
        if held_out is None:
            raise UserError(
                f"data.root={root}: has train/ but no val/ or test/ folder; add one, or put the class "
                "folders directly under data.root for a seeded split."
            )
        train_idx = [i for i, s in enumerate(splits) if s == "train"]
        eval_idx = [i for i, s in enumerate(splits) if s == held_out]
        test_idx = [i for i, s in enumerate(splits) if s == "test"] if held_out == "val" else []
        return TaskData(
            images,
            lambda seed: (train_idx, eval_idx),
            f"{manifest.summary()}; {len(train_idx)} train / {len(eval_idx)} {held_out}"
            + (f" / {len(test_idx)} test" if test_idx else "")
            + " (folders)",
            held_out,
            test_idx or None,
        )
    digests = [s.digest for s in manifest.samples]

    def split(seed: int) -> tuple[list[int], list[int]]:
        return stratified_split(
            labels, val_fraction, seed if split_seed is None else split_seed, digests, manifest.classes
        )

    train_idx, val_idx = split(0 if split_seed is None else split_seed)
    print(
        f"  seeded stratified split ({val_fraction:.0%} val; seed 0 shown): "
        f"train {_counts_text(split_counts(labels, train_idx, manifest.classes))}; "
        f"val {_counts_text(split_counts(labels, val_idx, manifest.classes))}"
    )
    return TaskData(
        images,
        split,
        f"{manifest.summary()}; seeded stratified split, {val_fraction:.0%} for validation",
        "val",
    )


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{c} {n}" for c, n in counts.items())


def load_task(data: DataConfig, pre: Preprocessing, out_dir: Path) -> TaskData:
    """The task's images at the backbone's store size, and how each seed splits them."""
    if data.kind == "digits":
        return load_digits_task(list(data.classes or []), int(data.shots or 10), pre)
    return load_folder_task(
        str(Path(str(data.root)).expanduser()),
        float(data.val_fraction),
        bool(data.strict),
        pre,
        out_dir,
        ram_budget_mb=data.ram_budget_mb,
    )

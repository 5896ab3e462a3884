"""The weather photos (../shared/data/weather) through the real ImageNet MobileNet v2 (../shared/data/backbones), as
cached features: the set-up bench/label_issues.py and bench/suggest.py share.

Goes through the library as a user would: the plugin module registers the backbone, `create_backbone` loads the
weights, `scan_and_decode` reads the folder once, `FeatureCache` extracts each image's centre and mirrored views once
to `cache_dir` (a rerun reads them back in a second).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PLUGIN = "mnv2_coral"
BACKBONE = "mobilenet_v2_coral"
VIEWS = ["center", "center_flip"]  # features.views=flip: what the frozen regime caches when augment.mirror is on


@dataclass
class Split:
    features: torch.Tensor  # N x K x D (K views)
    labels: torch.Tensor  # N
    names: list[str]  # paths relative to the data root
    pixels: torch.Tensor  # N x C x S x S uint8, for thumbnails


@dataclass
class WeatherFeatures:
    train: Split
    test: Split
    classes: list[str]
    seconds: float
    describe: str


def missing_reason(data: Path, backbones: Path) -> str | None:
    """Why the real material cannot be used, or None when it is all there."""
    for path in (data / "train", data / "test", backbones / f"{PLUGIN}.py", backbones / f"{BACKBONE}.safetensors"):
        if not path.exists():
            return f"{path} is missing (real photos and weights live in ../shared/data beside the checkout)"
    return None


def load_weather(
    data: Path = SHARED / "weather",
    backbones: Path = SHARED / "backbones",
    cache_dir: Path = Path("/tmp/transfer-bench-features"),
    per_class: int | None = None,
) -> WeatherFeatures:
    """Train and test features of the weather photos; `per_class` keeps the first N images of each class per split
    (tiny mode for smoke tests)."""
    sys.path.insert(0, str(backbones))
    importlib.import_module(PLUGIN)  # registers mobilenet_v2_coral, as TRANSFER_PLUGINS=mnv2_coral would

    from transfer.backbones.factory import create_backbone
    from transfer.data.labelled import LabelledImages
    from transfer.data.pixels import scan_and_decode
    from transfer.features import FeatureCache, FeatureConfig

    start = time.perf_counter()
    backbone = create_backbone(BACKBONE, weights=str(backbones / f"{BACKBONE}.safetensors"))
    manifest, pixels = scan_and_decode(data, backbone.preprocessing, workers=1)
    cache = FeatureCache(backbone, FeatureConfig(cache_dir=str(cache_dir), progress=False), "cpu")
    splits = {}
    for split in ("train", "test"):
        index, seen = [], {c: 0 for c in range(len(manifest.classes))}
        for i, s in enumerate(manifest.samples):
            if s.split == split and (per_class is None or seen[s.label] < per_class):
                index.append(i)
                seen[s.label] += 1
        labels = torch.tensor([manifest.samples[i].label for i in index])
        names = [os.path.relpath(manifest.samples[i].path, data) for i in index]
        images = LabelledImages(pixels[index], labels, list(manifest.classes), names)
        splits[split] = Split(cache.features(images, VIEWS), labels, names, images.pixels)
    seconds = time.perf_counter() - start
    n_tr, n_te = len(splits["train"].labels), len(splits["test"].labels)
    describe = (
        f"weather: {n_tr} train / {n_te} test photos, {len(manifest.classes)} classes ({', '.join(manifest.classes)}); "
        f"ImageNet MobileNet v2 ({BACKBONE}) features, {len(VIEWS)} views x {splits['train'].features.shape[2]}"
    )
    return WeatherFeatures(splits["train"], splits["test"], list(manifest.classes), seconds, describe)

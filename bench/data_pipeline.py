"""Decode-once pixel store vs torchvision ImageFolder + PIL, same augmentation, workers and batch size, one run.

    python bench/data_pipeline.py [--images 300] [--epochs 4] [--workers 2] [--batch-size 32] [--preset standard]

Writes its own JPEGs (800 x 600 "phone photos") to a temp dir. Ours: scan (every file fully decoded once,
JPEG draft mode, threads) straight into a uint8 store at 256 x 256, then the preset's tensor transforms in
persistent workers. Baseline: ImageFolder (PIL decode every epoch) with the same preset's transforms, the
geometric ones on PIL images. Epochs alternate between the two sides. Epoch 1 is reported apart (ours
includes the scan + decode); images/s is over epochs 2..N. Prints one human line and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from transfer.backbones.base import Preprocessing
from transfer.data.augment import build_train_transform, fit_pca_colour
from transfer.data.config import AugmentConfig
from transfer.data.datamodule import TransformDataset
from transfer.data.labelled import LabelledImages
from transfer.data.pixels import scan_and_decode

PRE = Preprocessing(input_size=(3, 224, 224), crop_pct=0.875)  # ImageNet protocol: store 256, crop 224


def load_preset(name: str):
    """conf/augment/<name>.yaml merged on the dataclass (as Hydra does): the AugmentConfig fit receives."""
    from omegaconf import OmegaConf

    path = Path(__file__).resolve().parents[1] / "conf" / "augment" / f"{name}.yaml"
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AugmentConfig), OmegaConf.load(path)))


def write_photos(root: Path, n: int, size: tuple[int, int] = (800, 600), classes: int = 3) -> None:
    """n JPEGs with smooth colour fields + texture (compresses like a photo, ~50-90 KB at quality 90)."""
    w, h = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        c = i % classes
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        fx, fy, phase = rng.uniform(0.005, 0.03, 2).tolist() + [rng.uniform(0, 6.28)]
        base = np.stack([np.sin(xx * fx + phase + k) * np.cos(yy * fy + k * c) for k in range(3)], -1)
        img = 120 + 80 * base + rng.normal(0, 10, (h, w, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"photo_{i:04d}.jpg", quality=90)


def pil_transform(preset: str, pca) -> object:
    """The same preset's transforms after decoding each PIL image to a uint8 tensor (the crop and flip are the
    package's one crop-and-flip, which works on tensors)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), *build_train_transform(PRE, load_preset(preset), pca).transforms])


def time_epoch(loader: DataLoader) -> float:
    t = time.perf_counter()
    for x, _ in loader:
        assert x.shape[1:] == (3, 224, 224)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--preset", default="standard")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # workers do the work on both sides; no intra-op threads fighting them
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        root = Path(tmp)
        write_photos(root, args.images)
        loader_kw = dict(
            batch_size=args.batch_size, shuffle=True, num_workers=args.workers, persistent_workers=args.workers > 0
        )

        t0 = time.perf_counter()
        manifest, pixels = scan_and_decode(root, PRE)
        decode_s = time.perf_counter() - t0
        labels = torch.tensor([s.label for s in manifest.samples])
        images = LabelledImages(pixels, labels, manifest.classes, manifest.paths())
        pca = fit_pca_colour(pixels)
        ours_dl = DataLoader(
            TransformDataset(images, build_train_transform(PRE, load_preset(args.preset), pca)), **loader_kw
        )
        from torchvision.datasets import ImageFolder

        base_dl = DataLoader(ImageFolder(str(root), transform=pil_transform(args.preset, pca)), **loader_kw)
        ours, base = [], []
        for _ in range(args.epochs):  # interleaved: a neighbour's load shifts both sides alike
            ours.append(time_epoch(ours_dl))
            base.append(time_epoch(base_dl))
        ours[0] += decode_s

    n, later = args.images, slice(1, None)
    ours_ips = n * (args.epochs - 1) / sum(ours[later])
    base_ips = n * (args.epochs - 1) / sum(base[later])
    result = {
        "bench": "data_pipeline",
        "images": n,
        "image_size": "800x600 jpeg",
        "preset": args.preset,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "ours_images_per_s": round(ours_ips, 1),
        "baseline_images_per_s": round(base_ips, 1),
        "speedup_ratio_after_first_epoch": round(ours_ips / base_ips, 2),
        "ours_decode_once_s": round(decode_s, 2),
        "ours_first_epoch_s": round(ours[0], 2),
        "baseline_first_epoch_s": round(base[0], 2),
        "first_epoch_overhead_ratio": round(ours[0] / base[0], 2),
        "ours_epoch_s": [round(x, 2) for x in ours],
        "baseline_epoch_s": [round(x, 2) for x in base],
        "store_mb": round(pixels.numel() / 2**20, 1),
    }
    print(
        f"data pipeline, {n} JPEGs 800x600, preset {args.preset}, {args.workers} workers, batch {args.batch_size}: "
        f"ours {ours_ips:.0f} img/s vs ImageFolder+PIL {base_ips:.0f} img/s after epoch 1 "
        f"({ours_ips / base_ips:.1f}x); epoch 1: ours {ours[0]:.2f}s (decode once {decode_s:.2f}s) "
        f"vs {base[0]:.2f}s"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

"""Frozen-regime training with the feature cache vs the naive way (the frozen backbone runs every epoch).

Same machine, same data, same head, same loop, measured side by side in one run:
  - end to end: naive 30 epochs vs (extract to the disk cache + 30 epochs on cached features)   goal >= 20x
  - per warm epoch: a naive epoch vs an epoch on features served from the cache (a rerun)      goal >= 100x
  - extraction throughput (transform + digest + forward + atomic write) vs the raw backbone forward on
    in-memory, already-normalised tensors                                                        goal >= 0.8x
Backbone: timm resnet18 with random weights at a reduced input size (2 shared cores); images: generated.

    python bench/feature_cache.py [--images 200] [--size 112] [--epochs 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace

import torch
from torch import nn

from transfer.backbones.factory import create_backbone
from transfer.data.augment import build_eval_transform
from transfer.data.labelled import LabelledImages
from transfer.data.pixels import store_size
from transfer.features import FeatureCache, FeatureConfig
from transfer.training.regimes import Regime, apply_regime


def generated_images(n: int, side: int, classes: int = 4, seed: int = 0) -> LabelledImages:
    """Smooth random colour fields (upsampled noise) with a class-dependent tint: cheap, deterministic."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    low = torch.rand(n, 3, 8, 8, generator=gen)
    low[torch.arange(n), labels % 3] += 0.5
    pixels = nn.functional.interpolate(low, size=(side, side), mode="bilinear", align_corners=False)
    pixels = (pixels / pixels.amax() * 255).round().to(torch.uint8)
    return LabelledImages(pixels, labels, [f"class{i}" for i in range(classes)], [f"gen{i}" for i in range(n)])


def train_head(batches, head: nn.Module, epochs: int, n_threads: int) -> list[float]:
    """The same loop for both ways; `batches()` yields (features, labels) per epoch. Returns seconds per epoch.

    Naive runs at the body's thread count throughout (switching per batch would cost it extra); the cached way
    trains on one thread, as `fit_head_on_features` does (a tiny matmul: more threads only spin).
    """
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    times = []
    with threads(n_threads):
        for _ in range(epochs):
            t = time.perf_counter()
            for feats, y in batches():
                loss = nn.functional.cross_entropy(head(feats), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            times.append(time.perf_counter() - t)
    return times


@contextlib.contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--size", type=int, default=112, help="backbone input side (resnet18 pools globally)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    torch.manual_seed(0)
    body_threads = torch.get_num_threads()
    backbone = create_backbone("resnet18")
    backbone.preprocessing = replace(backbone.preprocessing, input_size=(3, args.size, args.size))
    apply_regime(backbone, Regime("frozen", frozen_stages=None, body_lr_factor=0.0))
    backbone.eval()
    images = generated_images(args.images, store_size(backbone.preprocessing))
    tf = build_eval_transform(backbone.preprocessing)
    order = torch.randperm(args.images, generator=torch.Generator().manual_seed(0))

    def batches_of(x: torch.Tensor):
        for lo in range(0, len(order), args.batch):
            idx = order[lo : lo + args.batch]
            yield x[idx], images.labels[idx]

    # raw backbone forward on in-memory, already-transformed tensors (the extraction ceiling)
    x_all = tf(images.pixels)  # N x 3 x S x S, normalised
    with torch.inference_mode():
        backbone(x_all[: args.batch])  # warm-up (allocator, oneDNN kernels)

    def raw_forward_ips() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for lo in range(0, args.images, 64):
                backbone(x_all[lo : lo + 64])
        return args.images / (time.perf_counter() - t)

    # naive: the frozen backbone runs on every batch of every epoch (eval transform per batch, as a loader would)
    def naive_batches():
        for xb, y in batches_of(images.pixels):
            with torch.no_grad():
                feats = backbone(tf(xb))  # B x 512
            yield feats, y  # outside no_grad: the consumer's head step needs autograd

    torch.manual_seed(1)
    naive_epochs = train_head(naive_batches, nn.Linear(backbone.num_features, 4), args.epochs, body_threads)

    with tempfile.TemporaryDirectory() as cache_dir:
        cfg = FeatureConfig(cache_dir=cache_dir, views=1, progress=False)
        t = time.perf_counter()
        cache = FeatureCache(backbone, cfg)  # includes hashing the weights
        feats = cache.features(images)[:, 0]  # cold: extracted and written
        cold_setup = time.perf_counter() - t
        torch.manual_seed(1)
        cached_epochs = train_head(lambda: batches_of(feats), nn.Linear(backbone.num_features, 4), args.epochs, 1)
        cached_total = cold_setup + sum(cached_epochs)

        t = time.perf_counter()  # a rerun: a new process would do exactly this
        rerun = FeatureCache(backbone, cfg)
        warm_feats = rerun.features(images)[:, 0]
        warm_setup = time.perf_counter() - t
        assert rerun.last.extracted == 0 and torch.equal(warm_feats, feats)
        torch.manual_seed(1)
        warm_epochs = train_head(lambda: batches_of(warm_feats), nn.Linear(backbone.num_features, 4), args.epochs, 1)
    # throughput: three rounds of (raw forward, extraction into a fresh cache dir) back to back; the median
    # of the per-round ratios (the CPU is shared: adjacent measurements see the same load)
    rounds = []
    for _ in range(3):
        raw_ips = raw_forward_ips()
        with tempfile.TemporaryDirectory() as cache_dir:
            fresh = FeatureCache(backbone, FeatureConfig(cache_dir=cache_dir, views=1, progress=False))
            t = time.perf_counter()
            fresh.features(images)  # pixel digests + transform + forward + atomic shard write
            rounds.append((raw_ips, args.images / (time.perf_counter() - t)))
    raw_ips = statistics.median(r for r, _ in rounds)
    extract_ips = statistics.median(e for _, e in rounds)
    extract_ratio = statistics.median(e / r for r, e in rounds)
    naive_total = sum(naive_epochs)
    result = {
        "bench": "feature_cache",
        "backbone": f"resnet18 (random weights) at {args.size}px",
        "images": args.images,
        "epochs": args.epochs,
        "naive_seconds": round(naive_total, 3),
        "cached_seconds": round(cached_total, 3),
        "cached_extract_seconds": round(cold_setup, 3),
        "rerun_setup_seconds": round(warm_setup, 4),
        "naive_epoch_seconds": round(statistics.median(naive_epochs), 4),
        "warm_epoch_seconds": round(statistics.median(warm_epochs), 5),
        # from the median epoch of each way (robust to load spikes on a shared CPU) and the measured extraction
        "end_to_end_speedup": round(
            args.epochs
            * statistics.median(naive_epochs)
            / (cold_setup + args.epochs * statistics.median(cached_epochs)),
            1,
        ),
        "end_to_end_speedup_totals": round(naive_total / cached_total, 1),  # the raw totals, load spikes included
        "rerun_end_to_end_speedup": round(naive_total / (warm_setup + sum(warm_epochs)), 1),
        "warm_epoch_speedup": round(statistics.median(naive_epochs) / statistics.median(warm_epochs), 1),
        "raw_forward_images_per_second": round(raw_ips, 1),
        "extract_images_per_second": round(extract_ips, 1),
        "extract_vs_raw_forward": round(extract_ratio, 2),
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"feature cache: {args.images} images, {args.epochs} epochs, resnet18@{args.size}px: end to end "
        f"{result['end_to_end_speedup']}x (totals {result['end_to_end_speedup_totals']}x) faster than the naive "
        f"frozen loop ({naive_total:.1f}s vs {cached_total:.1f}s), per warm epoch {result['warm_epoch_speedup']}x; "
        "extraction "
        f"{extract_ips:.0f} images/s = {extract_ratio:.2f}x the raw forward ({raw_ips:.0f} images/s)",
        file=sys.stderr,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Full fine-tune throughput: this toolkit's path vs a synthetic ceiling and a plain ImageFolder + PIL loop.

    python bench/gpu_finetune.py [--model resnet18 --size 224 --images 400 --batch 64 --steps 20 --device auto]
    python bench/gpu_finetune.py --tiny      # resnet18 at 64 px, 64 images, 2 steps: a CPU smoke run

Same model, precision (auto: bf16-mixed / 16-mixed on GPUs, 32-true on CPU), memory format and batch for:
  (a) ceiling: random tensors already on the device, forward + backward + AdamW step;
  (b) toolkit: `transfer.training.fit.fit_classifier`, regime full, on in-memory `LabelledImages` (decode-once pixels,
      tensor augmentation, Lightning), `--steps` optimizer steps, Lightning's setup included;
  (c) baseline: torchvision ImageFolder + PIL decode every batch + RandomResizedCrop/flip, on JPEGs it writes.
Prints one JSON line: images/s of each, ratios b/a and b/c, inference images/s, and the fraction of the GPU's
peak FLOP/s that (b) reaches (peak from a small table by GPU name; null on CPU or an unknown GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's transfer, not an installed one

from transfer.backbones.base import Preprocessing
from transfer.backbones.factory import create_backbone
from transfer.data.config import AugmentConfig
from transfer.data.labelled import LabelledImages
from transfer.data.pixels import store_size
from transfer.model.classifier import Classifier
from transfer.model.heads import create_head
from transfer.training.device_defaults import resolve_num_workers, resolve_precision, use_channels_last
from transfer.training.regimes import Regime

CLASSES = 4
# Dense bf16/fp16 tensor-core peak FLOP/s by GPU name fragment (vendor data sheets, no sparsity)
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}
PEAK_FLOPS |= {"V100": 125e12, "T4": 65e12, "4090": 165e12, "3090": 71e12}


def autocast(device: str, precision: str):
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device, dtype=dtype) if dtype else contextlib.nullcontext()


def build(model: str, size: int) -> Classifier:
    backbone = create_backbone(model, pretrained=False)
    pre = backbone.preprocessing
    backbone.preprocessing = Preprocessing((3, size, size), pre.mean, pre.std, pre.interpolation, pre.crop_pct)
    return Classifier(backbone, create_head("softmax", backbone.num_features, CLASSES))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_loop(model: nn.Module, batches, steps: int, device: str, precision: str, channels_last: bool) -> float:
    """images/s over `steps` steps after one warm-up step; `batches` yields (x, y) on the CPU or the device."""
    model.train().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device, enabled=precision == "16-mixed")
    it = iter(batches)
    seen, start = 0, None
    for step in range(steps + 1):
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if step == 0:
            sync(device)
            start = time.perf_counter()
        else:
            seen += len(y)
    sync(device)
    return seen / (time.perf_counter() - start)


def synthetic_batches(batch: int, size: int, device: str):
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    while True:
        yield x, y


def write_jpegs(root: Path, n: int, side: int) -> LabelledImages:
    """n smooth colour-field JPEGs (side x side) in class folders; returns the same images decoded, in memory."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    pixels, labels = [], []
    for i in range(n):
        c = i % CLASSES
        f = rng.uniform(0.01, 0.08, 2)
        base = np.stack([np.sin(xx * f[0] + k + c) * np.cos(yy * f[1] + k) for k in range(3)], -1)
        arr = np.clip(120 + 80 * base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / f"c{c}" / f"{i:04d}.jpg", quality=90)
        pixels.append(torch.from_numpy(arr).permute(2, 0, 1))
        labels.append(c)
    names = [f"img{i}" for i in range(n)]
    return LabelledImages(torch.stack(pixels), torch.tensor(labels), [f"c{c}" for c in range(CLASSES)], names)


def imagefolder_batches(root: Path, pre: Preprocessing, batch: int, workers: int):
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(pre.size, scale=(0.35, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(pre.mean, pre.std),
        ]
    )
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root), tf), batch_size=batch, shuffle=True, num_workers=workers, drop_last=True
    )
    while True:
        yield from loader


def toolkit_images_per_s(args, data: LabelledImages, device: str, precision: str, workers: int) -> float:
    from transfer.data.config import DataConfig
    from transfer.training.config import TrainConfig, TrainerConfig
    from transfer.training.fit import RunOptions, fit_classifier

    model = build(args.model, args.size)
    epochs = math.ceil(args.steps * args.batch / len(data))
    trainer = TrainerConfig(
        max_epochs=epochs, max_steps=args.steps, accelerator=device, devices=1, precision=precision, monitor="none"
    )
    standard = AugmentConfig(mirror=True, crop="resized", crop_scale=[0.35, 1.0], color_jitter=0.2)  # the preset
    cfg = TrainConfig(
        data=DataConfig(kind="digits", batch_size=args.batch, num_workers=workers), trainer=trainer, augment=standard
    )
    full = Regime("full", frozen_stages=0)
    out = fit_classifier(model.backbone, model.head, full, data, None, cfg, quiet=True, run=RunOptions(False))
    return args.steps * args.batch / out.seconds


@torch.no_grad()
def inference_images_per_s(model: nn.Module, args, device: str, precision: str, channels_last: bool) -> float:
    model.eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, precision):
        model(x)
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            model(x)
        sync(device)
    return args.steps * args.batch / (time.perf_counter() - start)


def train_flops_per_image(model: nn.Module, size: int) -> float:
    """Forward FLOPs of one image x 3 (backward ~ twice the forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.cpu().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, size, size))
    return 3.0 * counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workers", default="auto")
    p.add_argument("--tiny", action="store_true", help="resnet18 at 64 px, 64 images, batch 16, 2 steps")
    args = p.parse_args()
    if args.tiny:
        args.model, args.size, args.images, args.batch, args.steps = "resnet18", 64, 64, 16, 2
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    precision = resolve_precision("auto", device, bf16)
    channels_last = use_channels_last(args.model, device)
    workers = resolve_num_workers(args.workers)
    torch.manual_seed(0)

    model = build(args.model, args.size)
    pre = model.backbone.preprocessing
    flops = train_flops_per_image(model, args.size)
    ceiling = train_loop(model, synthetic_batches(args.batch, args.size, device), args.steps, device, precision,
                         channels_last)  # fmt: skip
    inference = inference_images_per_s(model, args, device, precision, channels_last)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_finetune_") as tmp:
        data = write_jpegs(Path(tmp), args.images, store_size(pre))
        toolkit = toolkit_images_per_s(args, data, device, precision, workers)
        baseline = train_loop(build(args.model, args.size), imagefolder_batches(Path(tmp), pre, args.batch, workers),
                              args.steps, device, precision, channels_last)  # fmt: skip
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    peak = next((v for k, v in PEAK_FLOPS.items() if gpu and k in gpu), None)
    result = {
        "bench": "gpu_finetune", "model": args.model, "size": args.size, "images": args.images,
        "batch": args.batch, "steps": args.steps, "device": device, "gpu": gpu, "precision": precision,
        "channels_last": channels_last, "workers": workers,
        "ceiling_images_per_s": round(ceiling, 2), "toolkit_images_per_s": round(toolkit, 2),
        "imagefolder_images_per_s": round(baseline, 2), "toolkit_vs_ceiling": round(toolkit / ceiling, 3),
        "toolkit_vs_imagefolder": round(toolkit / baseline, 3), "inference_images_per_s": round(inference, 2),
        "train_gflops_per_image": round(flops / 1e9, 3),
        "toolkit_fraction_of_peak_flops": round(toolkit * flops / peak, 4) if peak else None,
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()

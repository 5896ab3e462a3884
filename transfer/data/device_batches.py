"""Small data on a GPU: the decoded uint8 pixel store moves to the device once and whole batches are augmented there.

A few hundred images at store size are tens of MB; DataLoader workers that crop and flip them one at a time on the
CPU are then the bottleneck of a GPU fine-tune. Here every epoch is: a permutation, per-sample crop boxes and flips
drawn from one seeded CPU generator (a few numbers), and torchvision's own functional ops applied on the device.
Nothing is decoded or copied from the CPU after the first epoch. The same code runs on the CPU (tests).

Crops and flips are per sample (a batched v2 transform would give the whole batch one crop). Colour and geometric
augmentations (colour jitter, hue, PCA noise, rotation, shear) stay with the per-image CPU pipeline: the plan says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as TF

from transfer.backbones.base import Preprocessing
from transfer.data.config import AugmentConfig
from transfer.data.labelled import LabelledImages
from transfer.data.samplers import epoch_seed

log = logging.getLogger(__name__)

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect range, as build_train_transform uses it
DEVICE_FRACTION = 0.25  # of free device memory the pixel store may take: the model, activations, cuDNN need the rest
CPU_ONLY_KEYS = ("rotation", "shear", "color_jitter", "hue", "pca_noise")


@dataclass(frozen=True)
class BatchPlan:
    on_device: bool
    description: str  # one line for the log and the summary: which path and why


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KB', 62_914_560 -> '60 MB', 3.1e9 -> '3.1 GB' (binary units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if n >= 10 or unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def plan_device_batches(
    pixel_bytes: int,
    device: str,
    free_bytes: int | None,
    augment: AugmentConfig,
    world_size: int = 1,
    fraction: float = DEVICE_FRACTION,
) -> BatchPlan:
    """Whether the pixel store goes to `device` (a pure decision: the facts are arguments, testable without a GPU).

    Yes on one CUDA device when the store takes at most `fraction` of its free memory and every augmentation in use
    has a batched form; otherwise the CPU worker pipeline, with the reason."""
    size = format_bytes(pixel_bytes)
    if not device.startswith("cuda"):
        return BatchPlan(False, f"CPU workers: training on {device}")
    if world_size > 1:
        return BatchPlan(False, f"CPU workers: {world_size} ranks shard the images through DistributedSampler")
    cpu_only = [k for k in CPU_ONLY_KEYS if getattr(augment, k)]
    if cpu_only:
        return BatchPlan(False, f"CPU workers: augment.{cpu_only[0]} runs per image on the CPU")
    if free_bytes is None or pixel_bytes > fraction * free_bytes:
        free = "unknown" if free_bytes is None else format_bytes(free_bytes)
        return BatchPlan(False, f"CPU workers: pixels {size} do not fit in {fraction:.0%} of {free} free on {device}")
    return BatchPlan(True, f"pixels on {device} ({size}), augmented there")


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (None elsewhere or when the driver cannot say)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    try:
        return int(torch.cuda.mem_get_info(device)[0])
    except RuntimeError:
        return None


def sample_resized_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], gen: torch.Generator, ratio=RATIO, tries: int = 10
) -> torch.Tensor:
    """n x 4 (top, left, h, w) boxes drawn as torchvision's RandomResizedCrop.get_params draws them (area in
    `scale`, log-uniform aspect in `ratio`, `tries` attempts, then the centre crop), vectorised on one generator."""
    area = (
        height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, tries, generator=gen, dtype=torch.float64))
    )
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(
        n, tries, generator=gen, dtype=torch.float64
    )
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(area * aspect)).long()
    h = torch.round(torch.sqrt(area / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(ok.any(1), ok.long().argmax(1), -1)
    fw, fh = _fallback_size(height, width, ratio)
    rows = torch.arange(n)
    bw = torch.where(first >= 0, w[rows, first.clamp_min(0)], fw)
    bh = torch.where(first >= 0, h[rows, first.clamp_min(0)], fh)
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    top = torch.where(first >= 0, (u[:, 0] * (height - bh + 1)).long(), (height - fh) // 2)
    left = torch.where(first >= 0, (u[:, 1] * (width - bw + 1)).long(), (width - fw) // 2)
    return torch.stack([top, left, bh, bw], 1)


def _fallback_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        return width, int(round(width / min(ratio)))
    if in_ratio > max(ratio):
        return int(round(height * max(ratio))), height
    return width, height


def augment_batch(
    pixels: torch.Tensor, pre: Preprocessing, augment: AugmentConfig, gen: torch.Generator
) -> torch.Tensor:
    """B x C x S x S uint8 (on any device) -> B x C x H x W float, normalised: per-sample crop and flip, the same
    order and ops as build_train_transform (crop and flip on uint8, then scale to [0, 1], then normalise)."""
    b, _, height, width = pixels.shape
    size = list(pre.size)
    if augment.crop == "resized":
        boxes = sample_resized_boxes(b, height, width, tuple(augment.crop_scale), gen).tolist()
        crops = [
            TF.resized_crop(img, t, lf, h, w, size, antialias=True)
            for img, (t, lf, h, w) in zip(pixels, boxes, strict=True)
        ]
        x = torch.stack(crops)  # B x C x H x W
    elif augment.crop == "random":
        u = torch.rand(b, 2, generator=gen, dtype=torch.float64)
        tops = (u[:, 0] * (height - size[0] + 1)).long().tolist()
        lefts = (u[:, 1] * (width - size[1] + 1)).long().tolist()
        x = torch.stack(
            [img[:, t : t + size[0], lf : lf + size[1]] for img, t, lf in zip(pixels, tops, lefts, strict=True)]
        )
    else:
        x = TF.center_crop(pixels, size)  # B x C x H x W
    if augment.mirror:
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device).view(b, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    x = TF.to_dtype(x, torch.float32, scale=True)
    return TF.normalize(x, mean=list(pre.mean), std=list(pre.std))


class DeviceBatches:
    """A sized iterable of (x, y) training batches from a pixel store held on `device`: a drop-in for Lightning's
    train dataloader (one `iter` per epoch; seeded, so two runs with one seed see the same batches). `set_epoch(e)`
    restarts the draws from (seed, e), so epoch e is the same batches in a run resumed from a checkpoint."""

    def __init__(
        self,
        images: LabelledImages,
        pre: Preprocessing,
        augment: AugmentConfig,
        batch_size: int,
        device: torch.device | str,
        seed: int = 0,
        shuffle: bool = True,
        channels_last: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.pixels = images.pixels.to(self.device)  # N x C x S x S uint8: the one copy to the device
        self.labels = images.labels.to(self.device)
        self.pre, self.augment, self.batch_size = pre, augment, batch_size
        self.shuffle, self.channels_last = shuffle, channels_last
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed)  # CPU: boxes and flips are a few numbers per image
        self.description = f"pixels on {self.device} ({format_bytes(self.pixels.nbytes)}), augmented there"

    def set_epoch(self, epoch: int) -> None:
        self.gen.manual_seed(epoch_seed(self.seed, epoch))

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.gen) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size].to(self.device)
            x = augment_batch(self.pixels[idx], self.pre, self.augment, self.gen)  # B x C x H x W
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


def device_train_batches(
    images: LabelledImages,
    pre: Preprocessing,
    augment: AugmentConfig,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
    world_size: int = 1,
    channels_last: bool = False,
) -> tuple[DeviceBatches | None, str]:
    """DeviceBatches when the plan says the store fits on `device`, else None (use the DataLoader); and the one-line
    description of the path taken, also logged."""
    plan = plan_device_batches(int(images.pixels.nbytes), str(device), free_device_memory(device), augment, world_size)
    log.info("training batches: %s", plan.description)
    if not plan.on_device:
        return None, plan.description
    batches = DeviceBatches(images, pre, augment, batch_size, device, seed, channels_last=channels_last)
    return batches, batches.description

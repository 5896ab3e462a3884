"""Small data: the decoded uint8 pixel store stays where training runs (moved to the GPU once, or in RAM on the CPU)
and whole batches are augmented there.

A few hundred images at store size are tens of MB; a DataLoader that crops and flips them one at a time (a Python
call, a random-state swap and a collate per image) is then the bottleneck of a fine-tune: on the digits study it was
a quarter of the CPU time. Here every epoch is: a permutation, per-sample crop boxes and flips drawn from one seeded
generator (a few numbers), and torchvision's own functional ops on the batch. Nothing is decoded or copied after the
first epoch. The permutation is EpochShuffle's (the same (seed, epoch) draw), so a run without augmentation trains on
exactly the batches the per-image loader would give.

Crops and flips are per sample (a batched v2 transform would give the whole batch one crop). Colour and geometric
augmentations (colour jitter, hue, PCA noise, rotation, shear) stay with the per-image pipeline: the plan says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as TF

from transfer.backbones.base import Preprocessing
from transfer.data.augment import crop_and_flip
from transfer.data.config import AugmentConfig
from transfer.data.labelled import LabelledImages
from transfer.data.samplers import epoch_seed

log = logging.getLogger(__name__)

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
    """Whether training reads whole augmented batches from the pixel store on `device` (a pure decision: the facts
    are arguments, testable without a GPU).

    Yes on one process when every augmentation in use has a batched form, and on a CUDA device when the store takes
    at most `fraction` of its free memory; otherwise the per-image DataLoader pipeline, with the reason."""
    size = format_bytes(pixel_bytes)
    if world_size > 1:
        return BatchPlan(False, f"per-image loader: {world_size} ranks shard the images through DistributedSampler")
    cpu_only = [k for k in CPU_ONLY_KEYS if getattr(augment, k)]
    if cpu_only:
        return BatchPlan(False, f"per-image loader: augment.{cpu_only[0]} runs per image")
    if not device.startswith("cuda"):
        return BatchPlan(True, f"pixels in memory ({size}), augmented in batches")
    if free_bytes is None or pixel_bytes > fraction * free_bytes:
        free = "unknown" if free_bytes is None else format_bytes(free_bytes)
        return BatchPlan(
            False, f"per-image loader: pixels {size} do not fit in {fraction:.0%} of {free} free on {device}"
        )
    return BatchPlan(True, f"pixels on {device} ({size}), augmented in batches")


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (None elsewhere or when the driver cannot say)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    try:
        return int(torch.cuda.mem_get_info(device)[0])
    except RuntimeError:
        return None


def augment_batch(
    pixels: torch.Tensor, pre: Preprocessing, augment: AugmentConfig, gen: torch.Generator
) -> torch.Tensor:
    """B x C x S x S uint8 (on any device) -> B x C x H x W float, normalised: per-sample crop and flip (the same
    function the per-image pipeline crops with), then scaled to [0, 1] and normalised."""
    x = crop_and_flip(pixels, pre, augment, gen)  # B x C x H x W uint8
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
        where = f"on {self.device}" if self.device.type != "cpu" else "in memory"
        self.description = f"pixels {where} ({format_bytes(self.pixels.nbytes)}), augmented in batches"

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

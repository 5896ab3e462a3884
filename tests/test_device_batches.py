"""The pixel-store-on-device batch path, run on the CPU: shapes, values, seeds, per-sample crops, the fallback plan."""

from __future__ import annotations

import torch

from transfer.backbones.base import Preprocessing
from transfer.data.augment import AugmentConfig, build_train_transform, sample_resized_boxes
from transfer.data.device_batches import DeviceBatches, device_train_batches, format_bytes, plan_device_batches
from transfer.data.labelled import LabelledImages

PRE = Preprocessing(input_size=(3, 24, 24), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
RESIZED = AugmentConfig(mirror=True, crop="resized", crop_scale=(0.35, 1.0))
GB = 1024**3


def images(n: int = 10, size: int = 32, same: bool = False) -> LabelledImages:
    gen = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (1 if same else n, 3, size, size), generator=gen, dtype=torch.uint8)
    pixels = pixels.expand(n, -1, -1, -1).clone() if same else pixels
    return LabelledImages(pixels, torch.arange(n) % 3, ["a", "b", "c"], [f"i{i}" for i in range(n)])


def test_batches_have_the_input_shape_dtype_and_a_normalised_range():
    batches = DeviceBatches(images(10), PRE, RESIZED, batch_size=4, device="cpu")
    out = list(batches)
    assert len(batches) == len(out) == 3
    assert [tuple(x.shape) for x, _ in out] == [(4, 3, 24, 24), (4, 3, 24, 24), (2, 3, 24, 24)]
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in out)
    x = torch.cat([x for x, _ in out])
    lo = (0 - torch.tensor(PRE.mean)) / torch.tensor(PRE.std)
    hi = (1 - torch.tensor(PRE.mean)) / torch.tensor(PRE.std)
    assert (x >= lo.view(1, 3, 1, 1) - 1e-5).all() and (x <= hi.view(1, 3, 1, 1) + 1e-5).all()
    assert sorted(torch.cat([y for _, y in out]).tolist()) == sorted((torch.arange(10) % 3).tolist())


def test_one_seed_gives_the_same_epochs_another_seed_others():
    def epochs(seed: int) -> list[torch.Tensor]:
        batches = DeviceBatches(images(6), PRE, RESIZED, batch_size=6, device="cpu", seed=seed)
        return [next(iter(batches))[0] for _ in range(2)]

    a, b, c = epochs(0), epochs(0), epochs(1)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])  # epoch 2 draws new crops
    assert not torch.equal(a[0], c[0])


def test_crops_differ_per_sample_within_one_batch():
    """Eight copies of one image: a batched v2 transform would crop them alike; per-sample boxes do not."""
    x, _ = next(iter(DeviceBatches(images(8, same=True), PRE, RESIZED, 8, "cpu", shuffle=False)))
    distinct = {tuple(v.flatten()[:50].tolist()) for v in x}
    assert len(distinct) == 8


def test_without_augmentation_the_batches_equal_the_per_image_transform_exactly():
    data = images(5)
    none = AugmentConfig(mirror=False, crop="none")
    x, y = next(iter(DeviceBatches(data, PRE, none, 5, "cpu", shuffle=False)))
    per_image = torch.stack([build_train_transform(PRE, none)(p) for p in data.pixels])
    assert torch.equal(x, per_image) and torch.equal(y, data.labels)


def test_random_crops_stay_inside_the_store_and_channels_last_is_honoured():
    aug = AugmentConfig(mirror=False, crop="random")
    x, _ = next(iter(DeviceBatches(images(4), PRE, aug, 4, "cpu", channels_last=True)))
    assert x.shape == (4, 3, 24, 24) and x.is_contiguous(memory_format=torch.channels_last)


def test_resized_boxes_lie_in_the_image_with_areas_in_the_scale_range():
    boxes = sample_resized_boxes(500, 40, 30, (0.35, 1.0), torch.Generator().manual_seed(0))
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 30).all()
    area = (h * w).double() / (40 * 30)
    assert area.min() > 0.3 and area.max() <= 1.0  # rounding moves the edge of 0.35 a little
    assert len(set(map(tuple, boxes.tolist()))) > 400


def test_the_plan_takes_the_device_when_the_store_fits_and_says_why_not_otherwise():
    plan = plan_device_batches(60 * 1024**2, "cuda:0", 80 * GB, RESIZED)
    assert plan.on_device and plan.description == "pixels on cuda:0 (60 MB), augmented in batches"
    big = plan_device_batches(int(3.1 * GB), "cuda:0", 10 * GB, RESIZED)
    assert not big.on_device
    assert big.description == "per-image loader: pixels 3.1 GB do not fit in 25% of 10 GB free on cuda:0"
    assert plan_device_batches(int(3.1 * GB), "cuda:0", 20 * GB, RESIZED).on_device  # 25% of 20 GB is 5 GB
    assert plan_device_batches(10, "cpu", None, RESIZED).description == "pixels in memory (10 B), augmented in batches"
    assert "do not fit in 25% of unknown" in plan_device_batches(10, "cuda:0", None, RESIZED).description
    assert "2 ranks" in plan_device_batches(10, "cuda:0", 80 * GB, RESIZED, world_size=2).description
    jitter = plan_device_batches(10, "cpu", None, AugmentConfig(color_jitter=0.3))
    assert jitter.description == "per-image loader: augment.color_jitter runs per image"


def test_on_the_cpu_crops_and_flips_come_in_batches_and_colour_goes_per_image():
    batches, why = device_train_batches(images(4), PRE, RESIZED, 4, torch.device("cpu"))
    assert isinstance(batches, DeviceBatches) and why == "pixels in memory (12 KB), augmented in batches"
    none, why = device_train_batches(images(4), PRE, AugmentConfig(color_jitter=0.2), 4, torch.device("cpu"))
    assert none is None and why == "per-image loader: augment.color_jitter runs per image"


def test_without_augmentation_the_batches_are_the_per_image_loaders_batches():
    """The same (seed, epoch) permutation and the same eval transform: a fit on either path trains on the same
    tensors in the same order (the digits study's numbers did not move when its batches moved to this path)."""
    from transfer.data.augment import build_eval_transform
    from transfer.data.datamodule import ImageDataModule

    data, none = images(10), AugmentConfig()
    tf = build_eval_transform(PRE)
    batched = DeviceBatches(data, PRE, none, 4, "cpu", seed=3)
    loader = ImageDataModule(data, None, tf, tf, batch_size=4, seed=3).train_dataloader()
    for epoch in (0, 1):
        batched.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)
        for (xb, yb), (xl, yl) in zip(batched, loader, strict=True):
            assert torch.equal(yb, yl) and torch.allclose(xb, xl)


def test_byte_sizes_read_like_a_person_writes_them():
    assert [format_bytes(n) for n in (512, 1536, 60 * 1024**2, int(3.1 * GB))] == ["512 B", "1.5 KB", "60 MB", "3.1 GB"]

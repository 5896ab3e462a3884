"""The DataModule: in-RAM uint8 images -> augmented, normalised batches.

The pixels were decoded once (pixels.py); persistent workers augment tensors, so no epoch after the first
touches a JPEG. An error in a worker names the image it came from. The training order and each image's augmentation
are drawn from (seed, epoch) (samplers.EpochShuffle), so they depend neither on the number of workers nor on
whether the fit was resumed from a checkpoint; no loader draws from the global random stream. Under DDP the
validation loader Lightning runs is sharded without padding (samplers.py), so the synced val metrics count every
image once; `whole_val_dataloader` is the unsharded set for scoring after training. `train_batches` replaces the
training loader with any sized iterable of ready (x, y) batches (device_batches.py: the pixel store on the GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from transfer.data.labelled import LabelledImages
from transfer.data.samplers import EpochShuffle, UnpaddedDistributedSampler


class TransformDataset(Dataset):
    """Applies `transform` to stored uint8 pixels; errors name the image they came from."""

    def __init__(self, images: LabelledImages, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """`key`: an index, or (index, seed) from EpochShuffle: the transform then draws from that seed alone."""
        i, seed = key if isinstance(key, tuple) else (key, None)
        try:
            pixels = self.images.pixels[i]
            x = self.transform(pixels) if seed is None else _seeded(seed, self.transform, pixels)
            return x, self.images.labels[i]
        except Exception as e:
            raise RuntimeError(f"{self.images.names[i]}: {type(e).__name__}: {e} (while transforming it)") from e


def _seeded(seed: int, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn(x) with torch's CPU generator seeded `seed`; the caller's stream (dropout, mixup) is put back after."""
    state = torch.get_rng_state()
    torch.default_generator.manual_seed(seed)
    try:
        return fn(x)
    finally:
        torch.set_rng_state(state)


class ImageDataModule(pl.LightningDataModule):
    def __init__(
        self,
        train: LabelledImages,
        val: LabelledImages | None,
        train_transform: Callable,
        eval_transform: Callable,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool | None = None,
        train_batches: Iterable | None = None,
    ) -> None:
        super().__init__()
        self.train_images, self.val_images = train, val
        self.train_transform, self.eval_transform = train_transform, eval_transform
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory  # True only to feed a GPU
        self.train_batches = train_batches
        self.train_sampler = EpochShuffle(len(train), seed)

    def set_epoch(self, epoch: int) -> None:
        """Epoch `epoch`'s training order and augmentation come from (seed, epoch) (training/resumable.py)."""
        self.train_sampler.set_epoch(epoch)
        if hasattr(self.train_batches, "set_epoch"):
            self.train_batches.set_epoch(epoch)

    @property
    def num_classes(self) -> int:
        return len(self.train_images.classes)

    def _loader(self, ds: Dataset, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,  # workers (and their view of the pixel store) live across epochs
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(self.seed),  # worker seeds: never a draw from the global stream
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader | Iterable:
        if self.train_batches is not None:
            return self.train_batches
        return self._loader(TransformDataset(self.train_images, self.train_transform), self.train_sampler)

    def val_dataloader(self) -> DataLoader | list:
        """Lightning's in-loop validation: under DDP each rank a disjoint shard, no image twice."""
        if self.val_images is None or len(self.val_images) == 0:
            return []
        ds = TransformDataset(self.val_images, self.eval_transform)
        return self._loader(ds, _val_sampler(ds) if self._trainer_running() else None)

    def _trainer_running(self) -> bool:
        """Lightning is asking for its in-loop loader (a fit in progress), not a caller scoring after training."""
        from pytorch_lightning.trainer.states import TrainerStatus

        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.state.status == TrainerStatus.RUNNING

    def whole_val_dataloader(self) -> EvalBatches | list:
        """Every validation image on this rank, in order (scoring after training; never sharded)."""
        if self.val_images is None or len(self.val_images) == 0:
            return []
        return EvalBatches(self.val_images, self.eval_transform, self.batch_size)


class EvalBatches:
    """(x, y) batches of `images` in order, the deterministic eval transform applied to whole batches of stored
    pixels (one call per batch, not per image: torchvision's v2 transforms take a batch of images)."""

    def __init__(self, images: LabelledImages, transform: Callable, batch_size: int = 64) -> None:
        self.images, self.transform, self.batch_size = images, transform, max(1, int(batch_size))

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pixels, labels = self.images.pixels, self.images.labels
        for start in range(0, len(labels), self.batch_size):
            yield self.transform(pixels[start : start + self.batch_size]), labels[start : start + self.batch_size]


def _val_sampler(ds: Dataset) -> Sampler | None:
    """Unpadded shards inside a process group of several ranks; None (sequential) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return UnpaddedDistributedSampler(ds)
    return None

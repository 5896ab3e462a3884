"""The DataModule: in-RAM uint8 images -> augmented, normalised batches.

The pixels were decoded once (pixels.py); persistent workers augment tensors, so no epoch after the first
touches a JPEG. An error in a worker names the image it came from.
"""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from transfer.data.labelled import LabelledImages


class TransformDataset(Dataset):
    """Applies `transform` to stored uint8 pixels; errors name the image they came from."""

    def __init__(self, images: LabelledImages, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return self.transform(self.images.pixels[i]), self.images.labels[i]
        except Exception as e:
            raise RuntimeError(f"{self.images.names[i]}: {type(e).__name__}: {e} (while transforming it)") from e


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
    ) -> None:
        super().__init__()
        self.train_images, self.val_images = train, val
        self.train_transform, self.eval_transform = train_transform, eval_transform
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    @property
    def num_classes(self) -> int:
        return len(self.train_images.classes)

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,  # workers (and their view of the pixel store) live across epochs
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(TransformDataset(self.train_images, self.train_transform), shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_images is None or len(self.val_images) == 0:
            return []
        return self._loader(TransformDataset(self.val_images, self.eval_transform), shuffle=False)

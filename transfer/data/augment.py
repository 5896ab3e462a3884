"""Augmentation from the seeds as configuration: mirror, random (resized) crop, rotation/shear, colour shift, PCA noise.

All transforms run on uint8 tensors already at store size (see `pixels.py`), so no JPEG is decoded per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from transfer.backbones.base import Preprocessing


@dataclass(frozen=True)
class AugmentConfig:
    mirror: bool = True
    crop: str = "resized"  # none | random | resized
    crop_scale: tuple[float, float] = (0.35, 1.0)  # RandomResizedCrop area range
    rotation: float = 0.0  # degrees, +-
    shear: float = 0.0  # degrees, +-
    color_jitter: float = 0.0  # brightness/contrast/saturation strength
    pca_noise: float = 0.0  # AlexNet's lighting noise std (0.1 in Krizhevsky et al. 2012)


def fit_pca_colour(pixels: torch.Tensor, max_pixels: int = 200_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (3) and eigenvectors (3 x 3) of the RGB covariance of the user's own training pixels."""
    if pixels.shape[1] != 3:
        return torch.zeros(pixels.shape[1]), torch.eye(pixels.shape[1])
    flat = pixels.permute(1, 0, 2, 3).reshape(3, -1).float() / 255.0  # 3 x P
    if flat.shape[1] > max_pixels:
        idx = torch.randperm(flat.shape[1], generator=torch.Generator().manual_seed(seed))[:max_pixels]
        flat = flat[:, idx]
    cov = torch.cov(flat)
    eigval, eigvec = torch.linalg.eigh(cov)
    return eigval.clamp_min(0), eigvec


class PCALighting(torch.nn.Module):
    """Krizhevsky et al. 2012: add sum_i alpha_i * lambda_i * p_i to every pixel, alpha_i ~ N(0, std)."""

    def __init__(self, std: float, eigval: torch.Tensor, eigvec: torch.Tensor) -> None:
        super().__init__()
        self.std = std
        self.register_buffer("eigval", eigval.float())
        self.register_buffer("eigvec", eigvec.float())

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # C x H x W float in [0, 1]
        if self.std <= 0 or img.shape[0] != 3:
            return img
        alpha = torch.randn(3) * self.std
        shift = self.eigvec @ (alpha * self.eigval)  # 3
        return (img + shift.view(3, 1, 1)).clamp(0.0, 1.0)


def _normalise(pre: Preprocessing) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(pre.mean), std=list(pre.std))]


def build_eval_transform(pre: Preprocessing) -> v2.Compose:
    """Centre crop of the stored square (the timm/torchvision resize + centre-crop protocol) and normalisation."""
    return v2.Compose([v2.CenterCrop(list(pre.size)), *_normalise(pre)])


def build_train_transform(
    pre: Preprocessing, cfg: AugmentConfig, pca: tuple[torch.Tensor, torch.Tensor] | None = None
) -> v2.Compose:
    size = list(pre.size)
    steps: list = []
    if cfg.crop == "resized":
        steps.append(v2.RandomResizedCrop(size, scale=tuple(cfg.crop_scale), antialias=True))
    elif cfg.crop == "random":
        steps.append(v2.RandomCrop(size))
    elif cfg.crop == "none":
        steps.append(v2.CenterCrop(size))
    else:
        from transfer.errors import UserError

        raise UserError(f"augment.crop={cfg.crop!r}: choose one of none, random, resized.")
    if cfg.mirror:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.rotation or cfg.shear:
        steps.append(v2.RandomAffine(degrees=cfg.rotation, shear=cfg.shear or None))
    if cfg.color_jitter:
        j = cfg.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j if pre.channels == 3 else 0))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if cfg.pca_noise and pca is not None:
        steps.append(PCALighting(cfg.pca_noise, *pca))
    steps.append(v2.Normalize(mean=list(pre.mean), std=list(pre.std)))
    return v2.Compose(steps)

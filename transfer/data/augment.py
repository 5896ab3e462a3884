"""Augmentation from the seeds as configuration: mirror, random (resized) crop, rotation/shear, colour shift, PCA noise.

All transforms run on uint8 tensors already at store size (see `pixels.py`), so no JPEG is decoded per epoch.
Presets live in conf/augment/{none,light,standard,strong}.yaml; `augment_config` turns one into an AugmentConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torchvision.transforms import v2

from transfer.backbones.base import Preprocessing
from transfer.errors import UserError

CROPS = ("none", "random", "resized")


@dataclass(frozen=True)
class AugmentConfig:
    mirror: bool = True  # random horizontal flip (AlexNet's reflections)
    crop: str = "resized"  # none (centre) | random (AlexNet's translations) | resized (Inception's area + aspect)
    crop_scale: tuple[float, float] = (0.35, 1.0)  # RandomResizedCrop area range
    rotation: float = 0.0  # degrees, +-
    shear: float = 0.0  # degrees, +-
    color_jitter: float = 0.0  # brightness/contrast/saturation strength
    hue: float = 0.0  # hue shift, fraction of the colour wheel (<= 0.5)
    pca_noise: float = 0.0  # AlexNet's lighting noise std (0.1 in Krizhevsky et al. 2012), PCA of your pixels

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise UserError(f"augment.crop={self.crop!r}: choose one of {', '.join(CROPS)}.")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise UserError(f"augment.crop_scale={list(self.crop_scale)}: need 0 < low <= high <= 1, e.g. [0.35, 1.0].")
        for key in ("rotation", "shear", "color_jitter", "hue", "pca_noise"):
            if getattr(self, key) < 0:
                raise UserError(f"augment.{key}={getattr(self, key)}: must be >= 0 (it is a +- range or a std).")
        if self.hue > 0.5:
            raise UserError(f"augment.hue={self.hue}: must be <= 0.5.")


def augment_config(values: dict) -> AugmentConfig:
    """An AugmentConfig from a plain dict (a preset YAML, config overrides); unknown keys are a UserError."""
    known = {f.name for f in fields(AugmentConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"augment: unknown key(s) {unknown}; accepted: {', '.join(sorted(known))}.")
    values = dict(values)
    if "crop_scale" in values:
        values["crop_scale"] = tuple(float(v) for v in values["crop_scale"])
    return AugmentConfig(**values)


def preset_dir() -> Path:
    from transfer.config_source import conf_dir

    return Path(conf_dir()) / "augment"


def load_preset(name: str) -> AugmentConfig:
    """conf/augment/<name>.yaml as an AugmentConfig (none, light, standard, strong)."""
    import yaml

    path = preset_dir() / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in preset_dir().glob("*.yaml"))
        raise UserError(f"augment={name}: no such preset; choose one of {', '.join(options)}.")
    return augment_config(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def fit_pca_colour(pixels: torch.Tensor, max_pixels: int = 200_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (3, ascending) and eigenvectors (3 x 3, columns) of the RGB covariance of the user's own
    training pixels, in [0, 1] units: AlexNet's PCA colour augmentation, fitted on this data, not ImageNet's."""
    if pixels.shape[1] != 3:
        return torch.zeros(pixels.shape[1]), torch.eye(pixels.shape[1])
    n, _, h, w = pixels.shape
    gen = torch.Generator().manual_seed(seed)
    if n * h * w > max_pixels:  # sample pixels without materialising N x 3 x H x W floats
        pick = torch.randint(0, n * h * w, (max_pixels,), generator=gen)
        img, rest = pick // (h * w), pick % (h * w)
        flat = pixels[img, :, rest // w, rest % w].T.float() / 255.0  # 3 x P
    else:
        flat = pixels.permute(1, 0, 2, 3).reshape(3, -1).float() / 255.0  # 3 x P
    eigval, eigvec = torch.linalg.eigh(torch.cov(flat))
    return eigval.clamp_min(0), eigvec


class PCALighting(torch.nn.Module):
    """Krizhevsky et al. 2012: add sum_i alpha_i * lambda_i * p_i to every pixel, alpha_i ~ N(0, std)."""

    def __init__(self, std: float, eigval: torch.Tensor, eigvec: torch.Tensor) -> None:
        super().__init__()
        self.std = std
        self.register_buffer("eigval", eigval.float())
        self.register_buffer("eigvec", eigvec.float())

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # C x H x W float in [0, 1]
        if self.std <= 0 or img.shape[-3] != 3:
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
    """Geometry and colour on uint8 (cheap), then float, PCA lighting and normalisation; output C x H x W float."""
    size = list(pre.size)
    steps: list = []
    if cfg.crop == "resized":
        steps.append(v2.RandomResizedCrop(size, scale=tuple(cfg.crop_scale), antialias=True))
    elif cfg.crop == "random":
        steps.append(v2.RandomCrop(size))
    else:
        steps.append(v2.CenterCrop(size))
    if cfg.mirror:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.rotation or cfg.shear:
        fill = [round(m * 255) for m in pre.mean]  # corners become the mean colour: zero after normalisation
        steps.append(v2.RandomAffine(degrees=cfg.rotation, shear=cfg.shear or None, fill=fill))
    if cfg.color_jitter or cfg.hue:
        j, rgb = cfg.color_jitter, pre.channels == 3
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j if rgb else 0, hue=cfg.hue if rgb else 0))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if cfg.pca_noise and pca is not None:
        steps.append(PCALighting(cfg.pca_noise, *pca))
    steps.append(v2.Normalize(mean=list(pre.mean), std=list(pre.std)))
    return v2.Compose(steps)

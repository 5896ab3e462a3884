"""Augmentation from the seeds as configuration: mirror, random (resized) crop, rotation/shear, colour shift, PCA noise.

All transforms run on uint8 tensors already at store size (see `pixels.py`), so no JPEG is decoded per epoch.
The settings are `AugmentConfig` (data/config.py); presets live in conf/augment/{none,light,standard,strong}.yaml.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from transfer.backbones.base import Preprocessing
from transfer.data.config import AugmentConfig


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


_GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def jitter_matrix(b: float, c: float, s: float, channel_means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's adjust_brightness(b) -> adjust_contrast(c) -> adjust_saturation(s) as (3 x 3, 3), unclamped."""
    w = torch.tensor(_GREY)
    m = float(w @ channel_means)  # mean grey level: contrast blends towards it
    mat = c * b * (s * torch.eye(3) + (1 - s) * torch.outer(torch.ones(3), w))
    return mat, torch.full((3,), (1 - c) * b * m)


class ColourShift(torch.nn.Module):
    """Brightness, contrast, saturation (torchvision's factor ranges), a hue turn and PCA lighting as ONE 3 x 3
    colour matrix + offset per image: every one of these is linear in RGB, so composing them first costs one
    pass over the pixels instead of five (torchvision's ColorJitter on tensors is the slowest step otherwise).
    Hue turns in YIQ (linear) rather than HSV. Input and output: 3 x H x W float in [0, 1], clamped once."""

    def __init__(
        self,
        jitter: float = 0.0,
        hue: float = 0.0,
        pca_std: float = 0.0,
        pca: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.jitter, self.hue, self.pca_std = jitter, hue, pca_std if pca is not None else 0.0
        eigval, eigvec = pca if pca is not None else (torch.zeros(3), torch.eye(3))
        self.register_buffer("eigval", eigval.float())
        self.register_buffer("eigvec", eigvec.float())

    def matrix(self, channel_means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A random (3 x 3 matrix, 3 offset) for an image with these per-channel means."""
        j = self.jitter
        b, c, s = (1.0 + (torch.rand(3) * 2 - 1) * j).tolist() if j else (1.0, 1.0, 1.0)
        mat, offset = jitter_matrix(b, c, s, channel_means)
        if self.hue:
            theta = float((torch.rand(1) * 2 - 1) * self.hue) * 2 * torch.pi
            rot = torch.tensor(
                [
                    [1.0, 0, 0],
                    [0, torch.cos(torch.tensor(theta)), -torch.sin(torch.tensor(theta))],
                    [0, torch.sin(torch.tensor(theta)), torch.cos(torch.tensor(theta))],
                ]
            )
            turn = torch.linalg.inv(_YIQ) @ rot @ _YIQ
            mat, offset = turn @ mat, turn @ offset
        if self.pca_std:
            offset = offset + self.eigvec @ (torch.randn(3) * self.pca_std * self.eigval)
        return mat, offset

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # 3 x H x W float in [0, 1]
        if img.shape[-3] != 3:
            if not self.jitter:
                return img
            b, c = (1.0 + (torch.rand(2) * 2 - 1) * self.jitter).tolist()
            return (c * b * img + (1 - c) * b * img.mean()).clamp_(0.0, 1.0)
        mat, offset = self.matrix(img.mean(dim=(-2, -1)))
        out = torch.addmm(offset.view(3, 1), mat, img.reshape(3, -1))  # 3 x HW
        return out.clamp_(0.0, 1.0).view_as(img)


RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect range


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


def crop_and_flip(
    pixels: torch.Tensor, pre: Preprocessing, augment: AugmentConfig, gen: torch.Generator | None = None
) -> torch.Tensor:
    """B x C x S x S uint8 -> B x C x H x W uint8: `augment.crop` and `augment.mirror` per sample, drawn from `gen`
    (None: torch's global generator, which the per-image loader seeds per image). The one crop-and-flip of the
    package: the batched path (device_batches.py) and the per-image pipeline (`build_train_transform`) both call it."""
    b, _, height, width = pixels.shape
    size = list(pre.size)
    if augment.crop == "resized":
        boxes = sample_resized_boxes(b, height, width, tuple(augment.crop_scale), gen).tolist()
        x = torch.stack(
            [
                TF.resized_crop(img, t, lf, h, w, size, antialias=True)
                for img, (t, lf, h, w) in zip(pixels, boxes, strict=True)
            ]
        )
    elif augment.crop == "random":
        u = torch.rand(b, 2, generator=gen, dtype=torch.float64)
        tops = (u[:, 0] * (height - size[0] + 1)).long().tolist()
        lefts = (u[:, 1] * (width - size[1] + 1)).long().tolist()
        x = torch.stack(
            [img[:, t : t + size[0], lf : lf + size[1]] for img, t, lf in zip(pixels, tops, lefts, strict=True)]
        )
    else:
        x = TF.center_crop(pixels, size)
    if augment.mirror:
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device).view(b, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    return x


class CropFlip(torch.nn.Module):
    """`crop_and_flip` on one C x S x S image, drawing from torch's global generator (seeded per image)."""

    def __init__(self, pre: Preprocessing, augment: AugmentConfig) -> None:
        super().__init__()
        self.pre, self.augment = pre, augment

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return crop_and_flip(img.unsqueeze(0), self.pre, self.augment)[0]


def _normalise(pre: Preprocessing) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(pre.mean), std=list(pre.std))]


def build_eval_transform(pre: Preprocessing) -> v2.Compose:
    """Centre crop of the stored square (the timm/torchvision resize + centre-crop protocol) and normalisation."""
    return v2.Compose([v2.CenterCrop(list(pre.size)), *_normalise(pre)])


def build_train_transform(
    pre: Preprocessing, cfg: AugmentConfig, pca: tuple[torch.Tensor, torch.Tensor] | None = None
) -> v2.Compose:
    """Crop and mirror on uint8 (cheap), then float: one fused colour step, normalisation, rotation/shear.

    Output: C x H x W float, normalised."""
    steps: list = [CropFlip(pre, cfg), v2.ToDtype(torch.float32, scale=True)]
    pca_std = cfg.pca_noise if pca is not None else 0.0
    if cfg.color_jitter or cfg.hue or pca_std:
        steps.append(ColourShift(cfg.color_jitter, cfg.hue, pca_std, pca))
    steps.append(v2.Normalize(mean=list(pre.mean), std=list(pre.std)))
    if cfg.rotation or cfg.shear:  # after normalising: corners fill with 0, the mean colour, with no mask pass
        bilinear = v2.InterpolationMode.BILINEAR
        steps.append(v2.RandomAffine(degrees=cfg.rotation, shear=cfg.shear or None, interpolation=bilinear))
    return v2.Compose(steps)

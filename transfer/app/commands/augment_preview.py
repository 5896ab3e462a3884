"""`command=augment-preview`: a PNG grid of augmented training samples, to see what a preset does to your images.

Row r is one training image (spread over the classes); column 0 is the eval view (centre crop), the other
columns are independent draws of the training transform (PCA colour noise fitted on the training pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transfer.app.dispatch import output_dir
from transfer.app.early import check_data_early
from transfer.app.schema import Config
from transfer.backbones.base import Preprocessing
from transfer.backbones.config import BackboneConfig
from transfer.data.augment import build_eval_transform, build_train_transform, fit_pca_colour
from transfer.data.config import AugmentConfig, DataConfig
from transfer.data.labelled import LabelledImages

PAD = 2  # white pixels between tiles and around the grid


def grid_size(rows: int, cols: int, pre: Preprocessing) -> tuple[int, int]:
    """(width, height) in pixels of a preview grid: tiles of the backbone's input size, PAD around each."""
    h, w = pre.size
    return cols * w + (cols + 1) * PAD, rows * h + (rows + 1) * PAD


def _to_uint8(x: torch.Tensor, pre: Preprocessing) -> np.ndarray:
    """Undo normalisation: C x H x W float -> H x W x 3 uint8."""
    mean, std = torch.tensor(pre.mean).view(-1, 1, 1), torch.tensor(pre.std).view(-1, 1, 1)
    x = ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy()


def pick_rows(labels: torch.Tensor, rows: int) -> list[int]:
    """Up to `rows` image indices, round-robin over the classes so every class shows."""
    per_class = [(labels == c).nonzero().flatten().tolist() for c in labels.unique().tolist()]
    out: list[int] = []
    depth = 0
    while len(out) < rows and any(depth < len(ix) for ix in per_class):
        out += [ix[depth] for ix in per_class if depth < len(ix)]
        depth += 1
    return out[:rows]


def render_preview(
    images: LabelledImages, pre: Preprocessing, cfg: AugmentConfig, rows: int = 6, views: int = 7, seed: int = 0
) -> Image.Image:
    """The grid as a Pillow image: rows x (1 + views) tiles of the backbone's input size."""
    torch.manual_seed(seed)
    pca = fit_pca_colour(images.pixels, seed=seed) if cfg.pca_noise else None
    train_tf, eval_tf = build_train_transform(pre, cfg, pca), build_eval_transform(pre)
    chosen = pick_rows(images.labels, rows)
    width, height = grid_size(len(chosen), 1 + views, pre)
    canvas = np.full((height, width, 3), 255, np.uint8)
    h, w = pre.size
    for r, i in enumerate(chosen):
        tiles = [eval_tf(images.pixels[i])] + [train_tf(images.pixels[i]) for _ in range(views)]
        for c, tile in enumerate(tiles):
            top, left = PAD + r * (h + PAD), PAD + c * (w + PAD)
            canvas[top : top + h, left : left + w] = _to_uint8(tile, pre)
    return Image.fromarray(canvas)


def write_augment_preview(
    data: DataConfig,
    backbone: BackboneConfig,
    augment: AugmentConfig,
    out_dir: str | Path,
    seed: int = 0,
    rows: int = 6,
    views: int = 7,
) -> Path:
    """Load the task's training images as `fit` would, render the grid, write augment_preview.png; returns its path."""
    from transfer.backbones.factory import create_backbone
    from transfer.data.task import load_task

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # preprocessing only: the architecture's default (no weights needed, no network)
    pre = create_backbone(backbone.name, pretrained=False, **backbone.kwargs).preprocessing
    task = load_task(data, pre, out_dir)
    train_idx, _ = task.split(seed)
    grid = render_preview(task.images.subset(train_idx), pre, augment, rows, views, seed)
    path = out_dir / "augment_preview.png"
    grid.save(path)
    return path


def run(cfg: Config) -> None:
    """A PNG grid of augmented training samples (data, backbone and augment as for fit; preview.rows/views)."""
    check_data_early(cfg.data)
    path = write_augment_preview(
        cfg.data, cfg.backbone, cfg.augment, output_dir(), seed=cfg.seed, rows=cfg.preview.rows, views=cfg.preview.views
    )
    print(f"augment preview: {path}")

"""Run a frozen body over stored images and keep its features, one view at a time, for the cache."""

from __future__ import annotations

import time

import torch
from torch import nn

from transfer.backbones.base import Preprocessing
from transfer.data.config import AugmentConfig
from transfer.features.views import view_transform


@torch.inference_mode()
def extract_views(
    tap: nn.Module,
    pixels: torch.Tensor,
    view: str,
    pre: Preprocessing,
    augment: AugmentConfig,
    seeds: list[int],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "features",
) -> torch.Tensor:
    """N x D float32 features of view `view` of N stored uint8 images; fixed views are transformed per batch."""
    tf = view_transform(view, pre, augment)
    was_training = tap.training
    tap.eval().to(device)
    bar = _progress(len(pixels), desc) if progress else None
    out, start = [], time.perf_counter()
    for lo in range(0, len(pixels), batch_size):
        batch = pixels[lo : lo + batch_size]
        if view.startswith("random"):
            x = torch.stack([tf(img, s) for img, s in zip(batch, seeds[lo : lo + batch_size], strict=True)])
        else:
            x = tf(batch, 0)  # B x C x H x W
        out.append(tap(x.to(device, non_blocking=True)).float().cpu())  # B x D
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix_str(f"{(lo + len(batch)) / max(time.perf_counter() - start, 1e-9):.0f} images/s")
    if bar is not None:
        bar.close()
    tap.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit="img", leave=False, mininterval=0.5, disable=None
    )  # None: off when not a tty

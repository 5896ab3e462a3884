"""The bundled data set: scikit-learn's 1,797 handwritten digits (real 8x8 scans, 16 grey levels; no download)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from transfer.data.labelled import LabelledImages


def load_digits_images(classes: Sequence[int] = tuple(range(10))) -> LabelledImages:
    """The digits of `classes`, relabelled 0..len(classes)-1 in the given order; pixels N x 1 x 8 x 8 uint8."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = [i for i, t in enumerate(d.target) if int(t) in set(classes)]
    remap = {int(c): i for i, c in enumerate(classes)}
    images = torch.from_numpy(d.images[keep]).float() * (255.0 / 16.0)  # 16 grey levels -> 0..255
    pixels = images.round().to(torch.uint8).unsqueeze(1)  # N x 1 x 8 x 8
    labels = torch.tensor([remap[int(d.target[i])] for i in keep], dtype=torch.long)
    return LabelledImages(pixels, labels, [str(c) for c in classes], [f"digits[{i}]" for i in keep])

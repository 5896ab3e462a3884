"""The floor for bench/finetune_floor.py: what a user writes without this toolkit, on the same images and body.

- `train_plain`: torchvision `ImageFolder` + PIL + `DataLoader`, SGD with momentum 0.9 at a constant rate, no weight
  decay, BatchNorm in train mode, every training image, RandomResizedCrop (torchvision's default scale 0.08-1) +
  horizontal flip, the last epoch scored. `frozen_stages=k` freezes the body's first k stages (the toolkit's `partial`)
  and keeps their norm layers in eval mode (a frozen layer's statistics are frozen too).
- `probe_sklearn`: scikit-learn's LogisticRegressionCV on standardised frozen features of the centre view.

The body comes from the public library (`transfer.create_backbone`), so both sides start from the same weights.
Test images are keyed `class/stem`, the key the toolkit's predictions.csv gives them too (see `row_key`).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class Body:
    """How to build the body through the public library: `transfer.create_backbone(name, weights=..., **kwargs)`."""

    name: str
    weights: str | None
    kwargs: dict = field(default_factory=dict)

    def build(self) -> nn.Module:
        import transfer

        if self.weights:
            return transfer.create_backbone(self.name, weights=self.weights, **self.kwargs)
        return transfer.create_backbone(self.name, pretrained=False, **self.kwargs)


def row_key(path: str, label: str) -> str:
    """`class/stem`: the same image in ImageFolder (.../test/rain/rain4.jpg) and predictions.csv (or 'digits[17]')."""
    return f"{label}/{Path(path).stem}"


def transforms_for(pre, augment: bool) -> tuple[Callable, Callable]:
    """(train, eval) transforms from the body's preprocessing: eval = resize to size/crop_pct + centre crop."""
    size = list(pre.size)
    interp = {"bicubic": transforms.InterpolationMode.BICUBIC}.get(
        pre.interpolation, transforms.InterpolationMode.BILINEAR
    )
    norm = [transforms.ToTensor(), transforms.Normalize(list(pre.mean), list(pre.std))]
    resize = int(math.ceil(max(size) / pre.crop_pct))
    evaluate = transforms.Compose([transforms.Resize(resize, interpolation=interp), transforms.CenterCrop(size), *norm])
    if not augment:
        return evaluate, evaluate
    train = transforms.Compose(
        [transforms.RandomResizedCrop(size, interpolation=interp), transforms.RandomHorizontalFlip(), *norm]
    )
    return train, evaluate


def _folders(root: Path, pre, augment: bool) -> tuple[datasets.ImageFolder, datasets.ImageFolder]:
    mode = "L" if pre.channels == 1 else "RGB"

    def loader(path: str) -> Image.Image:
        with Image.open(path) as img:
            return img.convert(mode)

    train_tf, eval_tf = transforms_for(pre, augment)
    train = datasets.ImageFolder(str(root / "train"), transform=train_tf, loader=loader)
    test = datasets.ImageFolder(str(root / "test"), transform=eval_tf, loader=loader)
    if train.classes != test.classes:
        raise SystemExit(f"{root}: train/ and test/ have different classes ({train.classes} vs {test.classes})")
    return train, test


class Classifier(nn.Module):
    def __init__(self, body: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(int(body.num_features), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # N x classes (the body pools: N x num_features)


def _freeze_first(body: nn.Module, k: int) -> list[nn.Module]:
    """requires_grad off for the first k stages' parameters; returns the norm layers wholly inside them."""
    frozen = {p for stage in body.stages()[:k] for p in stage.params}
    for name, p in body.named_parameters():
        p.requires_grad_(name not in frozen)
    return [
        m
        for prefix, m in body.named_modules()
        if isinstance(m, NORMS)
        and any(True for _ in m.parameters(recurse=False))
        and all(f"{prefix}.{n}" in frozen for n, _ in m.named_parameters(recurse=False))
    ]


@torch.no_grad()
def _predict(model: nn.Module, data: datasets.ImageFolder, batch_size: int) -> np.ndarray:
    model.eval()
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
    return np.concatenate([model(x).argmax(1).numpy() for x, _ in loader])


def train_plain(
    root: Path,
    body: Body,
    *,
    epochs: int,
    seed: int,
    frozen_stages: int = 0,
    lr: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 32,
    augment: bool = True,
    norm: str = "train",
    label: str = "plain",
) -> dict:
    """The plain loop on root/train, scored on root/test at the last epoch: {key: correct}, accuracy, seconds.

    norm="train": BatchNorm in train mode (batch statistics, running ones updated) except in frozen stages;
    "eval": every norm layer on its pretrained statistics (the fix a user reaches for when train mode fails)."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    backbone = body.build()
    train, test = _folders(root, backbone.preprocessing, augment)
    model = Classifier(backbone, len(train.classes))
    keep_eval = _freeze_first(backbone, frozen_stages) if frozen_stages else []
    if norm == "eval":
        keep_eval = [m for m in backbone.modules() if isinstance(m, NORMS)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=0, generator=gen)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        for m in keep_eval:
            m.eval()
        total, seen, tick = 0.0, 0, time.perf_counter()
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(y), seen + len(y)
        took = time.perf_counter() - tick
        print(f"  {label} epoch {epoch + 1}/{epochs}: train loss {total / seen:.3f} ({took:.1f} s)", file=sys.stderr)
    pred = _predict(model, test, batch_size)
    truth = np.array(test.targets)
    keys = [row_key(p, test.classes[t]) for p, t in test.samples]
    correct = {k: bool(c) for k, c in zip(keys, pred == truth, strict=True)}
    return {"accuracy": float((pred == truth).mean()), "correct": correct, "seconds": time.perf_counter() - start}


@torch.no_grad()
def centre_features(root: Path, body: Body, batch_size: int = 64) -> dict:
    """Pooled features of the centre view of every train/ and test/ image (the body in eval mode), with labels."""
    backbone = body.build().eval()
    train, test = _folders(root, backbone.preprocessing, augment=False)
    out: dict = {"classes": train.classes}
    for split, data in (("train", train), ("test", test)):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
        out[split] = (
            torch.cat([backbone(x) for x, _ in loader]).double().numpy(),  # N x D
            np.array(data.targets),
            [row_key(p, data.classes[t]) for p, t in data.samples],
        )
    return out


def probe_sklearn(features: dict, seed: int) -> dict:
    """LogisticRegressionCV (lbfgs, default Cs, stratified 5-fold, seeded) on standardised centre-view features."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    x_tr, y_tr, _ = features["train"]
    x_te, y_te, keys = features["test"]
    folds = int(min(5, np.bincount(y_tr).min()))
    scaler = StandardScaler().fit(x_tr)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FutureWarnings about changing defaults; non-convergence shows in accuracy
        sk = LogisticRegressionCV(cv=cv, solver="lbfgs", scoring="accuracy", max_iter=5000).fit(
            scaler.transform(x_tr), y_tr
        )
    pred = sk.predict(scaler.transform(x_te))
    correct = {k: bool(c) for k, c in zip(keys, pred == y_te, strict=True)}
    return {
        "accuracy": float((pred == y_te).mean()),
        "correct": correct,
        "seconds": time.perf_counter() - start,
        "C": float(np.ravel(sk.C_)[0]),
    }

"""Many linear heads in one pass over cached features (as dinov2's linear evaluation does): every batch read once
updates a head per learning rate, so a sweep over `head.lr` costs about one head's training."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from transfer.features.dataset import SampledViews


@contextlib.contextmanager
def one_cpu_thread(device: torch.device | str = "cpu") -> Iterator[None]:
    """Train a tiny head on one thread: on a small matmul more CPU threads only spin (10x slower on a busy CPU)."""
    before = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class HeadGrid(nn.Module):
    """G independent linear heads D -> C evaluated together: N x D -> N x G x C."""

    def __init__(self, in_features: int, num_classes: int, count: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(in_features, num_classes) for _ in range(count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x) for h in self.heads], dim=1)  # N x G x C


def _train_head_grid(
    features: torch.Tensor,
    labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    lrs: list[float],
    epochs: int = 30,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> list[float]:
    """`train_head_grid` on the current threads."""
    torch.manual_seed(seed)
    num_classes = int(max(labels.max(), val_labels.max() if len(val_labels) else 0)) + 1
    grid = HeadGrid(int(features.shape[-1]), num_classes, len(lrs))
    opt = torch.optim.AdamW(
        [{"params": h.parameters(), "lr": lr} for h, lr in zip(grid.heads, lrs, strict=True)],
        weight_decay=weight_decay,
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    loader = torch.utils.data.DataLoader(
        SampledViews(features, labels),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    for _ in range(epochs):
        for x, y in loader:
            logits = grid(x)  # B x G x C
            # the sum of the heads' losses: each head's gradient is its own loss's gradient
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat_interleave(len(lrs)), reduction="sum")
            opt.zero_grad()
            (loss / len(y)).backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        preds = grid(val_features).argmax(-1)  # N_val x G
    return [float((preds[:, g] == val_labels).float().mean()) for g in range(len(lrs))]


def train_head_grid(
    features: torch.Tensor,
    labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    lrs: list[float],
    epochs: int = 30,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> list[float]:
    """Held-out accuracy of one linear head per learning rate, trained on the same batches (N x K x D views)."""
    with one_cpu_thread():
        return _train_head_grid(features, labels, val_features, val_labels, lrs, epochs, batch_size, weight_decay, seed)

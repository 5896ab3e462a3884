"""Many linear heads in one pass over cached features."""

from __future__ import annotations

import torch

from transfer.training.head_engine import HeadGrid, train_head_grid


def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    feats = torch.nn.functional.one_hot(labels, 8).float() * 3 + 0.3 * torch.randn(n, 8, generator=gen)
    return feats, labels


def test_each_head_learns_at_its_own_rate():
    x, y = _separable(60, 0)
    vx, vy = _separable(30, 1)
    accs = train_head_grid(x.unsqueeze(1), y, vx, vy, [0.0, 0.05], epochs=10, batch_size=16)
    assert len(accs) == 2
    assert accs[1] == 1.0  # the head with a real rate separates the classes
    assert accs[0] < 0.9  # the lr=0 head never moved from its random init


def test_grid_output_shape():
    assert HeadGrid(8, 3, 4)(torch.zeros(5, 8)).shape == (5, 4, 3)

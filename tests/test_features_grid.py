"""The one head engine: many heads in one pass over cached features, each at its own rate."""

from __future__ import annotations

import torch
from configs import train_config
from torch import nn

from transfer.training.head_sgd import fit_heads, train_head_grid


def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    feats = torch.nn.functional.one_hot(labels, 8).float() * 3 + 0.3 * torch.randn(n, 8, generator=gen)
    return feats, labels


def test_each_head_learns_at_its_own_rate():
    x, y = _separable(60, 0)
    vx, vy = _separable(30, 1)
    accs = train_head_grid(x.unsqueeze(1), y, vx, vy, [0.0, 0.05], train_config(epochs=10, batch_size=16))
    assert len(accs) == 2
    assert accs[1] == 1.0  # the head with a real rate separates the classes
    assert accs[0] < 0.9  # the lr=0 head never moved from its random init


def test_a_grid_of_heads_equals_each_head_trained_alone():
    """Summed losses, one optimiser: each head's update is its own (the grid is only a speed-up)."""
    x, y = _separable(40, 2)
    how = train_config(epochs=3, batch_size=8)
    torch.manual_seed(0)
    pair = [nn.Linear(8, 3), nn.Linear(8, 3)]
    alone = [nn.Linear(8, 3), nn.Linear(8, 3)]
    for a, p in zip(alone, pair, strict=True):
        a.load_state_dict(p.state_dict())
    fit_heads(pair, [0.01, 0.1], x, y, how)
    for head, lr in zip(alone, [0.01, 0.1], strict=True):
        fit_heads([head], [lr], x, y, how)
    for a, p in zip(alone, pair, strict=True):
        torch.testing.assert_close(a.weight, p.weight)


def test_history_has_one_row_per_epoch_and_biases_are_not_decayed():
    x, y = _separable(30, 3)
    head = nn.Linear(8, 3)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(1.0)
    fit = fit_heads([head], [0.0], x, y, train_config(epochs=4, batch_size=10, weight_decay=0.5), x, y)
    assert [r["epoch"] for r in fit.history] == [0, 1, 2, 3]
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(fit.history[0])


def test_weight_decay_skips_biases_and_norm_parameters():
    from transfer.training.optim import ParamGroup, decay_split

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = decay_split(ParamGroup("body", list(model.parameters()), 0.1), weight_decay=0.05)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight)}  # kernels and matrices only
    assert sum(len(g["params"]) for g in groups) == 6

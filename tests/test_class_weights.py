"""Class weights on an imbalanced set: the rule, the loss, and a 10:1 set where weighting lifts balanced accuracy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from configs import train_config
from torch import nn

from transfer.training.class_weights import class_weights, soft_cross_entropy
from transfer.training.head_sgd import fit_heads, predict_heads
from transfer.training.module import TransferModule
from transfer.training.regimes import Regime


def test_balanced_weights_and_the_auto_threshold():
    labels = torch.tensor([0] * 100 + [1] * 10)
    torch.testing.assert_close(class_weights(labels, 3, "balanced"), torch.tensor([0.55, 5.5, 0.0]))
    assert class_weights(labels, 2, "auto") is not None  # 10:1 > 3:1
    assert class_weights(torch.tensor([0] * 30 + [1] * 10), 2, "auto") is None  # 3:1 is left alone
    assert class_weights(labels, 2, "none") is None
    with pytest.raises(ValueError, match="auto, none, balanced"):
        class_weights(labels, 2, "inverse")


def test_soft_cross_entropy_equals_weighted_cross_entropy_on_one_hot_targets():
    torch.manual_seed(0)
    logits, y, w = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0]), torch.tensor([0.5, 2.0, 1.0])
    target = F.one_hot(y, 3).float()
    torch.testing.assert_close(soft_cross_entropy(logits, target, w), F.cross_entropy(logits, y, weight=w))
    torch.testing.assert_close(soft_cross_entropy(logits, target), F.cross_entropy(logits, y))


def test_module_loss_uses_the_class_weights():
    w = torch.tensor([1.0, 9.0])
    module = TransferModule(None, nn.Linear(4, 2), 2, Regime("frozen"), class_weights=w)
    logits, y = torch.randn(5, 2), torch.tensor([0, 0, 0, 1, 1])
    torch.testing.assert_close(module.loss(logits, y), F.cross_entropy(logits, y, weight=w))


def _imbalanced(n_major: int, n_minor: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.zeros(n_major, dtype=torch.long), torch.ones(n_minor, dtype=torch.long)])
    x = torch.randn(len(y), 8, generator=gen)
    x[:, 0] += y * 1.5  # overlapping classes: an unweighted head leans to the majority
    return x, y


def _balanced_accuracy(probs: torch.Tensor, y: torch.Tensor) -> float:
    pred = probs.argmax(1)
    return sum(float((pred[y == c] == c).float().mean()) for c in (0, 1)) / 2


def test_weights_lift_balanced_accuracy_on_a_10_to_1_set():
    x, y = _imbalanced(300, 30, 0)
    tx, ty = _imbalanced(500, 500, 1)
    scores = {}
    for mode in ("none", "balanced"):
        torch.manual_seed(0)
        head = nn.Linear(8, 2)
        how = train_config(epochs=40, batch_size=32, weight_decay=0.0, class_weights=mode)
        fit = fit_heads([head], [0.05], x, y, how)
        scores[mode] = _balanced_accuracy(predict_heads(fit.heads, tx)[0], ty)
    assert scores["balanced"] > scores["none"] + 0.05

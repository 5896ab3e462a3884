"""Regimes on a real timm backbone: what trains, what stays put, and at which learning rate."""

from __future__ import annotations

import pytest
import torch
from configs import train_config

from transfer.backbones import create_backbone
from transfer.model.heads import create_head
from transfer.training.module import TransferModule
from transfer.training.regimes import Regime, apply_regime, param_groups

FROZEN = Regime("frozen", frozen_stages=None, body_lr_factor=0.0)
PARTIAL = Regime("partial", frozen_stages=2, body_lr_factor=0.1)
FULL = Regime("full", frozen_stages=0, body_lr_factor=0.1)


@pytest.fixture(scope="module")
def resnet18_stage_sizes() -> list[int]:
    b = create_backbone("resnet18")
    named = dict(b.named_parameters())
    return [sum(named[p].numel() for p in s.params) for s in b.stages()]


def test_resnet18_stages_cover_every_parameter_once():
    b = create_backbone("resnet18")
    names = [p for s in b.stages() for p in s.params]
    assert len(names) == len(set(names)) == len(list(b.parameters()))
    assert [s.name for s in b.stages()] == ["conv1+bn1", "layer1", "layer2", "layer3", "layer4"]
    assert sum(p.numel() for p in b.parameters()) == 11_176_512  # resnet18 without its fc layer


@pytest.mark.parametrize("regime", [FROZEN, PARTIAL, FULL], ids=lambda r: r.name)
def test_trainable_parameter_counts(regime, resnet18_stage_sizes):
    b = create_backbone("resnet18")
    apply_regime(b, regime)
    expected = {"frozen": 0, "partial": sum(resnet18_stage_sizes[2:]), "full": sum(resnet18_stage_sizes)}[regime.name]
    assert b.num_trainable() == expected
    head = create_head("softmax", b.num_features, 3)
    assert sum(p.numel() for p in head.parameters()) == 512 * 3 + 3


def _bn_layers(b):
    return {n: m for n, m in b.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}


def test_frozen_batchnorm_stays_in_eval_mode_and_its_statistics_do_not_move():
    torch.manual_seed(0)
    b = create_backbone("resnet18")
    apply_regime(b, Regime("partial", frozen_stages=2, body_lr_factor=0.1, norm="train"))
    frozen_prefixes = ("model.conv1", "model.bn1", "model.layer1.")
    before = {n: m.running_mean.clone() for n, m in _bn_layers(b).items()}
    head = create_head("softmax", b.num_features, 3)
    module = TransferModule(b, head, 3, PARTIAL, train_config(lr=0.1))
    module.train()  # Lightning calls this every epoch; frozen norm layers must ignore it
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(4, 3, 64, 64) * 3 + 1, torch.tensor([0, 1, 2, 0])
    for _ in range(2):
        loss, _, _ = module.model_step((x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, m in _bn_layers(b).items():
        moved = not torch.equal(before[n], m.running_mean)
        if n.startswith(frozen_prefixes):
            assert not m.training and not moved, n
        else:  # norm="train": the trainable stages' BatchNorm does update
            assert m.training and moved, n


def test_default_norm_policy_keeps_every_batchnorm_on_pretrained_statistics():
    b = create_backbone("resnet18")
    apply_regime(b, FULL)  # norm="eval" by default: safe with batches of a few images
    b.train()
    assert all(not m.training for m in _bn_layers(b).values())
    before = {n: m.running_var.clone() for n, m in _bn_layers(b).items()}
    b(torch.randn(2, 3, 64, 64) * 5).sum().backward()
    assert all(torch.equal(before[n], m.running_var) for n, m in _bn_layers(b).items())


def test_learning_rates_per_group():
    b = create_backbone("resnet18")
    head = create_head("softmax", b.num_features, 3)
    apply_regime(b, FULL)
    groups = param_groups(b, head, FULL, lr=1e-2)
    lrs = {g.name: g.lr for g in groups}
    stages = [s.name for s in b.stages()]
    assert lrs["head"] == pytest.approx(1e-2)
    assert [lrs[s] for s in stages] == pytest.approx([1e-3] * 5)
    decayed = Regime("full", frozen_stages=0, body_lr_factor=0.1, stage_lr_decay=0.5)
    lrs = {g.name: g.lr for g in param_groups(b, head, decayed, lr=1e-2)}
    assert [lrs[s] for s in stages] == pytest.approx([1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)])
    apply_regime(b, FROZEN)
    assert [g.name for g in param_groups(b, head, FROZEN, lr=1e-2)] == ["head"]


def test_bad_frozen_stage_count_names_the_key():
    b = create_backbone("lenet5")
    with pytest.raises(Exception, match=r"regime.frozen_stages=9: backbone 'lenet5' has 4 stages"):
        apply_regime(b, Regime("partial", frozen_stages=9))

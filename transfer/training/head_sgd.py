"""Heads on cached features trained for epochs by the configured optimiser (head.solver=sgd, MLPs and custom heads;
the head engine, head_engine.py, calls this). Many heads train in one pass (as dinov2's linear evaluation does):
every batch read once updates a head per learning rate, so a sweep over `head.lr` costs about one head's training.
No body is in the loop and no Lightning Trainer: a tiny head on N x D features needs a plain loop on one CPU thread.

Given selection features (a split of the training images, never the reported `val`), each head keeps its best epoch
on them (`monitor`) and training stops once every head went `patience` epochs without a better one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from transfer.features.dataset import SampledViews
from transfer.training.class_weights import class_weights
from transfer.training.config import TrainConfig
from transfer.training.device_setup import cpu_threads
from transfer.training.optim import ParamGroup, build_optimizer, build_scheduler
from transfer.training.selection import BestEpoch


@dataclass
class HeadFit:
    heads: list[nn.Module]
    history: list[dict]  # per epoch: epoch, train/loss, train/acc (the first head), val/*, select/* when given
    val_probs: list[torch.Tensor] | None  # per head: N_val x C softmax
    best_epochs: list[int | None] = field(default_factory=list)  # per head: the epoch kept (None: the last one)


def fit_heads(
    heads: Sequence[nn.Module],
    lrs: Sequence[float],
    features: torch.Tensor,
    labels: torch.Tensor,
    how: TrainConfig,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    select_features: torch.Tensor | None = None,
    select_labels: torch.Tensor | None = None,
    epochs: int | None = None,
) -> HeadFit:
    """Train every head at its own rate on the same batches of `features` (N x K x D: one view per image per epoch,
    drawn afresh; or N x D) for `epochs` (default trainer.max_epochs) with `how`'s head, optimizer and scheduler
    settings. Each head's gradient is its own loss's gradient (the losses are summed). With `select_features`
    (N_sel x D) each head is returned at its best epoch on them (trainer.monitor / patience)."""
    if len(heads) != len(lrs):
        raise ValueError(f"{len(heads)} heads for {len(lrs)} learning rates")
    device = torch.device(device)
    select = None
    if select_features is not None and select_labels is not None and len(select_features) and how.trainer.selects:
        select = (select_features, select_labels)
    epochs = how.trainer.max_epochs if epochs is None else epochs
    with cpu_threads(1, device):  # a tiny head: more threads only wait on each other
        return _fit(list(heads), list(lrs), features, labels, how, epochs, val_features, val_labels, device, select)


def _split_metrics(probs: torch.Tensor, labels: torch.Tensor, prefix: str) -> dict:
    return {
        f"{prefix}/loss": float(nn.functional.nll_loss(probs.clamp_min(1e-12).log(), labels.cpu())),
        f"{prefix}/acc": float((probs.argmax(1) == labels.cpu()).float().mean()),
    }


def _fit(heads, lrs, features, labels, how, epochs, val_features, val_labels, device, select) -> HeadFit:
    torch.manual_seed(how.seed)
    for h in heads:
        h.to(device).train()
    opt = build_optimizer(
        [ParamGroup(f"head{i}", list(h.parameters()), lr) for i, (h, lr) in enumerate(zip(heads, lrs, strict=True))],
        how.optimizer,
        how.head.weight_decay,
    )
    sched = build_scheduler(opt, how.scheduler, epochs)
    loader = torch.utils.data.DataLoader(
        SampledViews(features, labels),
        batch_size=how.data.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(how.seed),
    )
    history: list[dict] = []
    has_val = val_features is not None and val_labels is not None and len(val_features) > 0
    trackers = [BestEpoch(h, how.trainer) for h in heads] if select is not None else []
    weight = None
    for epoch in range(epochs):
        seen, loss_sum, correct = 0, 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = [h(x) for h in heads]  # each B x C
            if epoch == 0 and seen == 0:
                weight = class_weights(labels, logits[0].shape[1], how.head.class_weights)
                weight = None if weight is None else weight.to(device)
            losses = [
                nn.functional.cross_entropy(lg, y, weight=weight, label_smoothing=how.head.label_smoothing)
                for lg in logits
            ]
            opt.zero_grad()
            torch.stack(losses).sum().backward()
            opt.step()
            seen += len(y)
            loss_sum += float(losses[0].detach()) * len(y)
            correct += int((logits[0].argmax(1) == y).sum())
        sched.step()
        row = {"epoch": epoch, "train/loss": loss_sum / max(seen, 1), "train/acc": correct / max(seen, 1)}
        if has_val:
            row |= _split_metrics(predict_heads(heads[:1], val_features, device)[0], val_labels, "val")
        if trackers:
            scores = [_split_metrics(p, select[1], "val") for p in predict_heads(heads, select[0], device)]
            for t, score in zip(trackers, scores, strict=True):
                t.update(epoch, score)  # the monitor names the selection split val/*, as Lightning's val loop does
            row |= {k.replace("val/", "select/"): v for k, v in scores[0].items()}
        history.append(row)
        if trackers and all(t.should_stop(epoch) for t in trackers):
            break
    for t in trackers:
        t.restore()
    for h in heads:
        h.eval()
    val_probs = predict_heads(heads, val_features, device) if has_val else None
    best = [t.best_epoch for t in trackers] if trackers else [None] * len(heads)
    return HeadFit([h.cpu() for h in heads], history, val_probs, best)


@torch.no_grad()
def predict_heads(heads: Sequence[nn.Module], features: torch.Tensor, device: torch.device | str = "cpu") -> list:
    """Softmax of every head on N x D features (eval mode; each N x C on the CPU)."""
    x = features.to(device)
    out = []
    for h in heads:
        was = h.training
        h.eval()
        out.append(torch.softmax(h(x).float(), dim=1).cpu())
        h.train(was)
    return out


def train_head_grid(
    features: torch.Tensor,
    labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    lrs: list[float],
    how: TrainConfig,
    num_classes: int | None = None,
) -> list[float]:
    """Held-out accuracy of one linear head per learning rate, all trained on the same batches (N x K x D views)."""
    torch.manual_seed(how.seed)
    if num_classes is None:
        num_classes = int(max(labels.max(), val_labels.max() if len(val_labels) else 0)) + 1
    heads = [nn.Linear(int(features.shape[-1]), num_classes) for _ in lrs]
    fit = fit_heads(heads, lrs, features, labels, how, val_features, val_labels)
    return [float((p.argmax(1) == val_labels).float().mean()) for p in fit.val_probs or []]

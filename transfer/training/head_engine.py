"""The one engine that trains a head on cached features: the frozen regime, LP-FT's starting head, stage probes, the
linear-probe baseline, auto's evidence and `command=features` all call `train_head`.

A linear head under `head.solver=lbfgs` (the default) is Kornblith et al.'s converged probe: L-BFGS logistic
regression with its L2 strength chosen by k-fold cross-validation over `head.l2_grid`, refit on every row (probe.py).
Any other head (an MLP, a user's), or `head.solver=sgd`, trains for epochs with the configured optimiser and keeps
its best epoch on the selection features when given (head_sgd.py). Either way the head is trained in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from transfer.training.config import TrainConfig
from transfer.training.head_sgd import fit_heads
from transfer.training.probe import ProbeResult, fit_linear_probe

SOLVERS = ("lbfgs", "sgd")


@dataclass
class HeadResult:
    head: nn.Module  # the head passed in, trained in place
    solver: str  # lbfgs | sgd: which engine trained it
    selected_by: str  # one line: "L2 0.01 by 5-fold CV; L-BFGS to gradient norm 3e-08" or the epoch rule
    best_epoch: int | None = None  # sgd with selection features: the epoch kept (0-based); None: the last / lbfgs
    probe: ProbeResult | None = None  # lbfgs: the L2 grid, folds, CV accuracy, notes, each image's fold
    history: list[dict] = field(default_factory=list)  # sgd: one row per epoch
    views: str = ""  # features.views=auto: which cached views the head trained on, and the evidence

    @property
    def notes(self) -> list[str]:
        return list(self.probe.notes) if self.probe else []


def uses_lbfgs(head: nn.Module, cfg: TrainConfig, solver: str | None = None) -> bool:
    """The converged L-BFGS probe trains heads that are one linear layer, unless the solver is sgd."""
    return (solver or cfg.head.solver) == "lbfgs" and isinstance(head, nn.Linear)


def train_head(
    head: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    *,
    select: tuple[torch.Tensor, torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    epochs: int | None = None,
    solver: str | None = None,
    groups: Sequence | None = None,
    class_names: Sequence[str] | None = None,
) -> HeadResult:
    """Train `head` on N x K x D (K cached views per image) or N x D `features`.

    `select` (N_sel x D centre features, labels) chooses the epoch of an epoch-trained head; the converged probe
    needs no epoch and trains on those rows too (when the features have one view). `solver` overrides head.solver
    (the linear-probe baseline and stage probes are the L-BFGS probe by definition). With `features.views=auto` and
    more than one cached view, the converged probe's cross-validated accuracy on the centre view alone and on every
    view decides which rows the head trains on (ties: the centre alone)."""
    views, chosen = "", None
    if str(cfg.features.views) == "auto" and features.dim() == 3 and features.shape[1] > 1:
        classes = len(class_names) if class_names else int(labels.max()) + 1
        features, chosen, views = _choose_views(features, labels, classes, cfg, device, class_names, groups)
    if uses_lbfgs(head, cfg, solver):
        if chosen is not None and select is None:  # the probe on the chosen rows is already fitted
            return _copy_probe(head, chosen, views)
        if select is not None and len(select[0]) and (features.dim() == 2 or features.shape[1] == 1):
            rows = features if features.dim() == 3 else features.unsqueeze(1)
            features = torch.cat([rows, select[0].unsqueeze(1)])
            labels = torch.cat([labels, select[1]])
        result = fit_linear_probe(
            features,
            labels,
            int(head.out_features),
            seed=cfg.seed,
            device=device,
            class_names=class_names,
            groups=groups,
            l2_grid=cfg.head.l2_grid,
            max_iter=cfg.head.max_iter,
        )
        return _copy_probe(head, result, views)
    sel_x, sel_y = select if select is not None else (None, None)
    fit = fit_heads(
        [head], [cfg.head.lr], features, labels, cfg, device=device, select_features=sel_x, select_labels=sel_y,
        epochs=epochs,
    )  # fmt: skip
    n = cfg.trainer.max_epochs if epochs is None else epochs
    best = fit.best_epochs[0]
    how = f"{n} epochs of {cfg.optimizer.name}" + (
        f", best epoch {best} on the selection split" if best is not None else ""
    )
    return HeadResult(head, "sgd", how + (f"; {views}" if views else ""), best, history=fit.history, views=views)


def _copy_probe(head: nn.Module, result: ProbeResult, views: str) -> HeadResult:
    with torch.no_grad():
        head.weight.copy_(result.linear.weight)
        head.bias.copy_(result.linear.bias)
    how = f"L2 {result.l2:.2g} by {result.folds}-fold CV" if result.folds else f"L2 {result.l2:.2g} (no CV)"
    how += f"; L-BFGS to gradient norm {result.grad_norm:.1e}" + (f"; {views}" if views else "")
    return HeadResult(head, "lbfgs", how, probe=result, views=views)


def _choose_views(
    features, labels, num_classes, cfg, device, class_names, groups
) -> tuple[torch.Tensor, ProbeResult, str]:
    """(the rows to train on, the probe fitted on them, one line of evidence): the centre view alone or every view,
    whichever the cross-validated probe scores higher (folds keep an image's views together)."""
    kw = {"seed": cfg.seed, "device": device, "class_names": class_names, "groups": groups, "l2_grid": cfg.head.l2_grid}
    one = fit_linear_probe(features[:, :1], labels, num_classes, max_iter=cfg.head.max_iter, **kw)
    every = fit_linear_probe(features, labels, num_classes, max_iter=cfg.head.max_iter, **kw)
    k = features.shape[1]
    if every.cv_accuracy > one.cv_accuracy:
        why = f"all {k} views (CV {every.cv_accuracy:.3f} vs {one.cv_accuracy:.3f} for the centre alone)"
        return features, every, f"features.views=auto: {why}"
    why = f"the centre view alone (CV {one.cv_accuracy:.3f} vs {every.cv_accuracy:.3f} with all {k})"
    return features[:, :1], one, f"features.views=auto: {why}"


@torch.no_grad()
def predict_head(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Softmax (N x C, float32, on the CPU) of a trained head on N x D features, in eval mode."""
    was = head.training
    head.eval()
    probs = torch.softmax(head(features.to(next(head.parameters()).device, torch.float32)).float(), dim=1).cpu()
    head.train(was)
    return probs

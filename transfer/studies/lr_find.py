"""A learning-rate range test for fine-tuning (Smith 2017; Lightning's `Tuner.lr_find`): the rate grows exponentially
from `min_lr` to `max_lr` over `num_training` optimiser steps on the training images while the smoothed training loss
is recorded; the suggestion is the rate where that loss falls fastest.

Lightning's finder sets every optimiser group to one rate; here the body's groups keep their configured fraction of
the head's rate (`regime.body_lr_factor`, `regime.stage_lr_decay`), so the suggestion is a `head.lr` for the same
regime, exactly as `fit` would use it. The frozen regime has no Lightning loop: its head trains in the head engine.

The suggestion is computed here from the raw loss of each step (recorded by the module), not by Lightning's
`suggestion()`: Lightning 2.6 differentiates the loss with respect to the rate itself although the rates are
log-spaced (Lightning-AI/pytorch-lightning#21141, fix open in #21171), and its bias correction is one step off, which
halves the first smoothed losses; on the digits study that put its suggestion on the artefact at the start of the
curve. Here: a centred moving average of the per-step loss (no lag) and its steepest descent per decade of rate,
skipping the first 10 steps and the last one as Lightning does. Lightning's number is kept in the result.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from transfer.backbones.base import Backbone
from transfer.data.augment import build_eval_transform, build_train_transform, fit_pca_colour
from transfer.data.datamodule import ImageDataModule
from transfer.data.labelled import LabelledImages
from transfer.errors import UserError
from transfer.model.heads import create_head
from transfer.studies.config import LrFindConfig
from transfer.studies.startup import FitRequest, start
from transfer.training.config import Regime, TrainConfig
from transfer.training.device_setup import device_plan
from transfer.training.fit import make_trainer, transfer_module
from transfer.training.module import TransferModule
from transfer.training.regimes import apply_regime


def check_not_frozen(regime: Regime) -> None:
    if regime.body_frozen:
        raise UserError(
            f"regime {regime.name!r}: the body is frozen, so the head trains on cached features in the head engine, "
            "not in a Lightning loop: there is no fine-tuning rate to find; use a partial or full regime."
        )


def smooth_losses(losses: list[float], window: int | None = None) -> list[float]:
    """A centred moving average over the finite losses (`window` steps, default a tenth of them, at least 5; shorter
    at the ends). Centred, so the curve does not lag: an exponential average with beta 0.98 over 100 steps trails the
    per-step loss by about a decade of rate, and its steepest point with it. A non-finite step reads nan."""
    n = len(losses)
    half = (window if window is not None else max(5, n // 10)) // 2
    out = []
    for i, x in enumerate(losses):
        near = [v for v in losses[max(0, i - half) : i + half + 1] if math.isfinite(v)]
        out.append(sum(near) / len(near) if math.isfinite(x) and near else float("nan"))
    return out


def steepest_descent(lrs: list[float], smoothed: list[float], skip_begin: int = 10, skip_end: int = 1) -> int | None:
    """Index of the steepest fall of `smoothed` per decade of rate (central differences in log10 lr), among the
    steps after `skip_begin` and before the last `skip_end`; None when fewer than two finite points remain."""
    idx = [i for i in range(skip_begin, len(lrs) - skip_end) if math.isfinite(smoothed[i])]
    if len(idx) < 2:
        return None
    x = torch.tensor([math.log10(lrs[i]) for i in idx], dtype=torch.float64)
    y = torch.tensor([smoothed[i] for i in idx], dtype=torch.float64)
    slopes = torch.gradient(y, spacing=(x,))[0]
    return idx[int(torch.argmin(slopes))]


class RatioKeepingModule(TransferModule):
    """TransferModule whose body groups stay at their configured fraction of the head's rate during the sweep
    (Lightning's finder would run every group at the head's rate). Used by `find_lr` only."""

    group_scales: list[float]
    last_step_lrs: dict[str, float]  # optimiser group name -> the rate it stepped at last
    raw_losses: list[float]  # the training loss of each optimiser step, unsmoothed

    def configure_optimizers(self):
        out = super().configure_optimizers()
        groups = out["optimizer"].param_groups  # the head's groups come first (regimes.param_groups)
        self.group_scales = [g["lr"] / groups[0]["lr"] for g in groups]
        self.last_step_lrs, self.raw_losses = {}, []
        return out

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if (self.trainer.fit_loop.batch_idx + 1) % self.trainer.accumulate_grad_batches:  # as Lightning's recorder
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.raw_losses.append(float(loss) if loss is not None else float("nan"))

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        # the finder's scheduler sets every group to the head's rate before each step (in closed form, from its base
        # rates): scale the body's groups here, and the next scheduler step overwrites them again
        for group, scale in zip(optimizer.param_groups, self.group_scales, strict=True):
            group["lr"] *= scale
        self.last_step_lrs = {str(g.get("name", i)): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)


def find_lr(
    backbone: Backbone,
    head: nn.Module,
    regime: Regime,
    train: LabelledImages,
    cfg: TrainConfig,
    sweep: LrFindConfig | None = None,
    work_dir: Path | None = None,
    quiet: bool = False,
) -> dict:
    """The range test on `train` (augmented as `fit` trains); returns suggested_lr, the head rates (lrs) and smoothed
    losses per step, and what was swept. The backbone and head are trained during the test: build fresh ones to fit."""
    check_not_frozen(regime)
    sweep = sweep or LrFindConfig()
    augment = cfg.augment
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    apply_regime(backbone, regime)
    if hasattr(backbone, "reset_aux_heads"):
        backbone.reset_aux_heads(len(train.classes))
    pre = backbone.preprocessing
    pca = fit_pca_colour(train.pixels, seed=cfg.seed) if augment.pca_noise else None
    trainer_cfg = {**cfg.trainer.lightning_args(), "compile": cfg.trainer.compile}
    plan = device_plan(trainer_cfg, cfg.data.num_workers, backbone.name)  # precision/workers resolved as fit does
    dm = ImageDataModule(
        train, None, build_train_transform(pre, augment, pca), build_eval_transform(pre), cfg.data.batch_size,
        plan.num_workers, cfg.seed,
    )  # fmt: skip
    loader = dm.train_dataloader()
    trainer_args = {k: v for k, v in plan.trainer.items() if k != "limit_train_batches"}  # the sweep sets its length
    accumulate = int(trainer_args.get("accumulate_grad_batches") or 1)
    epochs = math.ceil(sweep.num_training * accumulate / max(len(loader), 1)) + 1  # max_steps (the finder) ends it
    module = transfer_module(backbone, head, regime, train, cfg, cls=RatioKeepingModule)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix=".lr_find-") as tmp:  # the finder's restore checkpoint
        trainer = make_trainer({**trainer_args, "max_epochs": epochs, "default_root_dir": tmp}, None, quiet)
        from pytorch_lightning.tuner import Tuner

        finder = Tuner(trainer).lr_find(
            module,
            train_dataloaders=loader,
            min_lr=sweep.min_lr,
            max_lr=sweep.max_lr,
            num_training=sweep.num_training,
            mode="exponential",
            update_attr=False,
        )
    lrs = [float(x) for x in finder.results["lr"]]
    raw = list(module.raw_losses)[: len(lrs)]
    lrs = lrs[: len(raw)]
    losses = smooth_losses(raw)
    best = steepest_descent(lrs, losses)
    if best is None:
        raise UserError(
            f"lr_find: the loss diverged after {len(lrs)} of {sweep.num_training} steps, too few for a suggestion "
            f"(it skips the first 10): lower lr_find.min_lr (now {sweep.min_lr:g}) or raise lr_find.num_training."
        )
    lightning = finder.suggestion()
    return {
        "suggested_lr": lrs[best],
        "suggested_step": best,
        "lightning_suggested_lr": float(lightning) if lightning is not None else None,
        "lrs": lrs,
        "losses": losses,
        "raw_losses": raw,
        "steps": len(lrs),
        "stopped_early": len(lrs) < sweep.num_training,
        "min_lr": sweep.min_lr,
        "max_lr": sweep.max_lr,
        "num_training": sweep.num_training,
        "current_lr": cfg.head.lr,
        "regime": regime.to_dict(),
        "last_step_group_lrs": dict(getattr(module, "last_step_lrs", {})),  # the body at its fraction of the head
    }


def find_lr_for_request(req: FitRequest, regime: Regime) -> dict:
    """The range test for what `fit` would train under `regime`: the same (source-pretrained) body, head, task data,
    training split of the first seed, augmentation and optimiser."""
    check_not_frozen(regime)  # before any source pretraining
    setup = start(replace(req, regimes=[regime]), regime)
    seed, cfg = req.seeds[0], replace(req.cfg, seed=req.seeds[0])
    backbone, task = setup.make_backbone(regime), setup.task
    train_idx, _ = task.split(seed)
    images = task.images
    torch.manual_seed(seed)  # as run_study: the same seed gives the same initial head
    head = create_head(cfg.head.name, backbone.num_features, len(images.classes), **cfg.head.params)
    result = find_lr(backbone, head, regime, images.subset(train_idx), cfg, cfg.lr_find, req.out_dir, req.quiet)
    return {**result, "train_images": len(train_idx), "backbone": cfg.backbone.name}


def plot_lr_find(result: dict, path: Path) -> Path:
    """Smoothed training loss against the head's rate (log x), the suggestion marked; matplotlib's file-only Agg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs, losses = result["lrs"], result["losses"]
    suggested = result["suggested_lr"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if result.get("raw_losses"):
        ax.plot(lrs, result["raw_losses"], color="tab:blue", alpha=0.25, linewidth=1, label="training loss per step")
    ax.plot(lrs, losses, color="tab:blue", label="training loss (smoothed)")
    ax.set_xscale("log")
    i = result.get("suggested_step")
    if i is None:
        i = min(range(len(lrs)), key=lambda k: abs(math.log(lrs[k]) - math.log(suggested)))
    ax.axvline(suggested, color="tab:red", linestyle="--", linewidth=1)
    ax.plot([lrs[i]], [losses[i]], "o", color="tab:red", markersize=8, label=f"suggested head.lr={suggested:.2g}")
    current = result.get("current_lr")
    if current and lrs[0] <= current <= lrs[-1]:
        ax.axvline(current, color="grey", linestyle=":", linewidth=1, label=f"current head.lr={current:g}")
    ax.set_xlabel("head.lr (body groups at their configured fraction of it)")
    ax.set_ylabel("training loss (smoothed)")
    regime = result.get("regime", {}).get("name", "")
    ax.set_title(f"lr-find: {result.get('backbone', '')} {regime}, {result['steps']} steps".strip())
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

"""Train one classifier under one regime: the frozen regime on precomputed features, the others end to end.

By default a fit trains on every training image and keeps the schedule's last epoch (`trainer.monitor=none`): on a
few hundred images a held-out fifth chose noisy epochs and cost points (docs/benchmarks.md). With
`trainer.monitor=val/acc` (or val/loss) a fit keeps its best epoch instead: the monitor is scored each epoch on a
selection split, training stops after `patience` epochs without improvement, and the best epoch's weights are what
the fit returns (and the model dir saves). The selection split is carved from `train` (stratified, 20% of each
class, at least one image per class; `trainer.select_on=inner`, the default) because `val` is what callers report:
a study scores its eval split with the returned probabilities, so that split must not also choose the epoch. A caller
whose
`val` is a selection split of its own (a val/ folder with a test/ folder kept for the final score) sets
`trainer.select_on=val`. `trainer.monitor=none` trains on all of `train` and keeps the last epoch.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from transfer.backbones.base import Backbone
from transfer.data.augment import build_eval_transform, build_train_transform, fit_pca_colour
from transfer.data.datamodule import ImageDataModule
from transfer.data.device_batches import device_train_batches
from transfer.data.labelled import LabelledImages
from transfer.errors import UserError
from transfer.eval.scoring import write_rows_csv
from transfer.features.cache import FeatureCache
from transfer.features.tap import is_penultimate
from transfer.model.classifier import Classifier
from transfer.training import norm_policy
from transfer.training.class_weights import class_weights
from transfer.training.config import Regime, TrainConfig, TrainerConfig
from transfer.training.device_defaults import cpu_threads_for
from transfer.training.device_setup import (
    cpu_threads,
    device_plan,
    prepare_module,
    quiet_worker_warning,
    restore_memory_format,
)
from transfer.training.head_engine import predict_head, train_head, uses_lbfgs
from transfer.training.hyperrule import apply_hyperrule
from transfer.training.lp_init import LP_EPOCHS, probe_head
from transfer.training.module import TransferModule
from transfer.training.regimes import apply_regime
from transfer.training.resumable import (
    EpochCheckpoint,
    EpochSeeds,
    earlier_log,
    quiet_resume_warnings,
    restore_earlier_log,
    resume_checkpoint,
)
from transfer.training.selection import MIN_SELECT_PER_CLASS, inner_split

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """How a caller runs one fit (not user settings: those are the TrainConfig)."""

    validate_each_epoch: bool = True  # False: no per-epoch curves on `val` (studies evaluate once at the end)
    checkpoint_dir: str | None = None  # a fine-tune's epoch checkpoints (resume=true continues from them); None: none
    callbacks: list = field(default_factory=list)  # extra Lightning callbacks (tests, lr-find)
    lp_epochs: int = LP_EPOCHS  # LP-FT with an epoch-trained head: the probe's epochs


@dataclass
class FitOutcome:
    classifier: Classifier
    val_probs: torch.Tensor | None  # N_val x num_classes, softmax
    seconds: float
    trainable_params: int
    best_epoch: int | None = None  # the epoch whose weights were kept (0-based); None: the last one
    selected_by: str = "last epoch"  # e.g. "val/acc on 20% of train (inner split), patience 10"
    norm: str = ""  # fine-tunes: the BatchNorm statistics used and why (norm_policy.NormDecision.describe)


def make_trainer(
    trainer_args: dict, out_dir: Path | None, quiet: bool = False, callbacks: list | None = None
) -> pl.Trainer:
    """A pl.Trainer from `trainer_args` (TrainerConfig.lightning_args, device defaults resolved) for one fit."""
    from pytorch_lightning.loggers import CSVLogger

    extra = dict(trainer_args)
    callbacks = list(callbacks or [])
    has_checkpoint = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    kwargs = {
        # flushed at every logging step (epoch ends: the module logs per epoch), so a kill keeps the curves so far
        "logger": CSVLogger(str(out_dir), name="logs", version="", flush_logs_every_n_steps=1) if out_dir else False,
        "enable_checkpointing": out_dir is not None or has_checkpoint,
        "default_root_dir": str(out_dir) if out_dir else None,
        "enable_model_summary": False,
        "enable_progress_bar": not quiet,
        "log_every_n_steps": 1,
        "num_sanity_val_steps": 0,
        "callbacks": callbacks,
        **extra,
    }
    kwargs["strategy"] = ddp_with_timeout(kwargs.get("strategy"))
    return pl.Trainer(**kwargs)


DDP_KINDS = {
    "ddp": {},
    "ddp_spawn": {"start_method": "spawn"},
    "ddp_find_unused_parameters_true": {"find_unused_parameters": True},
}


def ddp_with_timeout(strategy):
    """A DDP strategy named by string, with a rendezvous/collective timeout (TRANSFER_DDP_TIMEOUT_S, default 600 s):
    a rank that never arrives ends the run with an error instead of a hang."""
    if not isinstance(strategy, str) or strategy not in DDP_KINDS:
        return strategy if strategy is not None else "auto"
    import os
    from datetime import timedelta

    from pytorch_lightning.strategies import DDPStrategy

    timeout = timedelta(seconds=float(os.environ.get("TRANSFER_DDP_TIMEOUT_S", 600)))
    return DDPStrategy(timeout=timeout, **DDP_KINDS[strategy])


def head_device(cfg: TrainConfig) -> torch.device:
    """Where heads on cached features train: the GPU when the trainer may use one and there is one."""
    wants_gpu = str(cfg.trainer.accelerator) in ("auto", "gpu", "cuda")
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def _device_of(trainer: pl.Trainer) -> torch.device:
    return trainer.strategy.root_device


@torch.inference_mode()
def predict_probs(model: nn.Module, loader: Iterable, device: torch.device) -> torch.Tensor:
    model.eval().to(device)
    out = [torch.softmax(model(x.to(device)).float(), dim=1).cpu() for x, _ in loader]
    return torch.cat(out) if out else torch.empty(0)


def selection_split(
    train: LabelledImages, val: LabelledImages | None, cfg: TrainConfig
) -> tuple[LabelledImages, LabelledImages | None, str]:
    """(images to fit, images that choose the epoch or None, where they come from) as the module docstring says."""
    if not cfg.trainer.selects:
        return train, None, "last epoch of the schedule, every training image trained on (trainer.monitor=none)"
    if cfg.trainer.select_on == "val":
        if val is not None and len(val):
            return train, val, "val"
        log.warning("select_on=val but no val images: choosing the epoch on a split of train instead")
    fraction = cfg.trainer.select_fraction
    fit_idx, sel_idx = inner_split(train.labels, fraction, cfg.seed)
    per_class = torch.bincount(train.labels[sel_idx], minlength=len(train.classes)) if sel_idx else None
    if per_class is None or int(per_class.min()) < MIN_SELECT_PER_CLASS:
        smallest = 0 if per_class is None else int(per_class.min())
        return (
            train,
            None,
            (
                f"last epoch of the schedule: an inner split would hold {smallest} image(s) of some class, fewer than "
                f"{MIN_SELECT_PER_CLASS}, too few to choose an epoch"
            ),
        )
    return train.subset(fit_idx), train.subset(sel_idx), f"{fraction:.0%} of train (inner split)"


def fit_classifier(
    backbone: Backbone,
    head: nn.Module,
    regime: Regime,
    train: LabelledImages,
    val: LabelledImages | None,
    cfg: TrainConfig,
    out_dir: Path | None = None,
    quiet: bool = False,
    run: RunOptions | None = None,
) -> FitOutcome:
    """Fit `head` (and the unfrozen part of `backbone`) on `train`, keeping the best epoch on a selection split
    (module docstring); returns the classifier and its probabilities on `val`."""
    run = run or RunOptions()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    apply_regime(backbone, regime)
    if hasattr(backbone, "reset_aux_heads"):
        backbone.reset_aux_heads(len(train.classes))
    start = time.perf_counter()
    if regime.body_frozen and uses_lbfgs(head, cfg):  # converged, L2 chosen by cross-validation: no epoch to pick
        fit_part, select, where = train, None, ""
    else:
        fit_part, select, where = selection_split(train, val, cfg)
    schedule = None
    if not regime.body_frozen:  # scheduler=hyperrule: the length and rate from len(fit_part) (hyperrule.py)
        cfg, schedule = apply_hyperrule(cfg, len(fit_part))
        if schedule:
            log.info("%s: %s", regime.name, schedule)
    norm = ""
    if not regime.body_frozen:
        decision = norm_policy.decide(regime.norm, backbone, fit_part, build_eval_transform(backbone.preprocessing))
        if decision.policy == "adapt":
            norm_policy.adapt(backbone, fit_part, build_eval_transform(backbone.preprocessing))
        norm = decision.describe()
        log.info("%s: %s", regime.name, norm)
    fitter = _fit_frozen if regime.body_frozen else _fit_end_to_end
    probs, best_epoch, selected_by = fitter(backbone, head, regime, fit_part, select, val, cfg, out_dir, quiet, run)
    if select is not None:
        selected_by = cfg.trainer.describe_selection(where)
    elif where:
        selected_by = where
    if schedule:
        selected_by += f"; schedule {schedule}"
    return _outcome(backbone, head, regime, probs, time.perf_counter() - start, best_epoch, selected_by, norm)


def _outcome(backbone, head, regime, probs, seconds, best_epoch, selected_by, norm="") -> FitOutcome:
    trainable = sum(p.numel() for p in head.parameters() if p.requires_grad)
    if not regime.body_frozen:
        trainable += backbone.num_trainable()
    classifier = Classifier(backbone.cpu(), head.cpu()).eval()
    return FitOutcome(classifier, probs, seconds, trainable, best_epoch, selected_by, norm)


def _frozen_cache(backbone, cfg: TrainConfig, quiet: bool) -> FeatureCache:
    features = cfg.features
    if not is_penultimate(features.stage):
        raise UserError(
            f"features.stage={features.stage}: fit trains heads on the penultimate layer (the model dir must "
            "rebuild the same classifier); compare stages with `python -m transfer command=features "
            "features.stage=<stage> features.probe=true`."
        )
    return FeatureCache(
        backbone, replace(features, progress=features.progress and not quiet), head_device(cfg), cfg.augment
    )


def _fit_frozen(backbone, head, regime, train, select, val, cfg, out_dir, quiet, run: RunOptions):
    """The frozen regime: the head engine on cached features (every cached view a row), no body in the loop."""
    cache = _frozen_cache(backbone, cfg, quiet)
    feats = cache.features(train)  # N x K x D

    def centre(images: LabelledImages | None) -> torch.Tensor | None:
        return cache.features(images, ["center"])[:, 0] if images is not None and len(images) else None  # N x D

    sel_feats = centre(select)
    log.info("frozen regime: the head trains on %s cached features", "x".join(str(n) for n in feats.shape))
    result = train_head(
        head,
        feats,
        train.labels,
        cfg,
        select=(sel_feats, select.labels) if sel_feats is not None else None,
        device=head_device(cfg),
        class_names=train.classes,
    )
    for note in result.notes:
        log.warning("linear probe: %s", note)
    if out_dir is not None and run.validate_each_epoch and result.history:
        write_rows_csv(result.history, Path(out_dir) / "logs" / "metrics.csv")  # what the curves plot reads
    val_feats = centre(val)
    probs = predict_head(head, val_feats) if val_feats is not None else None
    return probs, result.best_epoch, result.selected_by


def _fit_end_to_end(backbone, head, regime, train, select, val, cfg, out_dir, quiet, run: RunOptions):
    trainer_args = {"max_epochs": cfg.trainer.max_epochs, **cfg.trainer.lightning_args()}
    trainer_args["compile"] = cfg.trainer.compile
    plan = device_plan(trainer_args, cfg.data.num_workers, backbone.name)  # precision, workers, channels_last, compile
    quiet_worker_warning(plan)
    size = backbone.preprocessing.size
    params = sum(p.numel() for p in [*backbone.parameters(), *head.parameters()])
    threads = cpu_threads_for(params, size[0] * size[1], plan.device)
    log.info("device: %s%s", plan.describe(), ", 1 CPU thread (a small model)" if threads == 1 else "")
    with cpu_threads(threads):
        if regime.lp_init and cfg.head.lp_init:
            probe_head(backbone, head, train, select, cfg, head_device(cfg), run.lp_epochs)
        logs = out_dir is not None or not quiet  # a logger or a progress bar reads the per-step train metrics
        module = transfer_module(backbone, head, regime, train, cfg, log_train_metrics=logs)
        return _fit_lightning(backbone, head, train, select, val, cfg, out_dir, quiet, run, module, plan)


def _fit_lightning(backbone, head, train, select, val, cfg, out_dir, quiet, run: RunOptions, module, plan):
    """The Lightning fit of `module` (the best epoch restored), then its probabilities on `val`."""
    pre, augment = backbone.preprocessing, cfg.augment
    pca = fit_pca_colour(train.pixels, seed=cfg.seed) if augment.pca_noise else None
    train_tf, eval_tf = build_train_transform(pre, augment, pca), build_eval_transform(pre)
    loop_val = select if select is not None else (val if run.validate_each_epoch else None)
    best_epoch = None
    ckpt_dir = Path(run.checkpoint_dir) if run.checkpoint_dir else None
    batch = cfg.data.batch_size
    with tempfile.TemporaryDirectory(prefix="transfer-best-") as tmp:
        selection = _selection_callbacks(cfg.trainer, ckpt_dir or Path(tmp)) if select else []
        seeds = EpochSeeds(cfg.seed)  # every epoch's random draws from (seed, epoch): a resumed fit ends the same
        resumable = [seeds, *([EpochCheckpoint(ckpt_dir)] if ckpt_dir else [])]  # after the selection's checkpoint
        trainer = make_trainer(plan.trainer, out_dir, quiet, [*run.callbacks, *selection, *resumable])
        # small data: the uint8 pixels stay where training runs and whole batches are augmented there (None: the
        # per-image loader, for colour and geometric augmentation or several ranks)
        batches, _ = device_train_batches(
            train, pre, augment, batch, _device_of(trainer), cfg.seed, trainer.world_size, plan.channels_last
        )
        dm = ImageDataModule(
            train,
            loop_val,
            train_tf,
            eval_tf,
            batch,
            plan.num_workers,
            cfg.seed,
            pin_memory=plan.pin_memory,
            train_batches=batches,
        )
        seeds.targets.append(dm)
        prepare_module(module, plan.channels_last, plan.compile)
        ckpt = resume_checkpoint(ckpt_dir) if cfg.resume else None
        quiet_resume_warnings(bool(ckpt))
        earlier = earlier_log(out_dir) if ckpt and out_dir is not None else []
        if loop_val is not None and len(loop_val):
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
        else:
            trainer.fit(module, train_dataloaders=dm.train_dataloader(), ckpt_path=ckpt)
        if earlier and trainer.is_global_zero:
            restore_earlier_log(out_dir, earlier)
        restore_memory_format(module)
        if selection:
            best_epoch = _restore_best(module, selection[0])
    val_dl = ImageDataModule(train, val, train_tf, eval_tf, batch, 0).whole_val_dataloader()
    probs = predict_probs(Classifier(backbone, head), val_dl, _device_of(trainer)) if val_dl else None
    return probs, best_epoch, "last epoch"


def transfer_module(
    backbone, head, regime: Regime, train: LabelledImages, cfg: TrainConfig, cls=TransferModule, **kwargs
):
    """The LightningModule of a fine-tune, with every `cfg` setting it takes (lr-find uses a subclass)."""
    num_classes = len(train.classes)
    weights = class_weights(train.labels, num_classes, cfg.head.class_weights)
    return cls(backbone, head, num_classes, regime, cfg, weights, **kwargs)


def _selection_callbacks(sel: TrainerConfig, dirpath: Path) -> list:
    """ModelCheckpoint keeping the best epoch on the monitor (first, see _restore_best), EarlyStopping when patience."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    out: list = [
        ModelCheckpoint(
            dirpath=str(dirpath),
            filename="best",
            monitor=sel.monitor,
            mode=sel.monitor_mode,
            save_top_k=1,
            save_weights_only=True,
            enable_version_counter=False,
        )
    ]
    if sel.patience:
        out.append(EarlyStopping(monitor=sel.monitor, mode=sel.monitor_mode, patience=sel.patience, check_finite=False))
    return out


def _restore_best(module: TransferModule, checkpoint) -> int | None:
    """Load the best epoch's weights back into `module` (so the classifier returned and saved is that epoch)."""
    path = checkpoint.best_model_path
    if not path:
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    return int(state["epoch"])

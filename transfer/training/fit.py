"""Train one classifier under one regime: the frozen regime on precomputed features, the others end to end.

Every fit keeps its best epoch, not its last: `cfg.selection.monitor` (val/acc by default) is scored each epoch on a
selection split, training stops after `patience` epochs without improvement, and the best epoch's weights are what
the fit returns (and the model dir saves). The selection split is carved from `train` (stratified, 20% of each
class, at least one image per class; `select_on="inner"`, the default) because `val` is what callers report: a study
scores its eval split with the returned probabilities, so that split must not also choose the epoch. A caller whose
`val` is a selection split of its own (a val/ folder with a test/ folder kept for the final score) sets
`select_on="val"`. `monitor="none"` trains on all of `train` and keeps the last epoch.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from transfer.backbones.base import Backbone
from transfer.data.augment import AugmentConfig, build_eval_transform, build_train_transform, fit_pca_colour
from transfer.data.datamodule import ImageDataModule
from transfer.data.device_batches import device_train_batches
from transfer.data.labelled import LabelledImages
from transfer.errors import UserError
from transfer.eval.scoring import write_rows_csv
from transfer.features import FeatureCache, FeatureConfig
from transfer.features.tap import is_penultimate
from transfer.model.classifier import Classifier
from transfer.training.class_weights import class_weights
from transfer.training.device_setup import device_plan, prepare_module, quiet_worker_warning, restore_memory_format
from transfer.training.head_engine import HeadTraining, fit_heads
from transfer.training.hyperrule import apply_hyperrule
from transfer.training.lp_init import LP_EPOCHS, lbfgs_probe, probe_head
from transfer.training.mixing import MixSpec
from transfer.training.module import TransferModule
from transfer.training.optim import OptimizerSpec, SchedulerSpec
from transfer.training.probe import fit_linear_probe, probe_predict_proba
from transfer.training.regimes import Regime, apply_regime
from transfer.training.resumable import (
    EpochCheckpoint,
    EpochSeeds,
    earlier_log,
    quiet_resume_warnings,
    restore_earlier_log,
)
from transfer.training.resume import resume_checkpoint
from transfer.training.selection import MIN_SELECT_PER_CLASS, EpochSelection, inner_split

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    max_epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    label_smoothing: float = 0.0
    num_workers: int | str = 0  # or "auto" (device_setup.resolve_workers)
    seed: int = 0
    validate_each_epoch: bool = True  # False: no per-epoch curves on `val` (studies evaluate once at the end)
    trainer: dict = field(default_factory=dict)  # extra pytorch_lightning.Trainer arguments (accelerator, devices, ...)
    features: FeatureConfig | None = None  # frozen regime: the feature cache (None: defaults, cached on disk)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    solver: str = "lbfgs"  # heads on cached features: lbfgs (linear heads) | sgd
    resume: bool = False  # a fine-tune continues from the newest complete epoch checkpoint in `checkpoint_dir`
    checkpoint_dir: str | None = None  # a fine-tune's epoch checkpoints (resume.py); None: none kept
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    selection: EpochSelection = field(default_factory=EpochSelection)  # which epoch is kept (module docstring)
    select_on: str = "inner"  # inner: a split of train chooses the epoch | val: `val` does (it is not reported)
    class_weights: str = "auto"  # auto | none | balanced (class_weights.py)
    mix: MixSpec = field(default_factory=MixSpec)  # mixup / cutmix alphas (partial / full only)
    lp_init: bool = True  # head.lp_init: LP-FT where the regime allows it
    lp_epochs: int = LP_EPOCHS  # LP-FT: epochs of the linear probe that starts the head (regime.lp_init)

    def head_training(self, epochs: int | None = None) -> HeadTraining:
        """The same settings for the head engine (heads on cached features)."""
        return HeadTraining(
            self.max_epochs if epochs is None else epochs,
            self.batch_size,
            self.weight_decay,
            self.label_smoothing,
            self.optimizer,
            self.scheduler,
            self.seed,
            self.class_weights,
            self.selection,
        )


@dataclass
class FitOutcome:
    classifier: Classifier
    val_probs: torch.Tensor | None  # N_val x num_classes, softmax
    seconds: float
    trainable_params: int
    best_epoch: int | None = None  # the epoch whose weights were kept (0-based); None: the last one
    selected_by: str = "last epoch"  # e.g. "val/acc on 20% of train (inner split), patience 10"


def make_trainer(
    cfg: TrainConfig, out_dir: Path | None, quiet: bool = False, callbacks: list | None = None
) -> pl.Trainer:
    from pytorch_lightning.loggers import CSVLogger

    extra = dict(cfg.trainer)
    callbacks = [*extra.pop("callbacks", []), *(callbacks or [])]
    has_checkpoint = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    kwargs = {
        "max_epochs": cfg.max_epochs,
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
    wants_gpu = str(cfg.trainer.get("accelerator", "auto")) in ("auto", "gpu", "cuda")
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def _device_of(trainer: pl.Trainer) -> torch.device:
    return trainer.strategy.root_device


@torch.inference_mode()
def predict_probs(model: nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    model.eval().to(device)
    out = [torch.softmax(model(x.to(device)).float(), dim=1).cpu() for x, _ in loader]
    return torch.cat(out) if out else torch.empty(0)


def selection_split(
    train: LabelledImages, val: LabelledImages | None, cfg: TrainConfig
) -> tuple[LabelledImages, LabelledImages | None, str]:
    """(images to fit, images that choose the epoch or None, where they come from) as the module docstring says."""
    sel = cfg.selection
    if not sel.enabled:
        return train, None, ""
    if cfg.select_on == "val":
        if val is not None and len(val):
            return train, val, "val"
        log.warning("select_on=val but no val images: choosing the epoch on a split of train instead")
    fit_idx, sel_idx = inner_split(train.labels, sel.fraction, cfg.seed)
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
    return train.subset(fit_idx), train.subset(sel_idx), f"{sel.fraction:.0%} of train (inner split)"


def fit_classifier(
    backbone: Backbone,
    head: nn.Module,
    regime: Regime,
    train: LabelledImages,
    val: LabelledImages | None,
    augment: AugmentConfig,
    cfg: TrainConfig,
    out_dir: Path | None = None,
    quiet: bool = False,
) -> FitOutcome:
    """Fit `head` (and the unfrozen part of `backbone`) on `train`, keeping the best epoch on a selection split
    (module docstring); returns the classifier and its probabilities on `val`."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    apply_regime(backbone, regime)
    if hasattr(backbone, "reset_aux_heads"):
        backbone.reset_aux_heads(len(train.classes))
    start = time.perf_counter()
    if regime.body_frozen and uses_probe(head, cfg):  # converged, L2 chosen by cross-validation: no epochs to pick
        probs, selected_by = _fit_probe(backbone, head, train, val, augment, cfg, quiet)
        return _outcome(backbone, head, regime, probs, time.perf_counter() - start, None, selected_by)
    fit_part, select, where = selection_split(train, val, cfg)
    schedule = None
    if not regime.body_frozen:  # scheduler=hyperrule: the length and rate from len(fit_part) (hyperrule.py)
        cfg, schedule = apply_hyperrule(cfg, len(fit_part))
        if schedule:
            log.info("%s: %s", regime.name, schedule)
    run = _fit_frozen if regime.body_frozen else _fit_end_to_end
    probs, best_epoch = run(backbone, head, regime, fit_part, select, val, augment, cfg, out_dir, quiet)
    selected_by = cfg.selection.describe(where) if select is not None else where or "last epoch"
    if schedule:
        selected_by += f"; schedule {schedule}"
    return _outcome(backbone, head, regime, probs, time.perf_counter() - start, best_epoch, selected_by)


def _outcome(backbone, head, regime, probs, seconds, best_epoch, selected_by) -> FitOutcome:
    trainable = sum(p.numel() for p in head.parameters() if p.requires_grad)
    if not regime.body_frozen:
        trainable += backbone.num_trainable()
    classifier = Classifier(backbone.cpu(), head.cpu()).eval()
    return FitOutcome(classifier, probs, seconds, trainable, best_epoch, selected_by)


def uses_probe(head: nn.Module, cfg: TrainConfig) -> bool:
    """The converged L-BFGS probe trains heads that are one linear layer, unless `head.solver=sgd`."""
    return cfg.solver == "lbfgs" and isinstance(head, nn.Linear)


def _frozen_cache(backbone, augment, cfg, quiet) -> FeatureCache:
    features = cfg.features or FeatureConfig()
    if not is_penultimate(features.stage):
        raise UserError(
            f"features.stage={features.stage}: fit trains heads on the penultimate layer (the model dir must "
            "rebuild the same classifier); compare stages with `python -m transfer command=features "
            "features.stage=<stage> features.probe=true`."
        )
    return FeatureCache(
        backbone, replace(features, progress=features.progress and not quiet), head_device(cfg), augment
    )


def _fit_probe(backbone, head, train, val, augment, cfg, quiet) -> tuple[torch.Tensor | None, str]:
    """The frozen regime's linear head as Kornblith et al.'s probe: every cached view a row, L2 by k-fold CV."""
    cache = _frozen_cache(backbone, augment, cfg, quiet)
    feats = cache.features(train)  # N x K x D
    result = fit_linear_probe(
        feats, train.labels, len(train.classes), seed=cfg.seed, device=head_device(cfg), class_names=train.classes
    )
    with torch.no_grad():
        head.weight.copy_(result.linear.weight)
        head.bias.copy_(result.linear.bias)
    for note in result.notes:
        log.warning("linear probe: %s", note)
    val_feats = cache.features(val, ["center"])[:, 0] if val is not None and len(val) else None
    probs = probe_predict_proba(head, val_feats) if val_feats is not None else None
    how = f"L2 {result.l2:.2g} by {result.folds}-fold CV" if result.folds else f"L2 {result.l2:.2g} (no CV)"
    return probs, f"{how}; L-BFGS to gradient norm {result.grad_norm:.1e}"


def _fit_frozen(backbone, head, regime, train, select, val, augment, cfg, out_dir, quiet):
    device = head_device(cfg)
    cache = _frozen_cache(backbone, augment, cfg, quiet)
    feats = cache.features(train)  # N x K x D: no backbone in the loop from here on

    def centre(images: LabelledImages | None) -> torch.Tensor | None:
        return cache.features(images, ["center"])[:, 0] if images is not None and len(images) else None  # N x D

    val_feats, sel_feats = centre(val), centre(select)
    log.info(
        "frozen regime: the head trains on %s cached features, no backbone in the loop",
        "x".join(str(n) for n in feats.shape),
    )
    fit = fit_heads(
        [head],
        [cfg.lr],
        feats,
        train.labels,
        cfg.head_training(),
        val_feats,
        val.labels if val_feats is not None else None,
        device,
        sel_feats,
        select.labels if sel_feats is not None else None,
    )
    if out_dir is not None and cfg.validate_each_epoch:
        write_rows_csv(fit.history, Path(out_dir) / "logs" / "metrics.csv")  # what the curves plot reads
    return (fit.val_probs[0] if fit.val_probs else None), fit.best_epochs[0]


def _fit_end_to_end(backbone, head, regime, train, select, val, augment, cfg, out_dir, quiet):
    pre = backbone.preprocessing
    if regime.lp_init and cfg.lp_init:
        how = cfg.head_training(epochs=cfg.lp_epochs)
        fitter = lbfgs_probe if uses_probe(head, cfg) else None
        probe_head(backbone, head, train, select, cfg.features, how, cfg.lr, head_device(cfg), fitter)
    module = transfer_module(backbone, head, regime, train, cfg)
    plan = device_plan(cfg.trainer, cfg.num_workers, backbone.name)  # precision, workers, channels_last, compile
    quiet_worker_warning(plan)
    log.info("device: %s", plan.describe())
    run_cfg = replace(cfg, trainer=plan.trainer)
    pca = fit_pca_colour(train.pixels, seed=cfg.seed) if augment.pca_noise else None
    train_tf, eval_tf = build_train_transform(pre, augment, pca), build_eval_transform(pre)
    loop_val = select if select is not None else (val if cfg.validate_each_epoch else None)
    best_epoch = None
    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    with tempfile.TemporaryDirectory(prefix="transfer-best-") as tmp:
        selection = _selection_callbacks(cfg.selection, ckpt_dir or Path(tmp)) if select else []
        seeds = EpochSeeds(cfg.seed)  # every epoch's random draws from (seed, epoch): a resumed fit ends the same
        resumable = [seeds, *([EpochCheckpoint(ckpt_dir)] if ckpt_dir else [])]  # after the selection's checkpoint
        trainer = make_trainer(run_cfg, out_dir, quiet, selection + resumable)
        batches = None
        if plan.device == "cuda":  # small data: the uint8 pixels live on the GPU and are augmented there
            batches, _ = device_train_batches(
                train,
                pre,
                augment,
                cfg.batch_size,
                _device_of(trainer),
                cfg.seed,
                trainer.world_size,
                plan.channels_last,
            )
        dm = ImageDataModule(
            train,
            loop_val,
            train_tf,
            eval_tf,
            cfg.batch_size,
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
    val_dl = ImageDataModule(train, val, train_tf, eval_tf, cfg.batch_size, 0).whole_val_dataloader()
    probs = predict_probs(Classifier(backbone, head), val_dl, _device_of(trainer)) if val_dl else None
    return probs, best_epoch


def transfer_module(backbone, head, regime: Regime, train: LabelledImages, cfg: TrainConfig, cls=TransferModule):
    """The LightningModule of a fine-tune, with every `cfg` setting it takes (lr-find uses a subclass)."""
    num_classes = len(train.classes)
    return cls(
        backbone,
        head,
        num_classes,
        regime,
        cfg.lr,
        cfg.weight_decay,
        label_smoothing=cfg.label_smoothing,
        optimizer=cfg.optimizer,
        scheduler=cfg.scheduler,
        class_weights=class_weights(train.labels, num_classes, cfg.class_weights),
        mix=cfg.mix,
    )


def _selection_callbacks(sel: EpochSelection, dirpath: Path) -> list:
    """ModelCheckpoint keeping the best epoch on the monitor (first, see _restore_best), EarlyStopping when patience."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    out: list = [
        ModelCheckpoint(
            dirpath=str(dirpath),
            filename="best",
            monitor=sel.monitor,
            mode=sel.mode,
            save_top_k=1,
            save_weights_only=True,
            enable_version_counter=False,
        )
    ]
    if sel.patience:
        out.append(EarlyStopping(monitor=sel.monitor, mode=sel.mode, patience=sel.patience, check_finite=False))
    return out


def _restore_best(module: TransferModule, checkpoint) -> int | None:
    """Load the best epoch's weights back into `module` (so the classifier returned and saved is that epoch)."""
    path = checkpoint.best_model_path
    if not path:
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    return int(state["epoch"])

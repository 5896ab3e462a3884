"""Train one classifier under one regime: the frozen regime on precomputed features, the others end to end."""

from __future__ import annotations

import logging
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
from transfer.data.labelled import LabelledImages
from transfer.errors import UserError
from transfer.features import FeatureCache, FeatureConfig
from transfer.features.tap import is_penultimate
from transfer.model.classifier import Classifier
from transfer.training.head_engine import HeadTraining, fit_heads, write_history_csv
from transfer.training.module import TransferModule
from transfer.training.optim import OptimizerSpec, SchedulerSpec
from transfer.training.regimes import Regime, apply_regime

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    max_epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    label_smoothing: float = 0.0
    num_workers: int = 0
    seed: int = 0
    validate_each_epoch: bool = True  # False: no val loop inside fit (studies evaluate once at the end)
    trainer: dict = field(default_factory=dict)  # extra pytorch_lightning.Trainer arguments (accelerator, devices, ...)
    features: FeatureConfig | None = None  # frozen regime: the feature cache (None: defaults, cached on disk)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)

    def head_training(self) -> HeadTraining:
        """The same settings for the head engine (heads on cached features)."""
        return HeadTraining(
            self.max_epochs,
            self.batch_size,
            self.weight_decay,
            self.label_smoothing,
            self.optimizer,
            self.scheduler,
            self.seed,
        )


@dataclass
class FitOutcome:
    classifier: Classifier
    val_probs: torch.Tensor | None  # N_val x num_classes, softmax
    seconds: float
    trainable_params: int


def make_trainer(cfg: TrainConfig, out_dir: Path | None, quiet: bool = False) -> pl.Trainer:
    from pytorch_lightning.loggers import CSVLogger

    kwargs = {
        "max_epochs": cfg.max_epochs,
        "logger": CSVLogger(str(out_dir), name="logs", version="") if out_dir else False,
        "enable_checkpointing": out_dir is not None,
        "default_root_dir": str(out_dir) if out_dir else None,
        "enable_model_summary": False,
        "enable_progress_bar": not quiet,
        "log_every_n_steps": 1,
        "num_sanity_val_steps": 0,
        **cfg.trainer,
    }
    return pl.Trainer(**kwargs)


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
    """Fit `head` (and the unfrozen part of `backbone`) on `train`; returns the classifier and val probabilities."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    apply_regime(backbone, regime)
    if hasattr(backbone, "reset_aux_heads"):
        backbone.reset_aux_heads(len(train.classes))
    pre = backbone.preprocessing
    eval_tf = build_eval_transform(pre)
    start = time.perf_counter()
    if regime.body_frozen:
        device = head_device(cfg)
        features = cfg.features or FeatureConfig()
        if not is_penultimate(features.stage):
            raise UserError(
                f"features.stage={features.stage}: fit trains heads on the penultimate layer (the model dir must "
                "rebuild the same classifier); compare stages with `python -m transfer command=features "
                "features.stage=<stage> features.probe=true`."
            )
        cache = FeatureCache(backbone, replace(features, progress=features.progress and not quiet), device, augment)
        feats = cache.features(train)  # N x K x D: no backbone in the loop from here on
        val_feats = cache.features(val, ["center"])[:, 0] if val is not None and len(val) else None  # N_val x D
        log.info(
            "frozen regime: the head trains on %s cached features, no backbone in the loop",
            "x".join(str(n) for n in feats.shape),
        )
        fit = fit_heads(
            [head], [cfg.lr], feats, train.labels, cfg.head_training(), val_feats, val.labels if val else None, device
        )
        probs = fit.val_probs[0] if fit.val_probs else None
        if out_dir is not None and cfg.validate_each_epoch:
            write_history_csv(fit.history, Path(out_dir) / "logs" / "metrics.csv")
    else:
        trainer = make_trainer(cfg, out_dir, quiet)
        pca = fit_pca_colour(train.pixels, seed=cfg.seed) if augment.pca_noise else None
        dm = ImageDataModule(
            train, val, build_train_transform(pre, augment, pca), eval_tf, cfg.batch_size, cfg.num_workers, cfg.seed
        )
        module = TransferModule(
            backbone,
            head,
            len(train.classes),
            regime,
            cfg.lr,
            cfg.weight_decay,
            label_smoothing=cfg.label_smoothing,
            optimizer=cfg.optimizer,
            scheduler=cfg.scheduler,
        )
        if cfg.validate_each_epoch:
            trainer.fit(module, datamodule=dm)
        else:
            trainer.fit(module, train_dataloaders=dm.train_dataloader())
        val_dl = dm.val_dataloader()
        probs = predict_probs(Classifier(backbone, head), val_dl, _device_of(trainer)) if val_dl else None
    seconds = time.perf_counter() - start
    trainable = sum(p.numel() for p in head.parameters() if p.requires_grad)
    if not regime.body_frozen:
        trainable += backbone.num_trainable()
    classifier = Classifier(backbone.cpu(), head.cpu()).eval()
    return FitOutcome(classifier, probs, seconds, trainable)

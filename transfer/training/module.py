"""One thin LightningModule for fine-tuning: backbone + head, cross-entropy (+ auxiliary terms; class-weighted on an
imbalanced set; against mixup/cutmix soft targets while training), torchmetrics, per-group LRs, the configured
optimiser and schedule. Heads on cached features train in head_engine.py instead."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from transfer.training.class_weights import soft_cross_entropy
from transfer.training.config import Regime, TrainConfig
from transfer.training.mixing import BatchMixer
from transfer.training.optim import build_optimizer, build_scheduler
from transfer.training.regimes import param_groups


class TransferModule(pl.LightningModule):
    """With `backbone=None` the inputs are precomputed features (the frozen regime: no body in the loop)."""

    def __init__(
        self,
        backbone: nn.Module | None,
        head: nn.Module,
        num_classes: int,
        regime: Regime,
        cfg: TrainConfig | None = None,
        class_weights: torch.Tensor | None = None,
        log_train_metrics: bool = True,
    ) -> None:
        """`log_train_metrics=False` skips train/loss and train/acc: with no logger and no progress bar nothing reads
        them, and on a tiny model logging them per step cost half the step (measured on the digits study)."""
        super().__init__()
        cfg = cfg or TrainConfig()
        self.save_hyperparameters(  # plain values only: checkpoints load with weights_only=True
            {
                "num_classes": num_classes,
                "regime": regime.to_dict(),
                "lr": cfg.head.lr,  # Lightning's lr finder reads and sets hparams.lr
                "weight_decay": cfg.head.weight_decay,
                "label_smoothing": cfg.head.label_smoothing,
            }
        )
        self.backbone = backbone
        self.head = head
        self.regime = regime
        self.optimizer_cfg, self.scheduler_cfg = cfg.optimizer, cfg.scheduler
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss = MeanMetric()  # image-weighted and synced over DDP ranks, as the accuracy is
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        weights = None if class_weights is None else class_weights.float()
        self.register_buffer("class_weights", weights, persistent=False)  # C, or None: unweighted
        mixes = cfg.augment.mixes and backbone is not None  # cached features are never mixed
        self.mixer = BatchMixer(cfg.augment, num_classes, cfg.head.label_smoothing) if mixes else None
        self.log_train_metrics = log_train_metrics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = x if self.backbone is None else self.backbone(x)
        return self.head(feats)

    def model_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        target = None  # soft targets (B x C) when mixing, else the class indices y
        if self.training and self.mixer is not None:
            x, target = self.mixer(x, y)
        if self.training and self.backbone is not None and hasattr(self.backbone, "forward_with_aux"):
            feats, aux_logits = self.backbone.forward_with_aux(x)
            logits = self.head(feats)
            loss = self.loss(logits, y, target)
            for head, aux in zip(self.backbone.aux_heads(), aux_logits, strict=True):
                loss = loss + head.weight * self.loss(aux, y, target)
        else:
            logits = self(x)
            loss = self.loss(logits, y, target)
        return loss, logits.argmax(1), y

    def loss(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy with the class weights; against `target` (soft, smoothing already in it) when given."""
        if target is not None:
            return soft_cross_entropy(logits, target, self.class_weights)
        return F.cross_entropy(logits, y, weight=self.class_weights, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, preds, y = self.model_step(batch)
        if not self.log_train_metrics:
            return loss
        self.train_acc(preds, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, preds, y = self.model_step(batch)
        self.val_acc(preds, y)
        self.val_f1(preds, y)
        self.val_loss.update(loss, weight=len(y))
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val/f1_macro", self.val_f1, on_step=False, on_epoch=True, batch_size=len(y))

    def configure_optimizers(self):
        groups = param_groups(self.backbone, self.head, self.regime, self.hparams.lr)
        opt = build_optimizer(groups, self.optimizer_cfg, self.hparams.weight_decay)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        sched = build_scheduler(opt, self.scheduler_cfg, epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

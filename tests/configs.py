"""TrainConfig for tests from the few values a test sets (the groups' dataclasses fill in the rest)."""

from __future__ import annotations

from transfer.data.config import AugmentConfig, DataConfig
from transfer.features.config import FeatureConfig
from transfer.training.config import (
    HeadConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
    TrainerConfig,
)


def train_config(
    epochs: int = 30,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    label_smoothing: float = 0.0,
    class_weights: str = "none",
    seed: int = 0,
    optimizer: OptimizerConfig | None = None,
    scheduler: SchedulerConfig | None = None,
    monitor: str = "val/acc",
    patience: int = 10,
    select_fraction: float = 0.2,
    lr: float = 1e-3,
    solver: str = "lbfgs",
    lp_init: bool = True,
    augment: AugmentConfig | None = None,
    features: FeatureConfig | None = None,
    num_workers: int | str = 0,
    resume: bool = False,
    **trainer,
) -> TrainConfig:
    return TrainConfig(
        seed=seed,
        resume=resume,
        data=DataConfig(kind="digits", batch_size=batch_size, num_workers=num_workers),
        head=HeadConfig(
            lr=lr,
            weight_decay=weight_decay,
            label_smoothing=label_smoothing,
            class_weights=class_weights,
            solver=solver,
            lp_init=lp_init,
        ),
        optimizer=optimizer or OptimizerConfig(),
        scheduler=scheduler or SchedulerConfig(),
        trainer=TrainerConfig(
            max_epochs=epochs, monitor=monitor, patience=patience, select_fraction=select_fraction, **trainer
        ),
        augment=augment or AugmentConfig(),
        features=features or FeatureConfig(),
    )

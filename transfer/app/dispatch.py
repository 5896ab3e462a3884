"""The Hydra side: pick the command's module, give it the composed config; helpers every command shares."""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transfer.app.schema import COMMANDS

MODULES = {c: f"transfer.app.commands.{c.replace('-', '_')}" for c in COMMANDS}


def plain(node) -> dict | list | None:
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def dispatch(node: DictConfig) -> float | None:
    """Run the command on the typed config; its return value (fit: the selection accuracy) is the job's, which
    Optuna sweeps maximise."""
    from transfer.app.compose import to_config

    cfg = to_config(node)
    return importlib.import_module(MODULES[cfg.command]).run(cfg)


def quiet_lightning() -> None:
    """Lightning's INFO banners and the warnings that say nothing to this toolkit's user."""
    for name in (
        "pytorch_lightning",
        "pytorch_lightning.utilities.rank_zero",
        "lightning.pytorch",
        "lightning.pytorch.utilities.rank_zero",
        "lightning_fabric",
        "lightning",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*The number of training batches.*")
    warnings.filterwarnings("ignore", ".*treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", ".*defined a `validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", r".*module\(s\) in eval mode at the start of training.*")


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (as it was, after): importing torch, Lightning and timm
    builds about a million objects that live as long as the process, and collecting while they are built took 1 s of
    the digits study's 4 s of imports."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()

"""Checks of paths on the command line that cost no torch import: the run dir, `resume=true`, model dirs.

Each mistake is one line naming the setting and the fix, before Hydra creates a run dir or torch loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.data.config import DataConfig
from transfer.errors import UserError
from transfer.studies.config import AUTO_BACKBONE
from transfer.training.config import TrainerConfig

if TYPE_CHECKING:
    from transfer.app.schema import Config

CARD, WEIGHTS = "card.json", "model.safetensors"  # model/model_dir.py's names (that module loads torch)


def _value(argv: list[str], key: str) -> str | None:
    for a in reversed(argv):
        name, eq, value = a.lstrip("+~").partition("=")
        if eq and name == key:
            return value
    return None


def check_run_dir(argv: list[str]) -> None:
    """hydra.run.dir (or the default outputs/ in the current folder) must be creatable and writable."""
    key = "hydra.sweep.dir" if any(a in ("-m", "--multirun") for a in argv) else "hydra.run.dir"
    given = _value(argv, key)
    target = Path(given).expanduser() if given else Path("outputs")
    here = target.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise UserError(
            f"{key}={given or target}: {here} is a file, not a folder; pick a run dir under a folder ({key}=<folder>)."
        )
    if not os.access(here, os.W_OK | os.X_OK):
        raise UserError(f"{key}={given or target}: {here} is not writable; pass {key}=<a folder you can write>.")


def check_resume(argv: list[str]) -> None:
    """resume=true continues a run dir that exists: it must be named, else a fresh timestamped dir is made."""
    if str(_value(argv, "resume")).lower() not in ("true", "1", "yes", "on"):
        return
    given = _value(argv, "hydra.run.dir")
    if not given:
        raise UserError("resume=true: name the killed run's folder too: resume=true hydra.run.dir=<its run dir>.")
    if not Path(given).expanduser().is_dir():
        raise UserError(f"resume=true hydra.run.dir={given}: no such run dir; give the folder of the killed fit.")


def check_model_early(model, key: str = "model") -> None:
    """Every model dir named (one, or a list: an ensemble) holds a card and weights."""
    for m in model if isinstance(model, list | tuple) else [model]:
        path = Path(str(m)).expanduser()
        if not (path / CARD).is_file() or not (path / WEIGHTS).is_file():
            raise UserError(
                f"{key}={m}: not a model dir (needs {CARD} and {WEIGHTS}); use <run dir>/model of a fit run."
            )


def check_num_nodes(trainer: TrainerConfig) -> None:
    """trainer.num_nodes>1 waits for other machines at the rendezvous: without a launcher's environment naming
    them it would hang until the process-group timeout, so it is refused at once."""
    nodes = int(trainer.num_nodes or 1)
    if nodes <= 1:
        return
    env = os.environ
    launched = (
        ("MASTER_ADDR" in env and "NODE_RANK" in env)
        or "SLURM_JOB_ID" in env
        or "TORCHELASTIC_RUN_ID" in env
        or "GROUP_RANK" in env
    )
    if not launched:
        raise UserError(
            f"trainer.num_nodes={nodes}: no multi-node launcher found (MASTER_ADDR and NODE_RANK, SLURM, or torchrun); "
            "start one process per node with those set (e.g. torchrun --nnodes), or use trainer.num_nodes=1."
        )


def check_accelerator(trainer: TrainerConfig) -> None:
    """A GPU asked for (trainer=ddp sets trainer.accelerator=gpu) on a machine without one: one line now, not
    Lightning's MisconfigurationException after the first regimes have run. Loads torch only when a GPU is asked."""
    accelerator = str(trainer.accelerator).lower()
    if accelerator not in ("gpu", "cuda"):
        return
    import torch

    mps = (
        accelerator == "gpu" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    )
    if torch.cuda.is_available() or mps:
        return
    asked = "trainer=ddp" if str(trainer.strategy).startswith("ddp") else f"trainer.accelerator={trainer.accelerator}"
    raise UserError(
        f"{asked}: this machine has no GPU (torch finds no CUDA device), and {asked} trains on GPUs only; "
        "use trainer=default (the CPU here), or trainer.accelerator=cpu."
    )


def check_data_early(data: DataConfig) -> None:
    """A missing image folder, in well under a second."""
    if data.kind == "folder":
        root = data.root
        if root in (None, "???") or not Path(str(root)).expanduser().is_dir():
            raise UserError(
                f"data.root={root}: no such folder. Put one sub-folder of images per class there "
                "(e.g. tigger/ misty/ neither/) and pass data.root=/path/to/folder."
            )


def check_weights_early(cfg: Config) -> None:
    """A missing weights file, or hub weights with no network and nothing cached, in one line."""
    w = cfg.backbone.weights
    if w and ("/" in str(w) or Path(str(w)).suffix) and not Path(str(w)).expanduser().exists():
        raise UserError(f"backbone.weights={w}: no such file or directory.")
    if not w and cfg.backbone.pretrained and cfg.regime.pretrained:
        from transfer.backbones.sources.offline import early_offline_check

        early_offline_check(str(cfg.backbone.name))


TRAINS = ("fit", "features", "learning-curve", "lr-find", "label-issues")  # build a body (and may need its weights)


def check_before_run(cfg: Config) -> None:
    """Every mistake that needs no torch, before Hydra makes a run dir: the image folder, the weights file or the
    network for hub weights, a trainer asking for more nodes than a launcher started, and (loading torch, only then)
    a GPU asked for where there is none. rank-backbones (and backbone.name=auto) check each candidate's weights when
    they build it: one offline name is skipped, not fatal."""
    if cfg.command in (*TRAINS, "augment-preview", "rank-backbones"):
        check_data_early(cfg.data)
    if cfg.command == "suggest":
        check_suggest_early(cfg)
    if cfg.command == "rank-backbones" and not cfg.backbones:
        raise UserError("command=rank-backbones needs the candidates: backbones=[resnet18,resnet50,...].")
    if cfg.command in TRAINS:
        if str(cfg.backbone.name) != AUTO_BACKBONE:  # each candidate's weights: checked as it is built
            check_weights_early(cfg)
        check_num_nodes(cfg.trainer)
        check_accelerator(cfg.trainer)


def check_suggest_early(cfg: Config) -> None:
    """command=suggest: one model dir, the folder of unlabelled images, and data.root when given."""
    if not cfg.model or not cfg.images:
        raise UserError("command=suggest needs model=<run dir>/model and images=<folder of unlabelled images> (n=50).")
    if isinstance(cfg.model, list | tuple):
        raise UserError(f"model={list(cfg.model)}: command=suggest reads one model dir, not an ensemble.")
    check_model_early(str(cfg.model))
    if not Path(str(cfg.images)).expanduser().exists():
        raise UserError(f"images={cfg.images}: no such file or folder; give the folder of images to choose from.")
    if cfg.data.kind == "folder":
        check_data_early(cfg.data)

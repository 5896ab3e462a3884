"""Checks of paths on the command line that cost no torch import: the run dir, `resume=true`, model dirs.

Each mistake is one line naming the setting and the fix, before Hydra creates a run dir or torch loads.
"""

from __future__ import annotations

import os
from pathlib import Path

from transfer.errors import UserError
from transfer.training.config import TrainerConfig

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

"""Rank helpers: under DDP every rank runs the pipeline; only rank 0 writes model dirs and reports, and prints."""

from __future__ import annotations

import os


def global_rank() -> int:
    """This process's rank (0 without DDP), read the way Lightning's launchers set it."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def is_rank_zero() -> bool:
    return global_rank() == 0

"""Ranks under DDP, one answer everywhere: every rank runs the pipeline; rank 0 alone writes model dirs and reports,
and prints. Inside a process group torch.distributed is asked; before one exists (Lightning's launchers set the
environment first), the launcher's variables are read. Sharding is a pure function, testable without a group."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def _env_int(*names: str, default: int) -> int:
    for var in names:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return default


def dist_info() -> tuple[int, int]:
    """(rank, world_size): torch.distributed's when a group is initialised, else the launcher's environment."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return _env_int("RANK", "SLURM_PROCID", "LOCAL_RANK", default=0), _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)


def global_rank() -> int:
    """This process's rank (0 without DDP)."""
    return dist_info()[0]


def is_rank_zero() -> bool:
    return global_rank() == 0


def shard_for_rank(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items rank `rank` of `world_size` handles: disjoint across ranks, together all of them."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    return list(items[rank::world_size])


def barrier(world_size: int) -> None:
    """Wait for every rank (a no-op in a single process or before a process group exists)."""
    if world_size <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()

"""Sharding extraction across DDP ranks: each rank extracts every world_size-th missing image; rank 0 writes
the set manifest. The sharding is a pure function so it is testable without a process group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def shard_for_rank(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items rank `rank` of `world_size` handles: disjoint across ranks, together all of them."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    return list(items[rank::world_size])


def dist_info() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier(world_size: int) -> None:
    """Wait for every rank (a no-op in a single process)."""
    if world_size <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()

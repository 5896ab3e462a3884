"""Samplers: the training order as a function of (seed, epoch), and a validation sampler for DDP.

`EpochShuffle` draws epoch e's order, and a seed for each image's augmentation, from (seed, e) alone, so epoch e is
the same whether the process ran epochs 0..e-1 itself or resumed from a checkpoint after a kill (a sampler that keeps
drawing from one generator starts over after a restart, and persistent workers' random streams do too).

Lightning's default DistributedSampler pads an uneven set by repeating its first images (5 images on 2 ranks become
6), so the synced val/acc has the wrong denominator (1/6 where the truth is 1/5). `UnpaddedDistributedSampler` hands
rank r the images r, r + W, r + 2W, ... and nothing twice. Being a DistributedSampler subclass, Lightning keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler

from transfer.distributed import shard_for_rank


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for epoch `epoch` of a run seeded `seed`: every random draw of that epoch starts from it."""
    state = np.random.SeedSequence([int(seed) % 2**63, int(epoch)]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


class EpochShuffle(Sampler):
    """A permutation of range(n) per epoch, drawn from (seed, epoch); yields (index, augmentation seed) keys for
    TransformDataset. Lightning calls `set_epoch` before each epoch (DistributedSampler's protocol); under DDP it
    wraps this sampler and shards its order."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=gen).tolist()
        seeds = torch.randint(0, 2**62, (self.n,), generator=gen).tolist()  # one per image, whatever its position
        for i in order:
            yield i, seeds[i]


class UnpaddedDistributedSampler(DistributedSampler):
    """Disjoint, in-order shards without padding: together the ranks see every index exactly once.

    With fewer items than ranks a rank would get none and skip the epoch-end metric sync (a hang), so then every
    rank takes every item: each image counts `world_size` times, equally weighted, so the metrics stay exact."""

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.indices = unpadded_shard(len(dataset), self.rank, self.num_replicas)
        self.num_samples = len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def unpadded_shard(n: int, rank: int, world_size: int) -> list[int]:
    """The indices of `n` items rank `rank` evaluates: a strided shard, or all of them when n < world_size."""
    if n < world_size:
        return list(range(n))
    return shard_for_rank(range(n), rank, world_size)

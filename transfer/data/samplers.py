"""A validation sampler for DDP that counts every image exactly once.

Lightning's default DistributedSampler pads an uneven set by repeating its first images (5 images on 2 ranks become
6), so the synced val/acc has the wrong denominator (1/6 where the truth is 1/5). This sampler hands rank r the
images r, r + W, r + 2W, ... and nothing twice. Being a DistributedSampler subclass, Lightning keeps it as it is.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DistributedSampler

from transfer.distributed import shard_for_rank


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

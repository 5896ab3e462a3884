"""FeatureCache: features of a frozen backbone for a set of images and views, extracted once, then served from disk.

Keyed by everything that changes them (see `key.py`): model name + weight digest + library versions (+ the digest of a
user backbone's source files), the preprocessing, the view, the stage and the dtype name a namespace; each image's
pixel digest addresses a row in it. Only digests missing from a namespace are extracted, so an added image extracts
that image alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from transfer.backbones.base import Backbone
from transfer.data.config import AugmentConfig
from transfer.data.labelled import LabelledImages
from transfer.distributed import barrier, dist_info, shard_for_rank
from transfer.features.config import FeatureConfig
from transfer.features.extract import extract_views
from transfer.features.key import FORMAT, code_digest, digest_of, library_versions, weights_digest
from transfer.features.store import MemoryStore, ShardStore
from transfer.features.tap import FeatureTap, PairTap
from transfer.features.views import describe_view, resolve_views

log = logging.getLogger("transfer.features")


@dataclass
class CacheStats:
    """What one `features()` call did: rows found vs extracted per view, and extraction speed."""

    requested: int = 0  # images x views asked for
    hits: int = 0
    extracted: int = 0
    seconds: float = 0.0
    namespaces: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        if self.extracted == 0:
            return f"feature cache hit: {self.hits} of {self.requested} image-views"
        return (
            f"feature cache: {self.hits} of {self.requested} image-views cached, extracted {self.extracted} "
            f"in {self.seconds:.1f}s ({self.images_per_second:.0f} images/s)"
        )


def describe_key_record(rec: dict | None) -> str:
    """One line for a `FeatureCache.key_record`: the folder(s) a frozen run's features are in, or 'in memory'."""
    if not rec:
        return "none (no regime ran on cached features)"
    names = list((rec.get("namespaces") or {}).values())
    if rec.get("dir") is None:
        return f"in memory (features.enabled=false), key {rec.get('key')}"
    return f"{rec['dir']}: {', '.join(names)}"


class FeatureCache:
    """Serve N x K x D features of `backbone` (frozen, eval mode) for images x views."""

    def __init__(
        self,
        backbone: Backbone,
        cfg: FeatureConfig | None = None,
        device: str | torch.device = "cpu",
        augment: AugmentConfig | None = None,
    ) -> None:
        self.cfg = cfg or FeatureConfig()
        self.backbone = backbone
        self.device = torch.device(device)
        self.augment = augment or AugmentConfig()
        self.tap = FeatureTap(backbone, self.cfg.stage)
        self.model_key = {
            "format": FORMAT,
            "backbone": getattr(backbone, "name", type(backbone).__name__),
            "weights_sha256": weights_digest(backbone),
            "versions": library_versions(),
            "preprocessing": backbone.preprocessing.to_dict(),
            "stage": self.tap.stage,
            "dtype": self.cfg.dtype,
        }
        code = code_digest(backbone)
        if code:  # a user's backbone: its code, not only its weights, makes the features
            self.model_key["code"] = code
        self._memory: dict[str, MemoryStore] = {}
        self.last = CacheStats()

    def views(self) -> list[str]:
        return resolve_views(self.cfg.views, self.augment)

    def key_record(self, views: list[str] | None = None) -> dict:
        """Where this body's features live and what addresses them (model cards, the report, the terminal): the
        cache root (None: in memory), the model key's digest, and each view's namespace (its folder under the root)."""
        views = list(dict.fromkeys(["center", *(views or self.views())]))  # evaluation always reads the centre view
        return {
            "dir": str(self.cfg.directory()) if self.cfg.enabled else None,
            "key": digest_of(self.model_key),
            "namespaces": {v: self.namespace(v)[0] for v in views},
        }

    def namespace(self, view: str) -> tuple[str, dict]:
        meta = {**self.model_key, "view": describe_view(view, self.augment)}
        return f"{meta['backbone'].replace('/', '_')}-{digest_of(meta)}", meta

    def store(self, view: str) -> ShardStore | MemoryStore:
        ns, meta = self.namespace(view)
        if not self.cfg.enabled:
            return self._memory.setdefault(ns, MemoryStore())
        return ShardStore(self.cfg.directory(), ns, meta, self.cfg.dtype)

    def features(
        self,
        images: LabelledImages,
        views: list[str] | None = None,
        digests: list[str] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> torch.Tensor:
        """N x K x D float32 for `images` and `views` (default: the configured views), extracting what is missing.

        Under torch.distributed (or with explicit rank/world_size) each rank extracts its share of the missing
        images and commits its own shards; all ranks then read the union.
        """
        views = views or self.views()
        digests = digests if digests is not None else images.digests()
        if rank is None or world_size is None:
            rank, world_size = dist_info()
        stats = CacheStats(requested=len(digests) * len(views))
        out = []
        for view in views:
            store = self.store(view)
            stats.namespaces.append(self.namespace(view)[0])
            index = store.index()
            if world_size > 1 or any(d not in index for d in digests):  # every rank meets the same barriers
                before = stats.extracted
                index = self._fill(store, view, images, digests, rank, world_size, stats)
                stats.hits += len(digests) - (stats.extracted - before)  # found, or committed by another process
            else:
                stats.hits += len(digests)
            out.append(store.read(digests, index) if digests else np.empty((0, 0), np.float32))
        self.last = stats
        log.info("%s", stats.describe())
        if not digests:
            return torch.empty(0, len(views), 0)
        return torch.from_numpy(np.stack(out, axis=1))  # N x K x D

    def with_stage(self, images: LabelledImages, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(N x D centre-view features of this cache's tap, N x C of `stage`'s), both cached under their own keys;
        when both are missing for the same images (and one process extracts) they come from ONE forward pass."""
        other = FeatureCache(self.backbone, replace(self.cfg, stage=stage), self.device, self.augment)
        digests = images.digests()
        mine, theirs = self.store("center"), other.store("center")
        missing = [d for d in dict.fromkeys(digests) if d not in mine.index()]
        if missing and self.tap.stage == "pooled" and dist_info()[1] == 1:
            with mine.lock(), theirs.lock():
                held = theirs.index()
                if all(d not in held for d in missing):
                    first = {d: i for i, d in reversed(list(enumerate(digests)))}
                    rows = [first[d] for d in missing]
                    start = time.perf_counter()
                    both = self._run(PairTap(self.backbone, stage), images, "center", rows, missing)
                    width = int(self.backbone.num_features)
                    mine.commit(missing, both[:, :width].numpy())
                    theirs.commit(missing, both[:, width:].numpy())
                    log.info("features: %d images, penultimate and %s in one pass (%.1fs)", len(missing), stage,
                             time.perf_counter() - start)  # fmt: skip
        return self.features(images, ["center"], digests)[:, 0], other.features(images, ["center"], digests)[:, 0]

    def _fill(self, store, view, images, digests, rank, world_size, stats) -> dict:
        self.extract_share(store, view, images, digests, rank, world_size, stats)
        if world_size > 1:
            barrier(world_size)  # every rank has committed its share; whatever a dead rank left, we extract
            self.extract_share(store, view, images, digests, 0, 1, stats)
        return store.index()

    def extract_share(self, store, view, images, digests, rank: int, world_size: int, stats: CacheStats) -> None:
        """Extract this rank's share (every world_size-th) of the digests missing from `store`, under its lock."""
        order: dict[str, int] = {}
        for i, d in enumerate(digests):
            order.setdefault(d, i)  # the first row holding each digest
        with store.lock():
            index = store.index()  # another process may have finished while we waited
            mine = shard_for_rank([d for d in order if d not in index], rank, world_size)
            if mine:
                start = time.perf_counter()
                self._extract(store, view, images, [order[d] for d in mine], mine)
                stats.seconds += time.perf_counter() - start
                stats.extracted += len(mine)

    def _extract(self, store, view: str, images: LabelledImages, rows: list[int], digests: list[str]) -> None:
        chunk = int(self.cfg.chunk)
        for lo in range(0, len(rows), chunk):
            feats = self._run(self.tap, images, view, rows[lo : lo + chunk], digests[lo : lo + chunk], len(rows), lo)
            store.commit(digests[lo : lo + chunk], feats.numpy())

    def _run(self, tap, images, view: str, rows: list[int], digests: list[str], total: int = 0, lo: int = 0):
        """N x D features of `tap` for images[rows] (one view), the body in eval mode."""
        return extract_views(
            tap,
            images.pixels[torch.as_tensor(rows, dtype=torch.long)],
            view,
            self.backbone.preprocessing,
            self.augment,
            [int(d[:15], 16) for d in digests],
            batch_size=int(self.cfg.batch_size),
            device=self.device,
            progress=self.cfg.progress,
            desc=f"features {view} {lo + len(rows)}/{total or len(rows)}",
        )

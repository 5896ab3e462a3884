"""`features.*`: where the feature cache lives, what it stores (dtype, views, stage) and whether it is used.
Torch-free: checked before torch loads."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transfer.errors import UserError, check_at_least, check_choice, whole_number

DTYPES = ("float32", "float16")
NAMED_VIEWS = ("auto", "1", "flip", "10crop")


@dataclass
class FeatureConfig:
    enabled: bool = True  # false: extract in memory once per run, write nothing
    cache_dir: str | None = None  # None: $XDG_CACHE_HOME/transfer/features (~/.cache/transfer/features)
    dtype: str = "float32"  # float16 halves the disk; heads train on float32 copies either way
    # 1: the centre view | auto: the centre and its mirror extracted, the frozen head keeps the mirror rows only when
    # cross-validation says they help | flip | 10crop | K (an int >= 2: K random augmentations). 1 by default: the
    # mirror rows helped on one of three real sets measured and cost a second extraction pass (docs/benchmarks.md)
    views: Any = "1"
    stage: str | None = None  # None / "pooled": the penultimate layer; a stage or module name: its output, GAP-pooled
    batch_size: int = 64
    chunk: int = 512  # images per committed shard: a killed extraction keeps every finished chunk
    progress: bool = True
    probe: bool = False  # command=features: also train the configured head on the cached features and report accuracy
    probe_lrs: list[float] | None = None  # command=features: a linear head per rate, all trained in one pass

    def __post_init__(self) -> None:
        check_choice("features.dtype", self.dtype, DTYPES)
        check_at_least("features.batch_size", self.batch_size, 1)
        check_at_least("features.chunk", self.chunk, 1)
        k = whole_number(self.views)
        if str(self.views) not in NAMED_VIEWS and (k is None or k < 2):
            raise UserError(
                f"features.views={self.views!r}: choose auto, 1, flip, 10crop, or an integer K >= 2 "
                "(K random augmentations)."
            )

    def directory(self) -> Path:
        """The cache root: `cache_dir`, else the user's cache dir (XDG)."""
        if self.cache_dir not in (None, "", "null"):
            return Path(str(self.cache_dir)).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "transfer" / "features"

    def beside(self, name: str) -> Path | None:
        """A cache of other results next to the features (`sources`: source models, `duplicates`: duplicate pairs);
        None when caching is off (features.enabled=false)."""
        return self.directory().parent / name if self.enabled else None

    def to_dict(self) -> dict:
        return asdict(self)

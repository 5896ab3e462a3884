"""FeatureConfig: where the feature cache lives, what it stores (dtype, views, stage) and whether it is used."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from transfer.errors import UserError

DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class FeatureConfig:
    """Plain values (no Hydra): `fit_classifier` and `command=features` receive one of these."""

    enabled: bool = True  # false: extract in memory once per run, write nothing
    cache_dir: str | None = None  # None: $XDG_CACHE_HOME/transfer/features (~/.cache/transfer/features)
    dtype: str = "float32"  # float16 halves the disk; heads train on float32 copies either way
    views: str | int = "auto"  # auto | 1 | flip | 10crop | K (an int >= 2: K random augmentations per image)
    stage: str | None = None  # None / "pooled": the penultimate layer; a stage or module name: its output, GAP-pooled
    batch_size: int = 64
    chunk: int = 512  # images per committed shard: a killed extraction keeps every finished chunk
    progress: bool = True
    probe: bool = False  # command=features: also train the configured head on the cached features and report accuracy
    probe_lrs: list[float] | None = None  # command=features: a linear head per rate, all trained in one pass

    @classmethod
    def from_dict(cls, d: dict | None) -> FeatureConfig:
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"features.{unknown[0]}: unknown key; accepted: {', '.join(sorted(known))}.")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise UserError(f"features.dtype={self.dtype!r}: choose one of {', '.join(DTYPES)}.")
        if int(self.batch_size) < 1 or int(self.chunk) < 1:
            raise UserError("features.batch_size and features.chunk must be >= 1.")

    def directory(self) -> Path:
        """The cache root: `cache_dir`, else the user's cache dir (XDG)."""
        if self.cache_dir not in (None, "", "null"):
            return Path(str(self.cache_dir)).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "transfer" / "features"

    def to_dict(self) -> dict:
        return asdict(self)

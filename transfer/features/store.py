"""Per-namespace feature storage on disk: shards of rows addressed by image digest, each committed atomically.

Layout: `<cache_dir>/<namespace>/shard-<id>.npy` (rows x D, memory-mapped on read) and `shard-<id>.json` (its
manifest: digests in row order), plus `key.json` (what the namespace is, for humans) and `.lock`.
A shard counts only once its manifest exists, and the manifest is written last (temp file, fsync, rename), so
a killed extraction leaves at most ignored temp files; every finished shard before it is reused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from transfer.errors import UserError
from transfer.features.key import FORMAT

log = logging.getLogger(__name__)


def cache_error(root: Path, action: str, e: OSError) -> UserError:
    why = e.strerror or str(e)
    return UserError(
        f"features.cache_dir={root}: cannot {action} ({why}). Pass features.cache_dir=<a writable folder with free "
        "space>, or features.enabled=false to keep features in memory."
    )


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem lets a directory be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, write) -> None:
    """`write(fileobj)` into a temp file beside `path`, fsync it, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


class ShardStore:
    """Features of one (model, preprocessing, view, stage, dtype) namespace."""

    def __init__(self, root: Path, namespace: str, meta: dict, dtype: str = "float32") -> None:
        self.root = root  # the user's cache_dir, named in errors
        self.dir = root / namespace
        self.namespace = namespace
        self.meta = meta
        self.dtype = dtype
        self._maps: dict[str, np.ndarray] = {}

    def index(self) -> dict[str, tuple[str, int]]:
        """digest -> (shard file, row) over every committed, valid shard; anything else is ignored."""
        out: dict[str, tuple[str, int]] = {}
        if not self.dir.is_dir():
            return out
        for manifest in sorted(self.dir.glob("shard-*.json")):
            try:
                m = json.loads(manifest.read_text(encoding="utf-8"))
                if m.get("format") != FORMAT or m.get("namespace") != self.namespace:
                    continue
                arr = self._map(m["file"])
                if arr.shape != (len(m["hashes"]), int(m["dim"])):
                    continue
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("feature cache: ignoring unreadable shard %s (%s)", manifest, e)
                continue
            for row, h in enumerate(m["hashes"]):
                out.setdefault(h, (m["file"], row))
        return out

    def _map(self, file: str) -> np.ndarray:
        if file not in self._maps:
            self._maps[file] = np.load(self.dir / file, mmap_mode="r", allow_pickle=False)
        return self._maps[file]

    def read(self, digests: list[str], index: dict[str, tuple[str, int]]) -> np.ndarray:
        """len(digests) x D float32, gathered from the memory-mapped shards."""
        rows: dict[str, list[tuple[int, int]]] = {}
        for i, d in enumerate(digests):
            file, row = index[d]
            rows.setdefault(file, []).append((i, row))
        dim = int(self._map(next(iter(rows))).shape[1]) if rows else 0
        out = np.empty((len(digests), dim), dtype=np.float32)
        for file, pairs in rows.items():
            dst, src = zip(*pairs, strict=True)
            out[list(dst)] = self._map(file)[list(src)]
        return out

    def commit(self, digests: list[str], features: np.ndarray) -> None:
        """Write one shard: array first, manifest last; both atomic."""
        shard = f"shard-{uuid.uuid4().hex[:16]}"
        array = np.ascontiguousarray(features.astype(self.dtype, copy=False))
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            key = self.dir / "key.json"
            if not key.exists():
                atomic_write(key, lambda f: f.write(json.dumps(self.meta, indent=2, sort_keys=True).encode()))
            atomic_write(self.dir / f"{shard}.npy", lambda f: np.save(f, array, allow_pickle=False))
            manifest = {
                "format": FORMAT,
                "namespace": self.namespace,
                "file": f"{shard}.npy",
                "dim": int(array.shape[1]),
                "dtype": self.dtype,
                "hashes": list(digests),
            }
            atomic_write(self.dir / f"{shard}.json", lambda f: f.write(json.dumps(manifest).encode()))
        except OSError as e:
            raise cache_error(self.root, f"write {self.dir}", e) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across processes (fcntl); two extractions of one namespace take turns, the second then hits."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise cache_error(self.root, f"create {self.dir}", e) from None
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # no fcntl (Windows): atomic renames alone keep readers safe
                pass
            self._remove_stale_temps()
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _remove_stale_temps(self) -> None:
        for tmp in self.dir.glob(".*.tmp"):
            parts = tmp.name.split(".")
            pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
            if pid is None or not _alive(pid):
                with contextlib.suppress(OSError):
                    tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MemoryStore:
    """The same interface in RAM: `features.enabled=false` (nothing written, features live for one run)."""

    def __init__(self) -> None:
        self.rows: dict[str, np.ndarray] = {}

    def index(self) -> dict[str, tuple[str, int]]:
        return {d: ("memory", 0) for d in self.rows}

    def read(self, digests: list[str], index: dict[str, tuple[str, int]]) -> np.ndarray:
        if not digests:
            return np.empty((0, 0), dtype=np.float32)
        return np.stack([self.rows[d] for d in digests]).astype(np.float32, copy=False)

    def commit(self, digests: list[str], features: np.ndarray) -> None:
        for d, row in zip(digests, features, strict=True):
            self.rows[d] = np.asarray(row, dtype=np.float32)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        yield

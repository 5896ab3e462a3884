"""Per-namespace feature storage on disk: shards of rows addressed by image digest, each committed atomically.

Layout: `<cache_dir>/<namespace>/shard-<id>.npy` (rows x D, memory-mapped on read) and `shard-<id>.json` (its
manifest: digests in row order, the sha256 of the .npy bytes), plus `key.json` (the namespace, for humans) and `.lock`.
A shard counts only once its manifest exists, and the manifest is written last (temp file, fsync, rename), so
a killed extraction leaves at most ignored temp files; every finished shard before it is reused.
On first read each shard's bytes are checked against its sha256 and its rows for NaN/inf: a damaged shard is
deleted with one warning and its rows are extracted again, never served.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from transfer.atomic import crash_point
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
        self._checked: set[str] = set()  # shard files whose bytes and values were verified by this store

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
                damage = self._damage(m, arr)
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("feature cache: ignoring unreadable shard %s (%s)", manifest, e)
                continue
            if damage:
                self._drop(manifest, m["file"], damage)
                continue
            for row, h in enumerate(m["hashes"]):
                out.setdefault(h, (m["file"], row))
        return out

    def _damage(self, m: dict, arr: np.ndarray) -> str | None:
        """Why shard `m` must not be served (bytes differ from the recorded sha256, or non-finite rows), else None."""
        file = m["file"]
        if file in self._checked:
            return None
        if "sha256" not in m:
            return "no sha256 recorded (written by an older version)"
        with open(self.dir / file, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
        if actual != m["sha256"]:
            return f"its bytes changed since it was written (sha256 {actual[:12]}, recorded {m['sha256'][:12]})"
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            return f"{int((~finite).sum())} of {len(finite)} rows hold NaN or inf"
        self._checked.add(file)
        return None

    def _drop(self, manifest: Path, file: str, why: str) -> None:
        """Delete a damaged shard (manifest first, so it stops counting at once); its rows get extracted again."""
        log.warning("feature cache: dropping shard %s: %s; its rows will be extracted again", self.dir / file, why)
        self._maps.pop(file, None)
        for path in (manifest, self.dir / file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

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
        with np.errstate(over="ignore"):  # float16 overflow becomes inf, refused just below with its fix
            array = np.ascontiguousarray(features.astype(self.dtype, copy=False))
        bad = ~np.isfinite(array).all(axis=1) if array.ndim == 2 else np.zeros(0, bool)
        if bad.any():
            overflow = self.dtype == "float16" and np.isfinite(features[bad]).all()
            raise UserError(
                f"features.cache_dir={self.root}: {int(bad.sum())} of {len(array)} extracted feature rows hold NaN "
                f"or inf (first image digest {digests[int(np.argmax(bad))]}); nothing was cached. "
                + (
                    "They overflow float16: set features.dtype=float32."
                    if overflow
                    else "The backbone's output diverges: check backbone.weights, or use features.dtype=float32."
                )
            )
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        data = buf.getvalue()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            key = self.dir / "key.json"
            if not key.exists():
                atomic_write(key, lambda f: f.write(json.dumps(self.meta, indent=2, sort_keys=True).encode()))
            atomic_write(self.dir / f"{shard}.npy", lambda f: f.write(data))
            manifest = {
                "format": FORMAT,
                "namespace": self.namespace,
                "file": f"{shard}.npy",
                "sha256": hashlib.sha256(data).hexdigest(),
                "dim": int(array.shape[1]),
                "dtype": self.dtype,
                "hashes": list(digests),
            }
            atomic_write(self.dir / f"{shard}.json", lambda f: f.write(json.dumps(manifest).encode()))
        except OSError as e:
            raise cache_error(self.root, f"write {self.dir}", e) from None
        crash_point("features.shard")

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

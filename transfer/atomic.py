"""Write a file whole or not at all: a temp name in the same folder, fsync, os.replace, fsync the folder.

A kill at any moment leaves the previous file or the new one, never half of one, so a later run (or `resume=true`)
can trust whatever file it finds. Files get the user's umask (mkstemp alone makes them 0600). Kept at the bottom
layer so that data/ (scan_report.json) and eval/ (metrics, plots, report.html) share one implementation.

Two helpers for whole folders live here too, for every layer: `recover_dir` puts back what a kill inside a folder
install (model/model_dir.py) left, and `crash_point` is the fault-injection hook the kill tests use.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

CRASH_ENV = "TRANSFER_CRASH_AT"
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """A fault-injection hook for tests (SQLite's crash tests, in small): when the environment variable
    TRANSFER_CRASH_AT is `name`, or `name:N`, this process kills itself with SIGKILL the first (N-th) time it gets
    here, a real kill -9: no finally, no atexit, no flush. Unset it costs one environment lookup.

    The points: features.shard (a feature shard committed), training.epoch_checkpoint (an epoch's checkpoint
    written), model_dir.before_rename (a model dir complete in its temp sibling), model_dir.between_renames (the
    previous dir moved aside, the new one not yet in), model_dir.copy (a file of a model dir copied)."""
    want = os.environ.get(CRASH_ENV)
    if not want:
        return
    point, _, nth = want.partition(":")
    if point != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _pid_of(leftover: Path, kind: str) -> int | None:
    """The pid in a `.<name>.<kind>-<pid>-<hex>` sibling (None when the name holds none)."""
    rest = leftover.name.rpartition(f".{kind}-")[2]
    pid = rest.split("-")[0]
    return int(pid) if pid.isdigit() else None


def recover_dir(path: str | Path) -> None:
    """Clean up after a process killed while installing the folder `path` as a temp sibling + two renames.

    Siblings `.<name>.tmp-<pid>-*` (being filled) and `.<name>.old-<pid>-*` (the previous folder, moved aside for a
    moment) of processes that are gone: when `path` is missing the newest such old folder is the previous complete
    one and goes back into place; every other leftover is removed. A live process's siblings are left alone."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    dead: dict[str, list[Path]] = {"tmp": [], "old": []}
    for kind in dead:
        for leftover in path.parent.glob(f".{path.name}.{kind}-*"):
            pid = _pid_of(leftover, kind)
            if pid is None or (pid != os.getpid() and not _pid_alive(pid)):
                dead[kind].append(leftover)
    olds = sorted(dead["old"], key=_mtime, reverse=True)
    if olds and not path.exists():
        with contextlib.suppress(OSError):  # another process (a DDP rank resuming too) may have put it back first
            os.rename(olds[0], path)
            fsync_dir(path.parent)
        olds = olds[1:]
    for leftover in dead["tmp"] + olds:
        shutil.rmtree(leftover, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def user_umask() -> int:
    """The process's umask (read without changing it for good)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | Path) -> None:
    """fsync a folder (a rename inside it survives a crash) or a file; a no-op where that is not possible."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """`write(binary file)` into a hidden temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~user_umask())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: no temp file is left behind
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """UTF-8 text, newlines as given (CSV writers pass their own \\r\\n)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_figure_atomic(fig, path: str | Path, **savefig_kwargs) -> Path:
    """A matplotlib figure as PNG (or the suffix's format), rendered in memory first, then written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)
    return write_bytes_atomic(path, buf.getvalue())

"""Scan an image folder into a manifest: which files are usable images, their classes and splits, and what was refused.

Every candidate file is read and fully decoded once (threads: Pillow and hashlib release the GIL). Bad files are
skipped and listed with their reason, or with strict=True the first one stops the scan; nothing is ever
substituted. Hidden folders (`.ipynb_checkpoints`), `.DS_Store`, `Thumbs.db` and `._` sidecars are never classes
or samples.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transfer.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
SPLIT_NAMES = ("train", "val", "test")
IMBALANCE_RATIO = 3.0  # largest / smallest class above this: warned


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    split: str | None = None  # "train" / "val" / "test" when the folder says so
    digest: str = ""  # sha1 of the file's bytes (EXIF included, so orientation is part of any cache key)


@dataclass(frozen=True)
class Refused:
    path: str
    reason: str


@dataclass
class Manifest:
    root: str
    classes: list[str]
    samples: list[Sample]
    refused: list[Refused] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)  # reason -> count (junk files, other file types)
    notes: dict[str, int] = field(default_factory=dict)  # what decoding had to do -> count (animated, 16-bit, ...)
    duplicates: list[list[str]] = field(default_factory=list)  # groups of byte-identical files
    warnings: list[str] = field(default_factory=list)

    def paths(self, split: str | None = None) -> list[str]:
        return [s.path for s in self.samples if split is None or s.split == split]

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        counts = {c: 0 for c in self.classes}
        for s in self.samples:
            if split is None or s.split == split:
                counts[self.classes[s.label]] += 1
        return counts

    def splits(self) -> list[str]:
        return [s for s in SPLIT_NAMES if any(x.split == s for x in self.samples)]

    def to_json(self) -> str:
        d = asdict(self)
        d["class_counts"] = {s or "all": self.class_counts(s) for s in [None, *self.splits()]}
        d["refused_count"] = len(self.refused)
        return json.dumps(d, indent=2, ensure_ascii=False)

    def summary(self) -> str:
        parts = ", ".join(f"{c}: {n}" for c, n in self.class_counts().items())
        text = f"{len(self.samples)} images in {len(self.classes)} classes ({parts})"
        if self.refused:
            text += f"; {len(self.refused)} files refused (see scan_report.json)"
        return text

    def report(self, limit: int = 10) -> str:
        """The multi-line scan report printed before training: counts per class and split, refusals, warnings."""
        lines = [f"scan of {self.root}: {len(self.samples)} images in {len(self.classes)} classes"]
        for split in self.splits() or [None]:
            counts = self.class_counts(split)
            lines.append(f"  {split or 'all'}: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
        if self.refused:
            lines.append(f"  refused {len(self.refused)} files:")
            lines += [f"    {r.path}: {r.reason}" for r in self.refused[:limit]]
            if len(self.refused) > limit:
                lines.append(f"    ... {len(self.refused) - limit} more in scan_report.json")
        if self.ignored:
            lines.append("  ignored: " + ", ".join(f"{k} {n}" for k, n in sorted(self.ignored.items())))
        if self.notes:
            lines.append("  converted: " + ", ".join(f"{k} {n}" for k, n in sorted(self.notes.items())))
        if self.duplicates:
            n = sum(len(g) for g in self.duplicates)
            groups = len(self.duplicates)
            lines.append(f"  identical files: {n} in {groups} group(s) (a seeded split keeps each group on one side)")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def natural_key(name: str) -> tuple:
    """'2' before '10'; case-insensitive; stable."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t) + (name,)


def nfc(name: str) -> str:
    """macOS writes names decomposed (NFD); compare and store them composed so 'café' is one class."""
    return unicodedata.normalize("NFC", name)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def class_dirs(root: Path) -> list[Path]:
    dirs = (d for d in root.iterdir() if d.is_dir() and not _is_hidden(d.name) and d.name != "__MACOSX")
    return sorted(dirs, key=lambda d: natural_key(nfc(d.name)))


def _ignore_reason(name: str) -> str | None:
    low = name.lower()
    if name.startswith("._"):
        return "AppleDouble sidecar (._*)"
    if low in JUNK_NAMES:
        return "system file (.DS_Store, Thumbs.db, ...)"
    if _is_hidden(name):
        return "hidden file"
    suffix = os.path.splitext(low)[1]
    if suffix not in IMAGE_SUFFIXES:
        return f"unsupported type {suffix or '(no extension)'}"
    return None


def _walk(top: Path, ignored: Counter, refused: list[Refused]) -> list[Path]:
    """Image candidates under `top`, following symbolic links; each real folder is visited once.

    A link back to a folder already visited (a loop, or a second path to the same files) and a link whose
    target is missing are listed in `refused` with their reason instead of hanging or vanishing.
    """
    out: list[Path] = []
    seen: set[str] = set()

    def visit(here: Path) -> None:
        seen.add(os.path.realpath(here))
        try:
            entries = sorted(os.scandir(here), key=lambda e: natural_key(nfc(e.name)))
        except OSError as e:
            refused.append(Refused(str(here), f"cannot list folder: {e.strerror or e}"))
            return
        for entry in entries:
            path = Path(entry.path)
            link = entry.is_symlink()
            if link and not os.path.exists(path):
                target = os.readlink(path)
                real = os.path.realpath(path)
                why = "symbolic link loop" if real in seen or os.path.islink(real) else "broken symbolic link"
                refused.append(Refused(str(path), f"{why} (points to {target}, which cannot be opened)"))
            elif entry.is_dir():
                if _is_hidden(entry.name) or entry.name == "__MACOSX":
                    ignored["hidden folder"] += 1
                elif link and os.path.realpath(path) in seen:
                    real, inside = os.path.realpath(path), os.path.realpath(here)
                    loop = inside == real or inside.startswith(real.rstrip(os.sep) + os.sep)
                    what = "symbolic link loop" if loop else "symbolic link to a folder already scanned"
                    refused.append(Refused(str(path), f"{what} (points to {real}; its files are counted once)"))
                else:
                    visit(path)
            else:
                reason = _ignore_reason(entry.name)
                if reason:
                    ignored[reason] += 1
                else:
                    out.append(path)

    visit(top)
    return out


def walk_image_files(top: str | Path) -> tuple[list[Path], list[Refused]]:
    """Image candidates under `top` (links followed, loops and broken links refused), in natural order."""
    refused: list[Refused] = []
    files = _walk(Path(top), Counter(), refused)
    return sorted(files, key=lambda p: natural_key(nfc(str(p)))), refused


def files_under(cdir: Path, ignored: Counter, refused: list[Refused] | None = None) -> list[Path]:
    """Image candidates under a class folder (recursively, links followed), hidden folders pruned and counted."""
    out = _walk(cdir, ignored, refused if refused is not None else [])
    return sorted(out, key=lambda p: natural_key(nfc(str(p))))


def _refusal(path: Path, data: bytes, e: Exception) -> str:
    from PIL import Image, UnidentifiedImageError

    if not data:
        return "empty file (0 bytes)"
    from transfer.data.images import CorruptImageError

    if isinstance(e, CorruptImageError):
        return str(e)
    if isinstance(e, Image.DecompressionBombError):
        return f"decompression bomb: {e}"
    if isinstance(e, UnidentifiedImageError):
        return f"not a readable image (unknown format or corrupt header despite the {path.suffix} extension)"
    if "truncat" in str(e).lower():
        return f"truncated (half-written or cut-off file): {e}"
    return f"cannot decode: {type(e).__name__}: {e}"


def _decode_one(
    path: Path, channels: int, draft_size: tuple[int, int] | None, prepare: Callable | None
) -> tuple[str | None, str, list[str], Any]:
    """(refusal reason or None, sha1, decode notes, prepare(image) or None) for one file."""
    from transfer.data.images import open_image

    try:
        data = path.read_bytes()
    except OSError as e:
        return f"cannot read: {e}", "", [], None
    digest = hashlib.sha1(data).hexdigest()
    try:
        if not data:
            raise ValueError("empty")
        img, notes = open_image(data, channels, draft_size)
        return None, digest, notes, prepare(img) if prepare else None
    except Exception as e:  # noqa: BLE001  -- every decode failure is a refusal with its reason
        return _refusal(path, data, e), digest, [], None


def _decoded(jobs: list[Path], workers: int, fn: Callable) -> Iterator[tuple]:
    """fn over jobs, results in order (so strict mode names the first bad file in sorted order)."""
    if workers <= 1 or len(jobs) < 8:
        yield from map(fn, jobs)
        return
    pool = ThreadPoolExecutor(workers)
    try:
        yield from pool.map(fn, jobs, chunksize=4)
    finally:  # a strict stop closes this early: the files not yet decoded are dropped, not waited for
        pool.shutdown(wait=True, cancel_futures=True)


def layout(root: Path) -> list[tuple[str | None, Path]]:
    split_dirs = [root / s for s in SPLIT_NAMES if (root / s).is_dir()]
    return [(d.name, d) for d in split_dirs] if split_dirs else [(None, root)]


def scan_image_folder(
    root: str | Path,
    strict: bool = False,
    *,
    channels: int = 3,
    draft_size: tuple[int, int] | None = None,
    prepare: Callable[[Any], Any] | None = None,
    store: Callable[[int, Any], None] | None = None,
    workers: int | None = None,
) -> Manifest:
    """Read `root/<class>/*` or `root/{train,val,test}/<class>/*`; every image is fully decoded once.

    `prepare(image)` (run in a decode thread) and `store(sample_index, prepared)` (in order) let the caller keep
    pixels from this single decode instead of decoding again (see `pixels.scan_and_decode`).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.root={root}: no such folder. Point data.root at a folder with one sub-folder per class.")
    splits = layout(root)
    class_names = sorted({nfc(d.name) for _, base in splits for d in class_dirs(base)}, key=natural_key)
    if len(class_names) < 2:
        raise UserError(
            f"data.root={root}: found {len(class_names)} class folder(s) {class_names}; need at least 2, "
            "one sub-folder per class (root/<class>/image.jpg)."
        )
    index = {c: i for i, c in enumerate(class_names)}
    ignored: Counter = Counter()
    for _, base in splits:  # .ipynb_checkpoints, .git, __MACOSX next to the classes: counted, never a class
        hidden = [d for d in base.iterdir() if d.is_dir() and (_is_hidden(d.name) or d.name == "__MACOSX")]
        ignored["hidden folder"] += len(hidden)
        for f in (f for f in base.iterdir() if f.is_file()):  # a README or a stray photo next to the class folders
            reason = _ignore_reason(f.name)
            ignored[reason if reason and not reason.startswith("unsupported") else "file outside a class folder"] += 1
    refused: list[Refused] = []
    for _, base in splits:  # a class-level link whose target is gone would otherwise vanish without a word
        for link in (d for d in base.iterdir() if d.is_symlink() and not d.exists()):
            refused.append(
                Refused(str(link), f"broken symbolic link (points to {os.readlink(link)}, which cannot be opened)")
            )
    jobs: list[tuple[Path, int, str | None]] = []
    for split, base in splits:
        for cdir in class_dirs(base):
            jobs += [(p, index[nfc(cdir.name)], split) for p in files_under(cdir, ignored, refused)]
    if strict and refused:
        raise UserError(
            f"{refused[0].path}: {refused[0].reason}. Remove or fix the link, or run without data.strict=true."
        )
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    samples: list[Sample] = []
    notes: Counter = Counter()
    decoded = _decoded([p for p, _, _ in jobs], workers, lambda p: _decode_one(p, channels, draft_size, prepare))
    with contextlib.closing(decoded) as results:  # closed here, by this thread, also when strict mode stops early
        for (path, label, split), (reason, digest, file_notes, prepared) in zip(jobs, results, strict=True):
            if reason:
                if strict:
                    raise UserError(
                        f"{path}: {reason}. Remove or fix the file, or run without data.strict=true to skip it."
                    )
                refused.append(Refused(str(path), reason))
                continue
            notes.update(file_notes)
            if store is not None:
                store(len(samples), prepared)
            samples.append(Sample(str(path), label, split, digest))
    manifest = Manifest(str(root), class_names, samples, refused, dict(+ignored), dict(notes))
    _check_classes(manifest, root)
    _check_duplicates(manifest)
    _check_balance(manifest)
    return manifest


def _check_classes(m: Manifest, root: Path) -> None:
    empty = [c for c, n in m.class_counts().items() if n == 0]
    if empty:
        raise UserError(
            f"data.root={root}: class folder(s) {empty} hold no usable image; add images or remove the folder."
        )
    if "train" in m.splits():
        missing = [c for c, n in m.class_counts("train").items() if n == 0]
        if missing:
            raise UserError(f"data.root={root / 'train'}: class(es) {missing} have no training image; add some.")
        for split in ("val", "test"):
            if (root / split).is_dir():
                absent = [c for c, n in m.class_counts(split).items() if n == 0]
                if absent:
                    m.warnings.append(
                        f"{root / split}: no image of class(es) {absent} that train/ holds; {split} metrics "
                        f"say nothing about them (add {split}/<class>/ images)"
                    )


def _check_duplicates(m: Manifest) -> None:
    """Byte-identical files: listed; across splits (a leak into validation) or across classes, warned."""
    groups: dict[str, list[Sample]] = {}
    for s in m.samples:
        groups.setdefault(s.digest, []).append(s)
    dups = [g for g in groups.values() if len(g) > 1]
    m.duplicates = [[s.path for s in g] for g in dups]
    cross_split = [g for g in dups if len({s.split for s in g}) > 1]
    if cross_split:
        listing = "; ".join(" = ".join(s.path for s in g) for g in cross_split[:5])
        m.warnings.append(
            f"{len(cross_split)} identical file(s) appear in more than one split (validation sees training images): "
            f"{listing}"
        )
    cross_class = [g for g in dups if len({s.label for s in g}) > 1]
    if cross_class:
        listing = "; ".join(" = ".join(s.path for s in g) for g in cross_class[:5])
        m.warnings.append(f"{len(cross_class)} identical file(s) carry different classes: {listing}")


def _check_balance(m: Manifest) -> None:
    counts = m.class_counts("train" if "train" in m.splits() else None)
    big, small = max(counts.items(), key=lambda kv: kv[1]), min(counts.items(), key=lambda kv: kv[1])
    if small[1] and big[1] / small[1] > IMBALANCE_RATIO:
        m.warnings.append(
            f"classes are imbalanced: {big[0]} has {big[1]} images, {small[0]} only {small[1]} "
            f"({big[1] / small[1]:.1f}x); judge by balanced accuracy and macro F1, not accuracy alone"
        )

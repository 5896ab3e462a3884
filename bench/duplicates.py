"""Near-duplicate bench (issue 20): plant copies of real photos into a real set and count what the detector finds.

Copies some originals of a folder of real photos (default ../shared/data/weather, train/ + test/) into a temporary
folder and plants, for each of `--originals` of them, four copies into the OTHER split (same class): JPEG quality 60,
half size, a 5% crop at a random position, and all three together. Then the product's own path: the folder is
scanned and decoded to store size (transfer.data.pixels.scan_and_decode, default preprocessing: 256 px squares) and
transfer.eval.duplicates.find_duplicates runs on those pixels, as the report page runs it.

Truth: a planted copy and its original are one photo; so are the pairs of originals in KNOWN_PAIRS, near-duplicates
that the weather set still holds (checked by eye: the same photo cropped, resized or colour-graded). A pair found is
true when its two images are one photo; a found pair between two originals not in KNOWN_PAIRS is a false pair.

Prints recall per kind of copy, precision, the false pairs among the originals, then ONE JSON line.

    python bench/duplicates.py                        # the weather set, 40 originals x 4 copies
    python bench/duplicates.py --data DIR --limit 200 --originals 10
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's transfer, not an installed one

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/weather"
KINDS = ("jpeg60", "half", "crop5", "all3")
SUFFIX = ".copy-"

# Pairs of ../shared/data/weather photos that are one photo (cropped, resized or colour-graded), each looked at.
KNOWN_PAIRS = {
    frozenset(p)
    for p in (
        ("test/cloudy/cloudy32.jpg", "train/cloudy/cloudy5.jpg"),
        ("test/rain/rain127.jpg", "test/rain/rain19.jpg"),
        ("test/rain/rain28.jpg", "train/rain/rain147.jpg"),
        ("test/rain/rain40.jpg", "test/rain/rain59.jpg"),
        ("test/shine/shine1.jpg", "train/shine/shine29.jpg"),
        ("test/shine/shine101.jpg", "test/shine/shine195.jpg"),
        ("test/shine/shine158.jpg", "test/shine/shine218.jpg"),
        ("test/shine/shine158.jpg", "train/shine/shine244.jpg"),
        ("test/shine/shine16.jpg", "train/shine/shine94.jpg"),
        ("test/shine/shine21.jpg", "test/shine/shine35.jpg"),
        ("test/shine/shine218.jpg", "train/shine/shine244.jpg"),
        ("test/sunrise/sunrise269.jpg", "test/sunrise/sunrise281.jpg"),
        ("train/cloudy/cloudy153.jpg", "train/cloudy/cloudy174.jpg"),
        ("train/rain/rain56.jpg", "train/rain/rain71.jpg"),
        ("train/shine/shine127.jpg", "train/shine/shine138.jpg"),
        ("train/shine/shine136.jpg", "train/shine/shine229.jpg"),
        ("train/shine/shine163.jpg", "train/shine/shine224.jpg"),
        ("train/shine/shine188.jpg", "train/shine/shine83.jpg"),
        ("train/shine/shine67.jpg", "train/shine/shine83.jpg"),
        ("train/sunrise/sunrise190.jpg", "train/sunrise/sunrise290.jpg"),
        ("train/sunrise/sunrise312.jpg", "train/sunrise/sunrise313.jpg"),
        ("train/sunrise/sunrise34.jpg", "train/sunrise/sunrise5.jpg"),
    )
}


def _copy(src: Path, kind: str, rng: random.Random) -> bytes:
    """JPEG bytes of one planted copy of `src`."""
    from PIL import Image

    img = Image.open(src).convert("RGB")
    if kind in ("crop5", "all3"):  # 95% of each side at a random position
        w, h = img.size
        cw, ch = round(0.95 * w), round(0.95 * h)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((x, y, x + cw, y + ch))
    if kind in ("half", "all3"):
        img = img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.BILINEAR)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=60 if kind in ("jpeg60", "all3") else 95)
    return out.getvalue()


def plant(data: Path, work: Path, originals: int, limit: int | None, seed: int) -> tuple[list[str], dict[str, str]]:
    """Copy the set (or `limit` of its images) to work/ and plant copies; (original paths, {copy path: original})."""
    rng = random.Random(seed)
    files = sorted(p.relative_to(data).as_posix() for p in data.glob("*/*/*") if p.is_file())
    if not files:
        raise SystemExit(f"no images under {data}/<split>/<class>/: pass --data")
    if limit is not None and limit < len(files):
        files = sorted(rng.sample(files, limit))
    for rel in files:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / rel, work / rel)
    splits = sorted({rel.split("/")[0] for rel in files})
    planted = {}
    for rel in rng.sample(files, min(originals, len(files))):
        split, cls, name = rel.split("/")
        other = next((s for s in splits if s != split), split)
        for kind in KINDS:
            target = f"{other}/{cls}/{Path(name).stem}{SUFFIX}{kind}.jpg"
            (work / target).parent.mkdir(parents=True, exist_ok=True)
            (work / target).write_bytes(_copy(data / rel, kind, rng))
            planted[target] = rel
    return files, planted


def photo_of(names: list[str], planted: dict[str, str]) -> list[int]:
    """One photo id per image: a copy is its original's photo; KNOWN_PAIRS join originals (union-find)."""
    index = {n: k for k, n in enumerate(names)}
    parent = list(range(len(names)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    links = [(c, o) for c, o in planted.items()] + [tuple(p) for p in KNOWN_PAIRS]
    for a, b in links:
        if a in index and b in index:
            parent[root(index[a])] = root(index[b])
    return [root(k) for k in range(len(names))]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of <split>/<class>/<image> photos")
    ap.add_argument("--originals", type=int, default=40, help="photos that get four planted copies each")
    ap.add_argument("--limit", type=int, default=None, help="use only this many images of the set (a quick run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-size", type=int, default=224, help="the backbone's input side (store side = it / 0.875)")
    args = ap.parse_args(argv)

    from transfer.backbones.base import Preprocessing
    from transfer.data.pixels import scan_and_decode
    from transfer.eval.duplicates import find_duplicates

    data = args.data.expanduser().resolve()
    if not data.is_dir():
        raise SystemExit(f"no folder {data}: pass --data DIR (a folder of <split>/<class>/<image> photos)")
    with tempfile.TemporaryDirectory(prefix="bench-duplicates-") as tmp:
        work = Path(tmp)
        originals, planted = plant(data, work, args.originals, args.limit, args.seed)
        started = time.perf_counter()
        pre = Preprocessing(input_size=(3, args.input_size, args.input_size))
        manifest, pixels = scan_and_decode(work, pre, workers=1)
        decoded = time.perf_counter()
        found = find_duplicates(pixels, max_pairs=None)
        seconds = time.perf_counter() - decoded
        names = [Path(s.path).relative_to(work).as_posix() for s in manifest.samples]
    photo = photo_of(names, planted)
    index = {n: k for k, n in enumerate(names)}
    pairs = {(p.i, p.j) for p in found.pairs}
    hits = {kind: 0 for kind in KINDS}
    for copy, orig in planted.items():
        a, b = sorted((index[copy], index[orig]))
        hits[copy.rsplit(SUFFIX, 1)[1].removesuffix(".jpg")] += (a, b) in pairs
    per_kind = len(planted) // len(KINDS)
    true = [p for p in found.pairs if photo[p.i] == photo[p.j]]
    among = [p for p in found.pairs if names[p.i] not in planted and names[p.j] not in planted]
    false_among = [p for p in among if photo[p.i] != photo[p.j]]
    recall = sum(hits.values()) / max(1, len(planted))
    precision = len(true) / len(found.pairs) if found.pairs else 1.0
    print(f"{len(originals)} originals from {data}, {len(planted)} planted copies ({args.originals} x {len(KINDS)})")
    print(f"decoded to {pixels.shape[-1]} px squares in {decoded - started:.1f} s; find_duplicates in {seconds:.1f} s")
    print("recall per copy: " + ", ".join(f"{k} {hits[k]}/{per_kind}" for k in KINDS) + f"; all {recall:.3f}")
    print(f"precision {precision:.3f}: {len(true)} of {len(found.pairs)} pairs found are one photo")
    print(
        f"among the originals: {len(among)} pairs found, {len(among) - len(false_among)} of them known near-duplicates "
        f"(KNOWN_PAIRS), {len(false_among)} false"
    )
    for p in false_among:
        print(f"  false pair: {names[p.i]} ~ {names[p.j]} (similarity {p.similarity:.3f})")
    out = {
        "bench": "duplicates",
        "data": str(data),
        "images": len(names),
        "store_px": int(pixels.shape[-1]),
        "planted": len(planted),
        "recall": round(recall, 4),
        "recall_by_kind": {k: round(hits[k] / max(1, per_kind), 4) for k in KINDS},
        "precision": round(precision, 4),
        "pairs_found": len(found.pairs),
        "pairs_among_originals": len(among),
        "false_pairs_among_originals": len(false_among),
        "near_checked": found.near_checked,
        "seconds": round(seconds, 2),
        "goals_met": recall >= 0.9 and not false_among,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

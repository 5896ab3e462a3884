"""Image folders written by tests: a small learnable folder for anyone, and a corpus of every bad case we refuse.

Import from tests: `from imagegen import make_image_folder` (tests/ is on sys.path under pytest's rootdir
conftest-less import mode) or `from tests.imagegen import make_image_folder`.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = [(220, 40, 40), (40, 160, 60), (40, 70, 220), (230, 200, 30), (160, 50, 200), (30, 200, 200)]


def class_image(k: int, i: int, size: tuple[int, int], learnable: bool = True, seed: int = 0) -> Image.Image:
    """Image i of class k: with `learnable`, a class colour plus a class-specific stripe direction and noise."""
    w, h = size
    rng = np.random.default_rng(seed * 100_003 + k * 1009 + i)
    if not learnable:
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    base = np.array(PALETTE[k % len(PALETTE)], dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = ((xx if k % 2 == 0 else yy) // max(2, 4 + k) % 2).astype(np.float32)[..., None]  # H x W x 1
    img = base * (0.6 + 0.4 * stripes) + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_image_folder(
    root: str | Path,
    classes: tuple[str, ...] | list[str] = ("a", "b"),
    n_per_class: int = 10,
    size: tuple[int, int] = (64, 48),
    learnable: bool = True,
    fmt: str = "png",
    seed: int = 0,
) -> Path:
    """root/<class>/<class>_<i>.<fmt>; `size` is (width, height). Returns root."""
    root = Path(root)
    for k, c in enumerate(classes):
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = class_image(k, i, size, learnable, seed)
            img.save(d / f"{c}_{i}.{fmt}", **({"quality": 90} if fmt in ("jpg", "jpeg") else {}))
    return root


def write_png16(path: str | Path, arr: np.ndarray) -> None:
    """A 16-bit PNG (H x W grey or H x W x 3 RGB, uint16) written by hand: Pillow cannot write 16-bit RGB."""
    arr = np.asarray(arr, dtype=">u2")
    h, w = arr.shape[:2]
    colour = 0 if arr.ndim == 2 else 2
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def with_orientation(img: Image.Image, path: str | Path, orientation: int, **save) -> None:
    """Save `img` with an EXIF orientation tag (6: the viewer must rotate 90 degrees clockwise, as phones do)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, **save)


def photo_jpeg_bytes(size: tuple[int, int] = (160, 120), seed: int = 0) -> bytes:
    import io

    buf = io.BytesIO()
    class_image(0, seed, size).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# The bad corpus: file name (relative to root) -> expected status: "ok", "refused:<word in reason>" or
# "ignored:<ignored key>". Every case named in issue 5 has a row; tests assert each one.
def write_bad_corpus(root: str | Path) -> dict[str, str]:
    """Two classes of good images plus every kind of file a real folder holds; returns the expected status per file."""
    root = Path(root)
    make_image_folder(root, ("cat", "dog"), n_per_class=3, size=(40, 30))
    cat, dog = root / "cat", root / "dog"
    expect = {f"{c}/{c}_{i}.png": "ok" for c in ("cat", "dog") for i in range(3)}
    jpeg = photo_jpeg_bytes()
    (cat / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    expect["cat/half.jpg"] = "refused:truncated"
    png = (cat / "cat_0.png").read_bytes()
    (cat / "cut.png").write_bytes(png[: len(png) - 30])
    expect["cat/cut.png"] = "refused:"
    bad = bytearray(jpeg)
    at = bad.find(b"\xff\xc4")  # a Huffman table: overwritten, the header no longer parses
    bad[at + 4 : at + 40] = b"\xff" * 36
    (cat / "garbled.jpg").write_bytes(bytes(bad))
    expect["cat/garbled.jpg"] = "refused:not a readable image"
    crc = bytearray(png)
    at = crc.find(b"IDAT")
    crc[at + 10] ^= 0xFF  # one flipped bit-pattern inside the compressed data: CRC mismatch
    (cat / "crc.png").write_bytes(bytes(crc))
    expect["cat/crc.png"] = "refused:"
    (cat / "zero.jpg").write_bytes(b"")
    expect["cat/zero.jpg"] = "refused:empty"
    (cat / "notes.jpg").write_text("this is a text file with an image extension\n")
    expect["cat/notes.jpg"] = "refused:not a readable image"
    (cat / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    expect["cat/.DS_Store"] = "ignored:system file"
    (dog / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    expect["dog/Thumbs.db"] = "ignored:system file"
    (dog / "._dog_0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    expect["dog/._dog_0.png"] = "ignored:AppleDouble"
    (cat / "readme.txt").write_text("hi")
    expect["cat/readme.txt"] = "ignored:unsupported type .txt"
    (dog / "clip.mp4").write_bytes(b"\x00" * 10)
    expect["dog/clip.mp4"] = "ignored:unsupported type .mp4"
    (dog / "clip2.mp4").write_bytes(b"\x00" * 10)
    expect["dog/clip2.mp4"] = "ignored:unsupported type .mp4"
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "x.png").write_bytes(png)
    (cat / ".ipynb_checkpoints").mkdir()
    (cat / ".ipynb_checkpoints" / "cat_0-checkpoint.png").write_bytes(png)
    expect["cat/.ipynb_checkpoints"] = "ignored:hidden folder"
    # decodable oddities: converted to RGB, never refused
    Image.new("L", (40, 30), 90).save(cat / "grey.png")
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(cat / "cmyk.jpg")
    Image.new("P", (40, 30), 3).save(dog / "palette.gif")
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(dog / "clear.png")
    write_png16(dog / "deep16.png", np.full((30, 40), 1000, dtype=np.uint16))
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(dog / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with_orientation(class_image(1, 0, (40, 30)), dog / "phone.jpg", 6, quality=90)
    for name in ("cat/grey.png", "cat/cmyk.jpg", "dog/palette.gif", "dog/clear.png", "dog/deep16.png"):
        expect[name] = "ok"
    expect["dog/anim.gif"] = "ok"
    expect["dog/phone.jpg"] = "ok"
    return expect

"""Decode one image file the same way everywhere (scan, training, prediction): EXIF applied, any mode to RGB/L.

Pillow's defaults are unsafe for a training set: `verify()` passes half-written JPEGs, `convert("RGB")` clamps
16-bit images instead of scaling them, and EXIF orientation is ignored. Everything here decodes every byte,
scales bit depth, composites transparency on one fixed background and applies EXIF orientation.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

log = logging.getLogger(__name__)

BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white, always the same
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def _refuse_truncated() -> None:
    """A truncated file must fail, never decode as grey; someone may have flipped Pillow's global switch."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was True; set back to False so truncated images are refused")
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def _scale_to_uint8(arr: np.ndarray, top: float) -> Image.Image:
    """Linear scaling of 0..top to 0..255 (never clamping: a 16-bit 1000 is 4, not 255)."""
    return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode to 'RGB' (channels=3) or 'L' (channels=1): 16-bit scaled, alpha composited, CMYK converted."""
    if img.mode in _SIXTEEN_BIT:
        img = _scale_to_uint8(np.asarray(img, dtype=np.float64), 65535.0)
    elif img.mode == "I":  # 32-bit ints: 16-bit PNGs/TIFFs that Pillow widened, or true 32-bit data
        arr = np.asarray(img, dtype=np.float64)
        img = _scale_to_uint8(arr, max(65535.0, float(arr.max(initial=0))))
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = _scale_to_uint8(arr, 1.0 if arr.max(initial=0) <= 1.0 else 255.0)
    elif img.mode == "1":
        img = img.convert("L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif img.mode in ("L", "RGB") and "transparency" in img.info:  # tRNS colour key in a PNG
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        img = Image.alpha_composite(canvas, rgba).convert("RGB")
    target = "RGB" if channels == 3 else "L"
    return img if img.mode == target else img.convert(target)


class CorruptImageError(OSError):
    """The file decodes only because the decoder papered over damaged data (libjpeg's 'Corrupt JPEG data')."""


_warned_no_strict_jpeg: list[bool] = []


def check_jpeg_data(data: bytes) -> None:
    """Raise CorruptImageError when libjpeg reports damaged entropy-coded data; Pillow decodes such files silently.

    simplejpeg (libjpeg-turbo, strict mode) decodes at 1/8 scale: every Huffman code is still read, so a
    full-length file with overwritten scan data is caught at a fraction of a full decode.
    """
    try:
        import simplejpeg
    except ImportError:
        if not _warned_no_strict_jpeg:
            _warned_no_strict_jpeg.append(True)
            log.warning(
                "simplejpeg is not installed: JPEGs with corrupt scan data are not detected (pip install simplejpeg)"
            )
        return
    try:
        simplejpeg.decode_jpeg(data, "gray", min_factor=8, strict=True)
    except ValueError as e:
        if "Corrupt JPEG data" in str(e) or "premature" in str(e).lower():
            raise CorruptImageError(f"corrupt JPEG data (libjpeg: {e})") from None
        log.debug("strict JPEG check skipped (%s); Pillow decoded the file", e)  # e.g. a variant simplejpeg lacks


def describe(img: Image.Image) -> list[str]:
    """What decoding had to do to this file beyond plain 8-bit RGB (counted in the scan report)."""
    notes = []
    if getattr(img, "is_animated", False):
        notes.append("animated (first frame used)")
    if img.mode in (*_SIXTEEN_BIT, "I", "F"):
        notes.append("16-bit or float (scaled to 8-bit)")
    elif img.mode == "CMYK":
        notes.append("CMYK (converted to RGB)")
    elif img.mode == "P":
        notes.append("palette (converted)")
    elif img.mode in ("L", "1", "LA"):
        notes.append("grayscale")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        notes.append("transparency (composited on white)")
    orientation = img.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        notes.append("EXIF orientation applied")
    return notes


def open_image(
    source: str | Path | bytes, channels: int = 3, draft_size: tuple[int, int] | None = None
) -> tuple[Image.Image, list[str]]:
    """Decode every byte of `source` (a path or the file's bytes); returns the oriented RGB/L image and notes.

    Raises on truncated or corrupt data and on decompression bombs (Pillow's limit, warnings included).
    `draft_size` lets JPEG decode at 1/2, 1/4 or 1/8 scale (still reading the whole file, so truncation fails).
    """
    _refuse_truncated()
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        limit = Image.MAX_IMAGE_PIXELS
        if limit and img.width * img.height > limit:
            raise Image.DecompressionBombError(
                f"{img.width}x{img.height} = {img.width * img.height} pixels exceeds the limit of {limit} "
                "(PIL.Image.MAX_IMAGE_PIXELS); a decompression bomb or a huge scan"
            )
        notes = describe(img)
        if getattr(img, "is_animated", False):
            img.seek(0)
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB" if channels == 3 else "L", draft_size)
        img.load()
        if img.format == "JPEG":
            check_jpeg_data(data)
        oriented = ImageOps.exif_transpose(img)
        return to_mode(oriented, channels), notes


def load_image(path: str | Path, channels: int = 3, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open, fully decode and orient `path`; `draft_size` lets JPEG decode at a reduced scale (much faster)."""
    return open_image(path, channels, draft_size)[0]

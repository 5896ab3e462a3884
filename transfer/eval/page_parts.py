"""Building blocks of the report page: number formats, embedded images, tables and inline SVG charts.

Every function returns an HTML fragment with all user strings escaped; nothing here reads the network or needs
matplotlib, so a page renders on any machine that has PIL.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

THUMB_PX = 128  # longest side of a gallery / duplicate thumbnail
SMALL_PX = 48  # thumbnails smaller than this are drawn with crisp pixels (digits, icons)


def esc(value: object) -> str:
    """`value` as text safe inside HTML elements and attribute values."""
    return html.escape(str(value), quote=True)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fmt_pct(value: object, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage ('87.0%'); other numbers as they are; missing values as '–'."""
    if not _finite(value):
        return "–" if value is None or isinstance(value, float) else esc(value)
    if 0.0 <= value <= 1.0:
        return f"{100 * value:.{digits}f}%"
    return f"{value:.4g}"


def fmt_ci(ci: object) -> str:
    """A 95% interval [lo, hi] as '[81.0%, 92.0%]', or '' when there is none."""
    if not isinstance(ci, Sequence) or len(ci) != 2 or not all(_finite(v) for v in ci):
        return ""
    return f"[{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"


def fmt_cell(value: object) -> str:
    """One table cell: floats to four significant digits, everything else as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return esc("" if value is None else value)


# ---------------------------------------------------------------- images


def _as_pil(image: object) -> Image.Image:
    """A PIL image from a file path or a HxW / HxWx3 uint8 array (the two forms the data contract allows)."""
    if isinstance(image, str | Path):
        with Image.open(image) as im:
            im.load()
            return im.copy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
            raise TypeError(f"report image arrays must be HxW or HxWx3 uint8, got {image.dtype} {image.shape}")
        return Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    raise TypeError(f"report images are file paths or uint8 numpy arrays, got {type(image).__name__}")


def thumbnail_uri(image: object, max_px: int = THUMB_PX) -> tuple[str, int]:
    """A base64 data URI of `image` shrunk to at most max_px a side, and its longest side in pixels.

    JPEG for larger colour photographs (small pages), PNG for grayscale or tiny images (no blur on digits).
    """
    im = _as_pil(image)
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGBA").convert("RGB") if "A" in im.mode or im.mode == "P" else im.convert("RGB")
    im.thumbnail((max_px, max_px))
    buf = io.BytesIO()
    if im.mode == "RGB" and max(im.size) >= SMALL_PX:
        im.save(buf, format="JPEG", quality=85)
        mime = "image/jpeg"
    else:
        im.save(buf, format="PNG", optimize=True)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}", max(im.size)


def file_uri(path: str | Path) -> str:
    """A data URI holding a PNG / JPEG file's bytes unchanged (plots keep their full resolution)."""
    data = Path(path).read_bytes()
    mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
    if mime == "image/png" and data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG or JPEG file")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumb_html(image: object, alt: str) -> str:
    """An <img> thumbnail, or a visible note saying why the image could not be shown."""
    try:
        uri, side = thumbnail_uri(image)
    except (OSError, ValueError, TypeError) as err:
        return f'<span class="noimg">image unavailable: {esc(err)}</span>'
    pixelated = " px" if side < SMALL_PX else ""
    return f'<img class="thumb{pixelated}" src="{uri}" alt="{esc(alt)}">'


def figure_html(path: object, caption: str) -> str:
    """A full-size embedded plot with its caption."""
    try:
        img = f'<img class="plot" src="{file_uri(path)}" alt="{esc(caption)}">'  # type: ignore[arg-type]
    except (OSError, ValueError, TypeError) as err:
        img = f'<span class="noimg">image unavailable: {esc(err)}</span>'
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>"


# ---------------------------------------------------------------- tables


def table(columns: Sequence[object], rows: Sequence[Sequence[object]], css: str = "") -> str:
    """A plain HTML table; numbers right-aligned."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{fmt_cell(v)}</td>' if _finite(v) else f"<td>{fmt_cell(v)}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    cls = f' class="{esc(css)}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def confusion_html(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """The confusion matrix (rows true, columns predicted): counts, row percentages, shaded by the row share.

    The diagonal is shaded blue (right answers), the rest red (mistakes), so the eye finds confusions first.
    """
    k = len(confusion)
    head = "".join(f'<th class="pred" title="{esc(c)}">{esc(c)}</th>' for c in classes)
    rows = []
    for i, row in enumerate(confusion):
        total = sum(row)
        cells = []
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            hue = "33,102,172" if i == j else "203,24,29"
            ink = "#fff" if share > 0.55 else "#111"
            tip = f"true {classes[i]}, predicted {classes[j]}: {count} of {total}"
            cells.append(
                f'<td class="cm" style="background:rgba({hue},{0.08 + 0.85 * share:.3f});color:{ink}" '
                f'title="{esc(tip)}"><b>{count}</b><small>{100 * share:.0f}%</small></td>'
            )
        rows.append(f'<tr><th class="true">{esc(classes[i])}</th>{"".join(cells)}<td class="tot">{total}</td></tr>')
    return (
        f'<div class="scroll"><table class="confusion" data-classes="{k}"><thead><tr>'
        f'<th class="corner">true \\ predicted</th>{head}<th class="tot">n</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def per_class_html(per_class: dict) -> str:
    """Precision and recall per class with their 95% intervals, and the support."""
    rows = []
    for name, m in per_class.items():
        rows.append(
            f"<tr><th>{esc(name)}</th>"
            f'<td class="num">{fmt_pct(m.get("precision"))}</td><td class="ci">{fmt_ci(m.get("precision_ci95"))}</td>'
            f'<td class="num">{fmt_pct(m.get("recall"))}</td><td class="ci">{fmt_ci(m.get("recall_ci95"))}</td>'
            f'<td class="num">{fmt_cell(m.get("support", ""))}</td></tr>'
        )
    return (
        '<table class="perclass"><thead><tr><th>class</th><th colspan="2">precision (95% CI)</th>'
        f'<th colspan="2">recall (95% CI)</th><th>support</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def bars_html(items: Sequence[tuple[str, float, object, bool]]) -> str:
    """Horizontal bars on a 0–100% scale: (label, value, ci95 or None, is_model) per row, interval as a band."""
    rows = []
    for label, value, ci, is_model in items:
        width = min(max(float(value), 0.0), 1.0) * 100
        band = ""
        if fmt_ci(ci):
            lo, hi = (min(max(float(v), 0.0), 1.0) * 100 for v in ci)  # type: ignore[union-attr]
            band = f'<span class="band" style="left:{lo:.2f}%;width:{hi - lo:.2f}%"></span>'
        cls = "model" if is_model else "base"
        rows.append(
            f'<div class="barrow"><span class="barlabel">{esc(label)}</span><span class="bartrack">'
            f'<span class="bar {cls}" style="width:{width:.2f}%"></span>{band}</span>'
            f'<span class="barval">{fmt_pct(value)}</span></div>'
        )
    return f'<div class="bars">{"".join(rows)}</div>'


# ---------------------------------------------------------------- charts (inline SVG)


# What the reliability diagram draws, by CSS class (page.py's CSS gives each its colour): the legend lists every one
RELIABILITY_MARKS = (
    ("acc", "bar", "blue bar: accuracy of the images in each confidence bin"),
    ("gap", "bar", "orange: over-confidence, the gap from the bar up to the tick"),
    ("conf", "tick", "black tick: the bin's mean confidence (inside the blue bar: under-confident)"),
    ("ideal", "line", "dashed line: perfect calibration"),
    ("cnt", "bar", "grey strip: how many images fall in each bin"),
)


def reliability_legend() -> str:
    """The diagram's legend: a swatch drawn with the same class as each mark, and what it means."""
    shapes = {
        "bar": '<rect x="1" y="3" width="16" height="10" class="{c}"/>',
        "tick": '<line x1="1" y1="8" x2="17" y2="8" class="{c}"/>',
        "line": '<line x1="1" y1="8" x2="17" y2="8" class="{c}"/>',
    }
    rows = "".join(
        f'<li data-mark="{cls}"><svg class="chart" width="18" height="16" aria-hidden="true">'
        f"{shapes[shape].format(c=cls)}</svg> {esc(text)}</li>"
        for cls, shape, text in RELIABILITY_MARKS
    )
    return f'<ul class="legend">{rows}</ul>'


def reliability_svg(bins: Sequence[dict], size: int = 300) -> str:
    """A reliability diagram: accuracy per confidence bin as bars, an over-confident bin's gap up to its mean
    confidence in orange (opaque: no colour is drawn that the legend lacks), the diagonal as the ideal, and the share
    of images per bin as a strip underneath."""
    pad, strip = 36, 40
    w, h = size + pad + 10, size + pad + strip + 14

    def x(v: float) -> float:
        return pad + v * size

    def y(v: float) -> float:
        return 10 + (1 - v) * size

    most = max((int(b.get("count", 0)) for b in bins), default=0) or 1
    parts = [f'<rect x="{pad}" y="10" width="{size}" height="{size}" class="frame"/>']
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{x(0)}" y1="{y(t):.1f}" x2="{x(1)}" y2="{y(t):.1f}" class="grid"/>')
        parts.append(f'<text x="{pad - 4}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        parts.append(f'<text x="{x(t):.1f}" y="{size + 24}" text-anchor="middle">{t:g}</text>')
    for b in bins:
        lo, hi, acc, conf = (float(b.get(key, 0.0)) for key in ("lo", "hi", "accuracy", "confidence"))
        n = int(b.get("count", 0))
        if n == 0:
            continue
        bx, bw = x(lo) + 1, max((hi - lo) * size - 2, 1)
        tip = f"confidence {lo:.2f}–{hi:.2f}: mean confidence {conf:.3f}, accuracy {acc:.3f}, {n} images"
        parts.append(
            f'<rect x="{bx:.1f}" y="{y(acc):.1f}" width="{bw:.1f}" height="{size * acc:.1f}" class="acc">'
            f"<title>{esc(tip)}</title></rect>"
        )
        if conf > acc:  # over-confident: the gap above the bar; under-confident, the tick sits inside the bar
            gap = size * (conf - acc)
            parts.append(f'<rect x="{bx:.1f}" y="{y(conf):.1f}" width="{bw:.1f}" height="{gap:.1f}" class="gap"/>')
        parts.append(f'<line x1="{bx:.1f}" y1="{y(conf):.1f}" x2="{bx + bw:.1f}" y2="{y(conf):.1f}" class="conf"/>')
        sh = (strip - 6) * n / most
        parts.append(
            f'<rect x="{bx:.1f}" y="{size + 30 + strip - 6 - sh:.1f}" width="{bw:.1f}" height="{sh:.1f}" '
            f'class="cnt"><title>{n} images</title></rect>'
        )
    parts.append(f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" class="ideal"/>')
    parts.append(f'<text x="{x(0.5)}" y="{h}" text-anchor="middle">mean confidence</text>')
    parts.append(f'<text transform="translate(10,{y(0.5)}) rotate(-90)" text-anchor="middle">accuracy</text>')
    return (
        f'<svg class="chart" width="{w}" height="{h + 4}" viewBox="0 0 {w} {h + 4}" role="img" '
        f'aria-label="reliability diagram">{"".join(parts)}</svg>'
    )


def curve_svg(points: Sequence[dict], width: int = 420, height: int = 240) -> str:
    """Accuracy against the number of training images, with 95% intervals as whiskers."""
    pts = [p for p in points if _finite(p.get("n")) and _finite(p.get("accuracy"))]
    if len(pts) < 2:
        return ""
    pad_l, pad_b, pad_t, pad_r = 44, 34, 10, 14
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b
    ns = [float(p["n"]) for p in pts]
    lows = [min([p["accuracy"], *[v for v in (p.get("ci95") or []) if _finite(v)]]) for p in pts]
    y_lo = max(0.0, math.floor(min(lows) * 10) / 10)
    n_lo, n_hi = min(ns), max(ns)

    def x(n: float) -> float:
        return pad_l + (n - n_lo) / ((n_hi - n_lo) or 1) * pw

    def y(v: float) -> float:
        return pad_t + (1 - (v - y_lo) / ((1 - y_lo) or 1)) * ph

    parts = [f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" class="frame"/>']
    for i in range(5):
        t = y_lo + (1 - y_lo) * i / 4
        parts.append(f'<line x1="{pad_l}" y1="{y(t):.1f}" x2="{pad_l + pw}" y2="{y(t):.1f}" class="grid"/>')
        parts.append(f'<text x="{pad_l - 4}" y="{y(t) + 4:.1f}" text-anchor="end">{100 * t:.0f}%</text>')
    line = []
    for p in pts:
        px, py = x(float(p["n"])), y(float(p["accuracy"]))
        line.append(f"{px:.1f},{py:.1f}")
        ci = p.get("ci95")
        if fmt_ci(ci):
            parts.append(f'<line x1="{px:.1f}" y1="{y(ci[0]):.1f}" x2="{px:.1f}" y2="{y(ci[1]):.1f}" class="whisk"/>')
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" class="pt"><title>{esc(p["n"])} images: '
            f"{fmt_pct(p['accuracy'])} {fmt_ci(ci)}</title></circle>"
        )
        parts.append(f'<text x="{px:.1f}" y="{pad_t + ph + 16}" text-anchor="middle">{fmt_cell(p["n"])}</text>')
    parts.insert(1, f'<polyline points="{" ".join(line)}" class="curve"/>')
    parts.append(f'<text x="{pad_l + pw / 2}" y="{height - 4}" text-anchor="middle">training images</text>')
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="learning curve">{"".join(parts)}</svg>'
    )

"""The contact sheet of `command=suggest`: the images to label next as thumbnails, in the order chosen, each with its
score. One self-contained HTML file like report.html (the same CSS, thumbnails as data URIs from page_parts): open it
from the run dir, send it to whoever labels.

The `data` contract: ``title`` (str), ``subtitle`` (str), ``notes`` ([str]: how the images were ranked, what counted
as already labelled), ``items``: [{"image": path or uint8 array, "name": str, "rank": int, "score": float,
"uncertainty": float, "distance": float, "predicted": str, "p_predicted": float}] in the order to label them.
"""

from __future__ import annotations

from pathlib import Path

from transfer.atomic import write_text_atomic
from transfer.eval.page import CSS, html_document
from transfer.eval.page_parts import esc, fmt_pct, thumb_html

SHEET_CSS = ".rank{font-weight:700;font-size:13px}.sheet .card{width:156px}"


def _card(item: dict) -> str:
    name = str(item.get("name", ""))
    return (
        f'<div class="card"><div class="rank">#{esc(item.get("rank", "?"))}</div>'
        f'<div class="frame">{thumb_html(item.get("image"), name)}</div>'
        f'<div class="name" title="{esc(name)}">{esc(name)}</div>'
        f"<div>score: {float(item.get('score', float('nan'))):.3f}</div>"
        f'<div class="muted">uncertainty {float(item.get("uncertainty", float("nan"))):.2f} · '
        f"distance {float(item.get('distance', float('nan'))):.2f}</div>"
        f"<div>model says: {esc(item.get('predicted', '?'))} ({fmt_pct(item.get('p_predicted'))})</div></div>"
    )


def render_contact_sheet(data: dict) -> str:
    """The whole page as one HTML string (see the module docstring for `data`)."""
    title = str(data.get("title") or "Images to label next")
    items = list(data.get("items") or [])
    parts = [f"<h1>{esc(title)}</h1>"]
    if data.get("subtitle"):
        parts.append(f'<p class="subtitle">{esc(data["subtitle"])}</p>')
    notes = "".join(f"<li>{esc(n)}</li>" for n in data.get("notes") or [])
    body = f"<ul>{notes}</ul>" if notes else ""
    if items:
        cards = "".join(_card(it) for it in items)
        body += (
            f"<p><b>{len(items)}</b> images, label them in this order (#1 first). score = uncertainty × distance: how "
            "unsure the model is, times how far the image is from every image already labelled or listed before it."
            f'</p><div class="gallery sheet">{cards}</div>'
        )
    else:
        body += "<p>no images to suggest</p>"
    parts.append(f'<section id="suggestions"><h2>Label these next</h2>{body}</section>')
    footer = "self-contained page written by transfer · no external resources"
    return html_document(title, CSS + SHEET_CSS, parts, footer)


def write_contact_sheet(data: dict, path: str | Path) -> Path:
    """Render and write atomically (a reader never sees half a page)."""
    return write_text_atomic(path, render_contact_sheet(data))

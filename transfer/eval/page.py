"""One self-contained HTML page reporting a training run: open it from the run dir, mail it, keep it.

The page has no external resources (CSS inline, images as base64 data URIs, charts as inline SVG), so it reads
the same offline and years later. It is built from one plain `data` dict; every section is optional and a
missing section is simply left out. All strings are HTML-escaped. Fractions in [0, 1] are shown as percentages.

The `data` contract:

- ``title`` (str), ``subtitle`` (str: run dir, date, backbone, ...)
- ``provenance``: [str] -- under the title: where the body's weights came from, the feature cache (always shown)
- ``warnings``: [str] -- shown prominently at the top (e.g. "model is not clearly above the majority baseline")
- ``headline``: {"name": "test accuracy", "value": 0.87, "ci95": [0.81, 0.92], "n": 153,
  "source": "test/ folder, scored once" | "5-fold cross-validation",
  "baselines": {"majority class": 0.41, "linear probe": 0.80},
  "baseline_notes": {name: how it was measured}, "same_as_model": [baselines that are this model itself]}
- ``metrics``: {"accuracy", "accuracy_ci95", "balanced_accuracy", "balanced_accuracy_ci95", "f1_macro",
  "per_class": {cls: {"precision", "precision_ci95", "recall", "recall_ci95", "support"}},
  "confusion": [[int]] (rows true, columns predicted; class order = per_class order, else 0..k-1)}
- ``gallery``: {"mistakes": [item], "uncertain_correct": [item], "counts": {"mistakes": int, "uncertain_correct":
  int} (every wrong / right answer, beyond those listed)}, item = {"image": path or HxW / HxWx3 uint8 array,
  "true": str, "predicted": str, "confidence": float, "name": str}; thumbnails at most 128 px
- ``calibration``: {"ece": float, "ece_after": float | None, "temperature": float | None,
  "bins": [{"lo", "hi", "confidence", "accuracy", "count"}]} -- drawn as a reliability diagram
- ``images``: {caption: png path} -- any plots (training curves, regimes, ...) embedded at full size
- ``evidence``: {"columns": [str], "rows": [[cell]], "caption": str, "verdicts": [str]} -- the regime / auto table
- ``learning_curve``: {"points": [{"n", "accuracy", "ci95"}], "sentence": str, "image": png path | None}
- ``scan``: {"files": int, "classes": {cls: count}, "refused": [{"path", "reason"}], "warnings": [str]}
- ``duplicates``: {"summary": str (one line: what was looked for and found), "leakage": [pair],
  "label_conflicts": [pair], "counts": {"leakage": int, "label_conflicts": int} (all pairs, beyond those listed)},
  pair = {"a": image, "b": image, "similarity": float, "exact": bool, "a_name": str, "b_name": str} (leakage adds
  "split", label conflicts "a_label", "b_label"); with no pair listed the section is its summary line alone
- ``label_issues``: {"count": int, "n": int, "method": str, "items": [{"image", "name", "given", "suggested",
  "score", "p_given", "p_suggested"}]} -- suspected label errors, most suspicious first (score: label quality of the
  given label, lower = more likely wrong); a count of 0 says the search ran and found nothing
"""

from __future__ import annotations

from pathlib import Path

from transfer.atomic import write_text_atomic
from transfer.eval.page_parts import (
    bars_html,
    confusion_html,
    curve_svg,
    esc,
    figure_html,
    fmt_ci,
    fmt_pct,
    per_class_html,
    reliability_legend,
    reliability_svg,
    table,
    thumb_html,
)

MAX_LISTED = 50  # refused files / gallery items shown before "and N more"

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f6f6f4;color:#1d1d1f;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1240px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:26px;margin:0 0 2px}
h2{font-size:18px;margin:0 0 12px;padding-bottom:4px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 8px}
.subtitle{color:#555;margin:0 0 6px;font-size:14px}
.provenance{list-style:none;padding:0;margin:0 0 18px;font-size:14px;color:#333;overflow-wrap:anywhere}
section{background:#fff;border:1px solid #e2e2de;border-radius:6px;padding:16px 20px;margin:0 0 18px}
.warnings{background:#fff6e0;border:1px solid #e0b040;border-left:6px solid #d08a00}
.warnings h2{border-color:#ecd08a;color:#7a4b00}
.warnings li{margin:2px 0;font-weight:600}
.headline{display:flex;gap:36px;align-items:flex-start;flex-wrap:wrap}
.hl-main{min-width:260px}
.hl-name{color:#555;font-size:14px;text-transform:uppercase;letter-spacing:.04em}
.hl-value{font-size:46px;font-weight:700;line-height:1.1}
.hl-ci{font-size:17px;color:#333}
.hl-meta{color:#666;font-size:13px;margin-top:4px}
.bars{flex:1;min-width:380px;max-width:620px}
.barrow{display:flex;align-items:center;gap:10px;margin:5px 0}
.barlabel{width:150px;text-align:right;color:#444;font-size:14px}
.bartrack{position:relative;flex:1;height:18px;background:#f0f0ee;border-radius:2px}
.bar{position:absolute;left:0;top:0;bottom:0;border-radius:2px}
.bar.model{background:#2166ac}.bar.base{background:#a6a6a6}
.band{position:absolute;top:3px;bottom:3px;border-left:2px solid #111;border-right:2px solid #111;
 background:linear-gradient(#111,#111) center/100% 2px no-repeat}
.barval{width:56px;font-variant-numeric:tabular-nums;font-size:14px}
table{border-collapse:collapse;font-size:14px}
th,td{padding:4px 8px;border-bottom:1px solid #ebebe8;text-align:left;vertical-align:middle}
thead th{background:#f3f3f0;font-weight:600}
td.num,td.tot{text-align:right;font-variant-numeric:tabular-nums}
td.ci{color:#666;font-size:13px;font-variant-numeric:tabular-nums}
.summary td{font-size:15px}
.scroll{overflow:auto;max-width:100%}
.confusion th.pred{writing-mode:vertical-rl;transform:rotate(180deg);max-height:140px;white-space:nowrap;
 overflow:hidden;text-overflow:ellipsis;font-weight:500;padding:6px 2px}
.confusion th.true{font-weight:500;white-space:nowrap;max-width:180px;overflow:hidden;text-overflow:ellipsis}
.confusion th.corner{font-weight:400;color:#666;font-size:12px;vertical-align:bottom}
.confusion td.cm{text-align:center;min-width:46px;border:1px solid #fff;padding:3px 4px;line-height:1.1}
.confusion td.cm b{display:block;font-size:14px}.confusion td.cm small{font-size:11px;opacity:.85}
.confusion td.tot,.confusion th.tot{color:#666;font-size:12px}
.two{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
.two>*{min-width:0;max-width:100%}
.grow{flex:1 1 280px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.card{width:150px;border:1px solid #e2e2de;border-radius:4px;padding:6px;font-size:12px;background:#fcfcfb}
.card .frame{height:128px;display:flex;align-items:center;justify-content:center;background:#f0f0ee}
.card .name{color:#666;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.thumb{max-width:128px;max-height:128px}
.thumb.px{width:96px;height:96px;object-fit:contain;image-rendering:pixelated}
.wrong{color:#b2182b;font-weight:600}
.pair{display:inline-flex;gap:8px;align-items:flex-start;border:1px solid #e2e2de;border-radius:4px;
 padding:6px;margin:0 10px 10px 0;background:#fcfcfb;font-size:12px}
.pair .side{width:132px;text-align:center}.pair .side div{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.pair .sim{align-self:center;color:#444;width:64px;text-align:center}
figure{margin:0 0 16px}figure img.plot{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:13px;margin-top:4px}
.noimg{display:inline-block;color:#b2182b;font-size:12px;padding:8px}
.chart text{font-size:11px;fill:#444}.chart .frame{fill:none;stroke:#bbb}.chart .grid{stroke:#eee}
.chart .acc{fill:#2166ac}.chart .gap{fill:#f5b8a1}.chart .conf{stroke:#111;stroke-width:2}
.chart .cnt{fill:#999}
.chart .ideal{stroke:#333;stroke-dasharray:4 3}.chart .curve{fill:none;stroke:#2166ac;stroke-width:2}
.chart .whisk{stroke:#2166ac;stroke-width:1.5}.chart .pt{fill:#2166ac}
.verdicts li{margin:2px 0}.sentence{font-size:15px}
.legend{list-style:none;padding:0;color:#555;font-size:13px}.legend li{margin:3px 0}.legend svg{vertical-align:middle}
.muted{color:#666;font-size:13px}
footer{color:#888;font-size:12px;text-align:center;margin-top:12px}
"""


def _section(sid: str, title: str | None, body: str, css: str = "") -> str:
    """A page section; with no title, just its body (a one-line section)."""
    cls = f' class="{css}"' if css else ""
    heading = f"<h2>{esc(title)}</h2>" if title else ""
    return f'<section id="{sid}"{cls}>{heading}{body}</section>'


def _list(items: list, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f"<ul{cls}>{''.join(f'<li>{esc(s)}</li>' for s in items)}</ul>"


def _more(total: int) -> str:
    return f'<p class="muted">and {total - MAX_LISTED} more not shown</p>' if total > MAX_LISTED else ""


def _headline(h: dict) -> str:
    meta = " · ".join(
        s for s in (f"n = {esc(h['n'])}" if h.get("n") is not None else "", esc(h.get("source") or "")) if s
    )
    main = (
        f'<div class="hl-main"><div class="hl-name">{esc(h.get("name", "result"))}</div>'
        f'<div class="hl-value">{fmt_pct(h.get("value"))}</div>'
        f'<div class="hl-ci">{"95% CI " + fmt_ci(h.get("ci95")) if fmt_ci(h.get("ci95")) else ""}</div>'
        f'<div class="hl-meta">{meta}</div></div>'
    )
    rows = []
    if isinstance(h.get("value"), int | float):
        rows.append(("this model", h["value"], h.get("ci95"), True))
    itself = set(h.get("same_as_model") or [])
    rows += [
        (f"{name} (this model)" if name in itself else name, v, None, False)
        for name, v in (h.get("baselines") or {}).items()
        if isinstance(v, int | float)
    ]
    notes = "".join(
        f'<p class="muted">{esc(name)}: {esc(note)}</p>' for name, note in (h.get("baseline_notes") or {}).items()
    )
    return f'<div class="headline">{main}{bars_html(rows) if rows else ""}</div>{notes}'


def _metrics(m: dict) -> str:
    summary = [
        f'<tr><th>{label}</th><td class="num">{fmt_pct(m[key])}</td><td class="ci">{fmt_ci(m.get(key + "_ci95"))}</td>'
        f"</tr>"
        for key, label in (
            ("accuracy", "accuracy"),
            ("balanced_accuracy", "balanced accuracy"),
            ("f1_macro", "macro F1"),
        )
        if key in m
    ]
    parts = [f'<table class="summary"><tbody>{"".join(summary)}</tbody></table>'] if summary else []
    per_class = m.get("per_class") or {}
    confusion = m.get("confusion")
    blocks = []
    if confusion:
        names = list(per_class) if len(per_class) == len(confusion) else [str(i) for i in range(len(confusion))]
        blocks.append(
            "<div><h3>Confusion matrix</h3>"
            '<p class="muted">rows: true class · columns: predicted · shade: share of the row</p>'
            f"{confusion_html(confusion, names)}</div>"
        )
    if per_class:
        blocks.append(f"<div><h3>Per class</h3>{per_class_html(per_class)}</div>")
    if blocks:
        parts.append(f'<div class="two">{"".join(blocks)}</div>')
    return "".join(parts)


def _card(item: dict) -> str:
    wrong = item.get("true") != item.get("predicted")
    pred_cls = ' class="wrong"' if wrong else ""
    return (
        f'<div class="card"><div class="frame">{thumb_html(item.get("image"), str(item.get("name", "")))}</div>'
        f'<div class="name" title="{esc(item.get("name", ""))}">{esc(item.get("name", ""))}</div>'
        f"<div>true: {esc(item.get('true', '?'))}</div>"
        f"<div{pred_cls}>predicted: {esc(item.get('predicted', '?'))}</div>"
        f"<div>confidence: {fmt_pct(item.get('confidence'))}</div></div>"
    )


def _confidence(item: dict) -> float:
    c = item.get("confidence")
    return float(c) if isinstance(c, int | float) else 0.5


def _gallery_count(key: str, shown: int, total: int) -> str:
    """'24 of 62 shown' (the count is every wrong answer, not the display cap); '5, all shown' when nothing is cut."""
    if key == "mistakes":
        return f"{total}, all shown" if shown >= total else f"{shown} of {total} shown"
    return f"{total}, all shown" if shown >= total else f"the {shown} least confident of {total} correct"


def _gallery(g: dict) -> str:
    parts = []
    counts = g.get("counts") or {}
    for key, title, note in (
        ("mistakes", "Mistakes", "wrong predictions, most confident first"),
        ("uncertain_correct", "Correct but uncertain", "right answers given with the least confidence"),
    ):
        items = sorted(g.get(key) or [], key=lambda it: _confidence(it), reverse=key == "mistakes")
        if items:
            shown = items[:MAX_LISTED]
            total = max(int(counts.get(key, len(items))), len(shown))
            cards = "".join(_card(it) for it in shown)
            parts.append(
                f'<h3 data-shown="{len(shown)}" data-total="{total}">{title} ({_gallery_count(key, len(shown), total)})'
                f'</h3><p class="muted">{note}</p><div class="gallery">{cards}</div>'
            )
    return "".join(parts)


def _calibration(c: dict) -> str:
    facts = []
    if c.get("ece") is not None:
        facts.append(f"expected calibration error (ECE): <b>{float(c['ece']):.3f}</b>")
    if c.get("temperature") is not None:
        facts.append(f"temperature scaling: T = <b>{float(c['temperature']):.3g}</b>")
    if c.get("ece_after") is not None:
        facts.append(f"ECE after scaling: <b>{float(c['ece_after']):.3f}</b>")
    text = f'<div class="grow"><ul>{"".join(f"<li>{f}</li>" for f in facts)}</ul>{reliability_legend()}</div>'

    chart = reliability_svg(c["bins"]) if c.get("bins") else ""
    return f'<div class="two">{chart}{text}</div>'


def _images(images: dict) -> str:
    return "".join(figure_html(path, caption) for caption, path in images.items() if path)


def _evidence(e: dict) -> str:
    parts = [f"<p>{esc(e['caption'])}</p>"] if e.get("caption") else []
    if e.get("columns") or e.get("rows"):
        parts.append(f'<div class="scroll">{table(e.get("columns") or [], e.get("rows") or [], "evidence")}</div>')
    if e.get("verdicts"):
        parts.append("<h3>Verdicts</h3>" + _list(e["verdicts"], "verdicts"))
    return "".join(parts)


def _learning_curve(lc: dict) -> str:
    parts = [f'<p class="sentence">{esc(lc["sentence"])}</p>'] if lc.get("sentence") else []
    points = lc.get("points") or []
    blocks = [curve_svg(points)] if points else []
    if points:
        rows = [[p.get("n"), fmt_pct(p.get("accuracy")), fmt_ci(p.get("ci95"))] for p in points]
        blocks.append(table(["training images", "accuracy", "95% CI"], rows))
    parts.append(f'<div class="two">{"".join(blocks)}</div>')
    if lc.get("image"):
        parts.append(figure_html(lc["image"], "learning curve"))
    return "".join(parts)


def _scan(s: dict) -> str:
    parts = []
    classes = s.get("classes") or {}
    if "files" in s:
        parts.append(f"<p><b>{esc(s['files'])}</b> image files in <b>{len(classes)}</b> classes.</p>")
    if s.get("warnings"):
        parts.append(_list(s["warnings"], "verdicts"))
    blocks = []
    if classes:
        top = max(classes.values()) or 1
        rows = "".join(
            f'<tr><th>{esc(c)}</th><td class="num">{esc(n)}</td><td style="width:220px"><span class="bartrack" '
            f'style="display:block"><span class="bar base" style="width:{100 * n / top:.1f}%"></span></span></td></tr>'
            for c, n in classes.items()
        )
        blocks.append(f"<div><h3>Images per class</h3><table><tbody>{rows}</tbody></table></div>")
    refused = s.get("refused") or []
    if refused:
        rows = [[r.get("path", ""), r.get("reason", "")] for r in refused[:MAX_LISTED]]
        blocks.append(
            f"<div><h3>Refused files ({len(refused)})</h3>{table(['file', 'reason'], rows)}{_more(len(refused))}</div>"
        )
    parts.append(f'<div class="two">{"".join(blocks)}</div>')
    return "".join(parts)


def _pair(p: dict, labels: bool) -> str:
    sides = []
    for key in ("a", "b"):
        name = p.get(f"{key}_name", key)
        label = f"<div>label: <b>{esc(p.get(f'{key}_label', '?'))}</b></div>" if labels else ""
        sides.append(
            f'<div class="side">{thumb_html(p.get(key), str(name))}<div title="{esc(name)}">'
            f"{esc(name)}</div>{label}</div>"
        )
    sim = p.get("similarity")
    if p.get("exact"):
        how = "same<br><b>pixels</b>"
    else:
        how = f"similarity<br><b>{float(sim):.3f}</b>" if isinstance(sim, int | float) else "similarity<br><b>–</b>"
    return f'<div class="pair">{sides[0]}<div class="sim">{how}</div>{sides[1]}</div>'


def _duplicates_listed(d: dict) -> bool:
    return bool(d.get("leakage") or d.get("label_conflicts"))


def _duplicates(d: dict) -> str:
    parts = [f"<p>{esc(d['summary'])}</p>"] if d.get("summary") else []
    counts = d.get("counts") or {}
    for key, title, note, labels in (
        ("leakage", "Same photo in training and held-out images", "these inflate the score: remove one of each", False),
        ("label_conflicts", "Same photo, different labels", "one of each pair is mislabelled, or filed twice", True),
    ):
        pairs = d.get(key) or []
        if pairs:
            total = int(counts.get(key, len(pairs)))
            body = "".join(_pair(p, labels) for p in pairs[:MAX_LISTED])
            parts.append(f'<h3>{title} ({total})</h3><p class="muted">{note}</p><div>{body}</div>{_more(total)}')
    return "".join(parts) or "<p>No duplicates found.</p>"


def _issue_card(item: dict) -> str:
    score = item.get("score")
    score_txt = f"{float(score):.3f}" if isinstance(score, int | float) else "–"
    return (
        f'<div class="card"><div class="frame">{thumb_html(item.get("image"), str(item.get("name", "")))}</div>'
        f'<div class="name" title="{esc(item.get("name", ""))}">{esc(item.get("name", ""))}</div>'
        f"<div>given: {esc(item.get('given', '?'))} ({fmt_pct(item.get('p_given'))})</div>"
        f'<div class="wrong">suggested: {esc(item.get("suggested", "?"))} ({fmt_pct(item.get("p_suggested"))})</div>'
        f"<div>score: {score_txt}</div></div>"
    )


def _label_issues(d: dict) -> str:
    items = d.get("items") or []
    count = int(d.get("count", len(items)))
    n = d.get("n")
    of = f" of {esc(n)}" if n is not None else ""
    method = f'<p class="muted">{esc(d["method"])}</p>' if d.get("method") else ""
    if not count:
        among = f"the {esc(n)}" if n is not None else "the"
        return f"<p>no label issues found among {among} images</p>{method}"
    shown = f" (the first {len(items)} shown)" if len(items) < count else ""
    return (
        f"<p><b>{count}</b>{of} images may be mislabelled{shown}: check each one, then fix its folder or keep it.</p>"
        f"{method}"
        '<p class="muted">most suspicious first · given: the label on disk (the model\'s probability for it) · '
        "suggested: the model's label · score: the given label's quality, lower = more likely wrong</p>"
        f'<div class="gallery">{"".join(_issue_card(it) for it in items[:MAX_LISTED])}</div>{_more(len(items))}'
    )


# (key, section title or a function of the section's data (None: no heading), builder, extra css class), in page order
SECTIONS = (
    ("headline", "Result", _headline, ""),
    ("metrics", "Metrics", _metrics, ""),
    ("calibration", "Calibration", _calibration, ""),
    ("gallery", "Examples", _gallery, ""),
    ("label_issues", "Suspected label errors", _label_issues, ""),
    ("learning_curve", "Learning curve", _learning_curve, ""),
    ("evidence", "Evidence for the choice", _evidence, ""),
    ("images", "Plots", _images, ""),
    ("scan", "Data", _scan, ""),
    ("duplicates", lambda d: "Duplicates" if _duplicates_listed(d) else None, _duplicates, ""),
)


def render_report(data: dict) -> str:
    """The whole report page as one HTML string (see the module docstring for the `data` contract)."""
    title = str(data.get("title") or "Training report")
    body = [f"<h1>{esc(title)}</h1>"]
    if data.get("subtitle"):
        body.append(f'<p class="subtitle">{esc(data["subtitle"])}</p>')
    if data.get("provenance"):
        body.append(
            f'<ul id="provenance" class="provenance">{"".join(f"<li>{esc(s)}</li>" for s in data["provenance"])}</ul>'
        )
    if data.get("warnings"):
        body.append(_section("warnings", "Warnings", _list(list(data["warnings"])), "warnings"))
    for key, heading, build, css in SECTIONS:
        if data.get(key):
            title = heading(data[key]) if callable(heading) else heading  # None: a one-line section
            body.append(_section(key, title, build(data[key]), css))
    return html_document(title, CSS, body, "self-contained report written by transfer · no external resources")


def html_document(title: str, css: str, parts: list[str], footer: str) -> str:
    """One self-contained HTML page: the title, the inline style, the parts in order, the footer."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{css}</style></head>"
        f"<body><main>{''.join(parts)}<footer>{footer}</footer></main></body></html>\n"
    )


def write_report(data: dict, path: str | Path) -> Path:
    """Render the page and write it atomically (transfer.atomic): a reader never sees half a page, and a crash
    leaves the previous report in place."""
    return write_text_atomic(path, render_report(data))

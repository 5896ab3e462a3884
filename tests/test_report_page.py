"""The HTML report page: plain-Python checks (escaping, omitted sections, atomic write) and one real-browser
check in the system Chromium (no console errors, every image decodes, the numbers are on the page)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests import browser
from transfer.eval.page import render_report, write_report

CLASSES = ["cat", "dog", "<script>alert(1)</script>", "bird"]


def _photo(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (200, 150)) -> Path:
    im = Image.new("RGB", size, colour)
    ImageDraw.Draw(im).ellipse((30, 20, size[0] - 30, size[1] - 20), fill=(255, 255, 255), outline=(0, 0, 0))
    im.save(path)
    return path


def _plot(path: Path, title: str) -> Path:
    """A stand-in for a matplotlib PNG: axes and one line, drawn with PIL."""
    im = Image.new("RGB", (640, 320), "white")
    d = ImageDraw.Draw(im)
    d.line((40, 280, 620, 280), fill="black")
    d.line((40, 20, 40, 280), fill="black")
    d.line([(40 + 58 * i, 270 - int(200 * (1 - 0.7**i))) for i in range(11)], fill=(33, 102, 172), width=3)
    d.text((260, 4), title, fill="black")
    im.save(path)
    return path


def _digit(k: int) -> np.ndarray:
    """An 8x8 grayscale array (like sklearn's digits) with a class-dependent bar: a numpy thumbnail source."""
    a = np.zeros((8, 8), dtype=np.uint8)
    a[1:7, k + 2] = 255
    return a


def full_data(tmp_path: Path) -> dict:
    """A data dict with every section filled, images from files and from numpy arrays."""
    photos = [_photo(tmp_path / f"img{i}.jpg", c) for i, c in enumerate([(200, 60, 60), (60, 160, 60), (60, 60, 200)])]
    rgb = np.zeros((64, 96, 3), dtype=np.uint8)
    rgb[:, :48] = (230, 180, 20)
    confusion = [[30, 3, 1, 0], [4, 35, 0, 2], [1, 0, 25, 5], [0, 2, 3, 42]]
    per_class = {
        c: {
            "precision": 0.8 + 0.03 * i,
            "precision_ci95": [0.7 + 0.03 * i, 0.9],
            "recall": 0.78 + 0.04 * i,
            "recall_ci95": [0.66, 0.88 + 0.02 * i],
            "support": sum(confusion[i]),
        }
        for i, c in enumerate(CLASSES)
    }
    item = {"true": "cat", "predicted": "dog", "confidence": 0.91, "name": "cat/IMG_0042.jpg"}
    return {
        "title": "resnet50 on pets",
        "subtitle": "outputs/2025-01-01/12-00-00 · resnet50.a1_in1k · frozen",
        "warnings": ["model is not clearly above the linear-probe baseline"],
        "headline": {
            "name": "test accuracy",
            "value": 0.87,
            "ci95": [0.81, 0.92],
            "n": 153,
            "source": "test/ folder, scored once",
            "baselines": {"majority class": 0.41, "linear probe": 0.80},
        },
        "metrics": {
            "accuracy": 0.87,
            "accuracy_ci95": [0.81, 0.92],
            "balanced_accuracy": 0.85,
            "balanced_accuracy_ci95": [0.79, 0.90],
            "f1_macro": 0.84,
            "per_class": per_class,
            "confusion": confusion,
        },
        "gallery": {
            "mistakes": [
                {**item, "image": photos[0]},
                {**item, "image": _digit(1), "name": "digit_1.png", "true": "bird"},
                {**item, "image": rgb, "predicted": CLASSES[2], "confidence": 0.55},
            ],
            "uncertain_correct": [{**item, "image": photos[1], "predicted": "cat", "confidence": 0.41}],
        },
        "calibration": {
            "ece": 0.083,
            "ece_after": 0.031,
            "temperature": 1.7,
            "bins": [
                {
                    "lo": i / 10,
                    "hi": (i + 1) / 10,
                    "confidence": i / 10 + 0.05,
                    "accuracy": i / 10 + 0.05 - 0.03 * (i - 5),
                    "count": 3 * i,
                }
                for i in range(2, 10)
            ],
        },
        "images": {
            "training curves": _plot(tmp_path / "curves.png", "training curves"),
            "regimes": _plot(tmp_path / "regimes.png", "regimes"),
        },
        "evidence": {
            "columns": ["regime", "val accuracy", "seconds"],
            "rows": [["frozen", 0.84, 12.5], ["partial", 0.87, 95.0], ["full", 0.86, 310.2]],
            "caption": "regime=auto measured three regimes within 600 s",
            "verdicts": ["partial beats frozen by 3 points (McNemar p = 0.04)"],
        },
        "learning_curve": {
            "points": [
                {"n": 20, "accuracy": 0.55, "ci95": [0.45, 0.65]},
                {"n": 50, "accuracy": 0.72, "ci95": [0.64, 0.80]},
                {"n": 100, "accuracy": 0.82, "ci95": [0.76, 0.88]},
                {"n": 153, "accuracy": 0.87, "ci95": [0.81, 0.92]},
            ],
            "sentence": "still rising: more images would likely help",
            "image": None,
        },
        "scan": {
            "files": 612,
            "classes": {c: 150 + 5 * i for i, c in enumerate(CLASSES)},
            "refused": [{"path": "dog/broken.jpg", "reason": "truncated JPEG"}],
            "warnings": ["class 'bird' has 3x the images of 'cat'"],
        },
        "duplicates": {
            "summary": "2 duplicate pair(s) among the 612 images (1 with the same pixels, 1 near copies); 2 shown",
            "counts": {"leakage": 1, "label_conflicts": 1},
            "leakage": [
                {"a": photos[2], "b": photos[2], "similarity": 0.998, "a_name": "train/x.jpg", "b_name": "test/x.jpg"}
                | {"exact": False, "split": "test"}
            ],
            "label_conflicts": [
                {
                    "a": _digit(3),
                    "b": _digit(3),
                    "similarity": 1.0,
                    "exact": True,
                    "a_name": "cat/a.png",
                    "b_name": "dog/a.png",
                    "a_label": "cat",
                    "b_label": "dog",
                }
            ],
        },
    }


# ---------------------------------------------------------------- plain Python


def test_class_names_are_escaped(tmp_path):
    page = render_report(full_data(tmp_path))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()  # the page itself runs no script at all


def test_gallery_order_is_what_the_page_says():
    items = [{"image": np.zeros((8, 8), np.uint8), "name": f"n{c}", "confidence": c} for c in (0.6, 0.9, 0.7)]
    page = render_report({"gallery": {"mistakes": items, "uncertain_correct": items}})
    mistakes, uncertain = page.split("Correct but uncertain")
    assert re.findall(r'alt="(n[0-9.]+)"', mistakes) == ["n0.9", "n0.7", "n0.6"]  # most confident mistakes first
    assert re.findall(r'alt="(n[0-9.]+)"', uncertain) == ["n0.6", "n0.7", "n0.9"]  # least confident right answers


def test_a_baseline_that_is_the_model_itself_is_labelled_and_its_note_shown():
    h = {"name": "cv accuracy", "value": 0.5, "baselines": {"majority class": 0.34, "linear probe": 0.5}}
    h |= {"same_as_model": ["linear probe"], "baseline_notes": {"linear probe": "the chosen model <is> this probe"}}
    page = render_report({"headline": h})
    assert "linear probe (this model)" in page and "majority class" in page
    assert "linear probe: the chosen model &lt;is&gt; this probe" in page


def test_missing_sections_are_omitted():
    page = render_report({"title": "only a title"})
    assert "<h1>only a title</h1>" in page
    for sid in ("warnings", "headline", "metrics", "calibration", "gallery", "scan", "duplicates", "evidence"):
        assert f'id="{sid}"' not in page
    page = render_report({"headline": {"name": "cv accuracy", "value": 0.5}})
    assert 'id="headline"' in page and 'id="metrics"' not in page
    assert "50.0%" in page and "95% CI" not in page


def test_page_has_no_external_resources(tmp_path):
    page = render_report(full_data(tmp_path))
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 3 + 1 + 2 + 4  # gallery thumbs, plots, duplicate pairs
    assert all(s.startswith("data:image/") for s in srcs)
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_bad_image_is_shown_as_a_note_not_a_crash(tmp_path):
    data = {"gallery": {"mistakes": [{"image": tmp_path / "gone.jpg", "true": "a", "predicted": "b", "name": "x"}]}}
    page = render_report(data)
    assert "image unavailable" in page and "gone.jpg" in page and "<img" not in page
    with pytest.raises(TypeError, match="uint8"):
        from transfer.eval.page_parts import thumbnail_uri

        thumbnail_uri(np.zeros((4, 4), dtype=np.float32))


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "run" / "report.html"
    out.parent.mkdir()
    out.write_text("old page")
    assert write_report({"title": "new"}, out) == out
    assert "<h1>new</h1>" in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # a write that fails half-way keeps the old page, no temp file
    with pytest.raises(OSError, match="No space"):
        write_report({"title": "newer"}, out)
    assert "<h1>new</h1>" in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]


# ---------------------------------------------------------------- real browser


def test_missing_browser_skips_locally_but_fails_in_ci(monkeypatch):
    monkeypatch.setattr(browser, "chromium", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test: no chromium"):
        browser.need_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no chromium on PATH"):
        browser.need_browser()


@pytest.mark.slow  # ~7 s on 2 busy cores, mostly starting Chromium; CI runs the slow tests too
def test_page_in_chromium(tmp_path):
    page_path = write_report(full_data(tmp_path), tmp_path / "report.html")
    shot = tmp_path / "report.png"
    with browser.open_page(page_path) as (page, errors):
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
        headline = page.inner_text("#headline")
        cells = page.locator("table.confusion td.cm").count()
        rows = page.locator("table.confusion tbody tr").count()
        overflow = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(shot), full_page=True)
    assert errors == []
    assert len(widths) == 10 and all(w > 0 for w in widths), widths
    assert "87.0%" in headline and "[81.0%, 92.0%]" in headline and "n = 153" in headline
    assert (rows, cells) == (4, 16)
    assert overflow <= 1280  # nothing wider than a laptop screen
    with Image.open(shot) as im:
        assert im.width == 1280 and im.height > 1500
        assert len(set(im.convert("L").resize((64, 64)).getdata())) > 20  # not a blank page
    assert shot.stat().st_size > 50_000


def test_duplicates_section_lists_pairs_under_its_summary_and_is_one_line_without_them(tmp_path):
    page = render_report(full_data(tmp_path))
    section = page.split('<section id="duplicates">')[1].split("</section>")[0]
    assert section.startswith("<h2>Duplicates</h2><p>2 duplicate pair(s) among the 612 images")
    assert "Same photo in training and held-out images (1)" in section and "Same photo, different labels (1)" in section
    assert "same<br><b>pixels</b>" in section and "similarity<br><b>0.998</b>" in section
    none = {"summary": "No duplicates among the 612 images.", "leakage": [], "label_conflicts": [], "warnings": []}
    page = render_report({"duplicates": none})
    assert '<section id="duplicates"><p>No duplicates among the 612 images.</p></section>' in page


def test_the_mistake_count_is_every_wrong_answer_not_the_display_cap():
    from transfer.eval.report_sections import GALLERY_SIZE, gallery_section

    labels = torch.tensor([0] * 100)
    preds = [1] * 62 + [0] * 38  # 62 wrong of 100
    probs = torch.nn.functional.one_hot(torch.tensor(preds), 2).float() * 0.8 + 0.1
    g = gallery_section(probs, labels, ["a", "b"], [f"{i}.png" for i in range(100)], torch.zeros(100, 1, 8, 8).byte())
    assert len(g["mistakes"]) == GALLERY_SIZE == 24 and g["counts"] == {"mistakes": 62, "uncertain_correct": 38}
    page = render_report({"gallery": g})
    assert (
        "Mistakes (24 of 62 shown)" in page and "Correct but uncertain (the 24 least confident of 38 correct)" in page
    )
    few = gallery_section(probs[:20], labels[:20], ["a", "b"], [f"{i}.png" for i in range(20)])
    assert "Mistakes (20, all shown)" in render_report({"gallery": few})


def test_the_calibration_legend_names_every_mark_the_diagram_draws(tmp_path):
    from transfer.eval.page_parts import RELIABILITY_MARKS, reliability_svg

    bins = full_data(tmp_path)["calibration"]["bins"]
    drawn = set(re.findall(r'class="([a-z]+)"', reliability_svg(bins))) - {"chart", "frame", "grid"}
    page = render_report({"calibration": full_data(tmp_path)["calibration"]})
    legend = set(re.findall(r'<li data-mark="([a-z]+)">', page))
    assert drawn == legend == {m[0] for m in RELIABILITY_MARKS}  # acc, gap (the orange bars), conf, ideal, cnt
    assert "orange" in page


def test_the_provenance_lines_sit_under_the_title():
    page = render_report({"title": "t", "subtitle": "s", "provenance": ["weights: a <file> (sha256 ab)"]})
    assert (
        '<p class="subtitle">s</p><ul id="provenance" class="provenance"><li>weights: a &lt;file&gt; (sha256 ab)'
        in page
    )

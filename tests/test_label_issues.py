"""Suspected label errors (transfer/eval/label_issues.py): exact behaviour on small synthetic probabilities, the CSV,
the report-page section, and bench/label_issues.py in its tiny mode on the real photos."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_run import run_bench

from tests.shared_data import need_shared_data
from transfer.eval.label_issues import CSV_COLUMNS, find_label_issues, label_quality_scores
from transfer.eval.page import render_report
from transfer.eval.report_sections import label_issues_section

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cloudy", "rain", "shine"]


def _probs(per_class: int = 20, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels and out-of-fold-like probabilities: every image leans to its own class with confidence 0.6 .. 0.95."""
    y = np.repeat(np.arange(k), per_class)
    conf = np.tile(np.linspace(0.6, 0.95, per_class), k)
    p = np.repeat(((1 - conf) / (k - 1))[:, None], k, axis=1)
    p[np.arange(len(y)), y] = conf
    return y, p


def _names(n: int) -> list[str]:
    return [f"{CLASSES[i * 3 // n]}/img{i:02d}.jpg" for i in range(n)]


def test_planted_flips_are_found_ranked_with_given_and_suggested_label():
    y, p = _probs()
    given = y.copy()
    given[17], given[38] = 2, 0  # two confidently seen images filed under the wrong class
    found = find_label_issues(given, p, CLASSES, _names(len(y)))
    assert [i.index for i in found.issues] == [38, 17]  # the more confident the model, the lower the given's score
    first, second = found.issues
    assert (first.given, first.suggested, second.given, second.suggested) == ("cloudy", "rain", "shine", "cloudy")
    assert first.score == pytest.approx(p[38, 0]) and first.p_given == pytest.approx(p[38, 0])
    assert first.p_suggested == pytest.approx(p[38, 1]) and first.score < second.score
    assert first.name == "rain/img38.jpg"
    assert found.summary() == "2 images may be mislabelled (of 60): see report"
    assert (found.filter_by, found.ranked_by, found.n_images) == ("both", "self_confidence", 60)


def test_clean_labels_flag_nothing_and_say_so():
    y, p = _probs()
    found = find_label_issues(torch.as_tensor(y), torch.as_tensor(p, dtype=torch.float32), CLASSES, _names(len(y)))
    assert len(found) == 0 and found.summary() == "no label issues found among 60 images"


def test_one_flag_reads_in_the_singular_and_every_filter_runs():
    y, p = _probs()
    given = y.copy()
    given[19] = 1
    for filter_by in ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"):
        found = find_label_issues(given, p, CLASSES, _names(len(y)), filter_by=filter_by)
        assert [i.index for i in found.issues] == [19], filter_by
    assert found.summary() == "1 image may be mislabelled (of 60): see report"


def test_a_class_without_images_and_a_single_class_are_handled():
    y, p = _probs(k=2)
    p4 = np.concatenate([p * 0.98, np.full((len(y), 2), 0.01)], axis=1)  # 4 classes, 2 of them never given
    given = y.copy()
    given[19] = 1
    found = find_label_issues(given, p4, [*CLASSES, "sunrise"], [str(i) for i in range(len(y))])
    assert [(i.index, i.given, i.suggested) for i in found.issues] == [(19, "rain", "cloudy")]
    only = find_label_issues(np.zeros(5, int), np.full((5, 3), 1 / 3), CLASSES, list("abcde"))
    assert len(only) == 0 and "nothing to confuse" in only.notes[0]


def test_bad_inputs_are_refused_with_the_reason():
    y, p = _probs()
    names = _names(len(y))
    with pytest.raises(ValueError, match="N x K"):
        find_label_issues(y, p[:-1], CLASSES, names)
    with pytest.raises(ValueError, match="3 columns for 2 classes"):
        find_label_issues(y, p, CLASSES[:2], names)
    with pytest.raises(ValueError, match="names"):
        find_label_issues(y, p, CLASSES, names[:3])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        find_label_issues(y + 1, p, CLASSES, names)
    with pytest.raises(ValueError, match="finite"):
        find_label_issues(y, p * np.nan, CLASSES, names)
    with pytest.raises(ValueError, match="filter_by='nope'"):
        find_label_issues(y, p, CLASSES, names, filter_by="nope")


def test_label_quality_scores_rank_every_image():
    y, p = _probs()
    q = label_quality_scores(y, p)
    np.testing.assert_allclose(q, p[np.arange(len(y)), y])  # self-confidence: the model's probability of the label
    assert label_quality_scores(y, p, "normalized_margin").shape == (60,)


def test_csv_has_the_ranked_rows_and_the_columns(tmp_path):
    y, p = _probs()
    given = y.copy()
    given[17], given[38] = 2, 0
    found = find_label_issues(given, p, CLASSES, _names(len(y)))
    path = found.to_csv(tmp_path / "run" / "label_issues.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["rank"], r["index"], r["name"], r["given"], r["suggested"]) for r in rows] == [
        ("1", "38", "rain/img38.jpg", "cloudy", "rain"),
        ("2", "17", "cloudy/img17.jpg", "shine", "cloudy"),
    ]
    assert float(rows[0]["score"]) == pytest.approx(p[38, 0], abs=1e-6)
    empty = find_label_issues(y, p, CLASSES, _names(len(y))).to_csv(tmp_path / "none.csv")
    assert empty.read_text().strip() == ",".join(CSV_COLUMNS)  # the header alone: the search ran, nothing found
    assert json.loads(json.dumps(found.to_dict()))["count"] == 2


def test_report_section_shows_thumbnails_given_and_suggested():
    y, p = _probs()
    given = y.copy()
    given[17], given[38] = 2, 0
    found = find_label_issues(given, p, CLASSES, _names(len(y)))
    pixels = torch.randint(0, 256, (len(y), 3, 40, 40), dtype=torch.uint8)
    section = label_issues_section(found, pixels)
    assert section["count"] == 2 and section["n"] == 60 and len(section["items"]) == 2
    assert section["items"][0]["image"].shape == (40, 40, 3)  # HxWx3 for the page
    page = render_report({"label_issues": section})
    assert 'id="label_issues"' in page and "Suspected label errors" in page
    assert "<b>2</b> of 60 images may be mislabelled" in page
    assert page.count('src="data:image/') == 2
    body = page.split('id="label_issues"')[1]
    assert body.index("img38.jpg") < body.index("img17.jpg")  # ranked as found
    assert "given: cloudy" in body and "suggested: rain" in body
    none = render_report({"label_issues": label_issues_section(find_label_issues(y, p, CLASSES, _names(60)))})
    assert "no label issues found among the 60 images" in none
    assert 'id="label_issues"' not in render_report({"title": "no key, no section"})


# ---------------------------------------------------------------- the bench, tiny


@pytest.mark.slow  # decodes the 1,009 photos and extracts 96 of them: ~40 s on 2 cores
def test_label_issues_bench_tiny(tmp_path):
    need_shared_data()
    lines, out = run_bench("label_issues.py", "--tiny", "--cache-dir", str(tmp_path / "cache"), timeout=600)
    assert out["train_images"] == 48 and out["seeds"] == [0] and out["folds"] == 3
    for row in out["summary"].values():
        assert 0 <= row["precision_mean"] <= 1 and 0 <= row["recall_mean"] <= 1
    assert out["per_seed"][0]["flipped"] == 2
    assert out["unflipped"]["flagged"] == len(out["unflipped"]["issues"])
    assert any(line.startswith("seed 0:") for line in lines)


@pytest.mark.slow  # starts Chromium: ~7 s on 2 busy cores
def test_label_issues_section_in_chromium(tmp_path):
    from tests import browser
    from transfer.eval.page import write_report

    y, p = _probs()
    given = y.copy()
    given[17], given[38] = 2, 0
    found = find_label_issues(given, p, CLASSES, _names(len(y)))
    pixels = torch.randint(0, 256, (len(y), 3, 64, 64), dtype=torch.uint8)
    page_path = write_report(
        {"title": "label issues", "label_issues": label_issues_section(found, pixels)}, tmp_path / "r.html"
    )
    with browser.open_page(page_path) as (page, errors):
        widths = page.eval_on_selector_all("#label_issues img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
        text = page.inner_text("#label_issues")
    assert errors == []
    assert len(widths) == 2 and all(w > 0 for w in widths)
    assert "2 of 60 images may be mislabelled" in text and "suggested: rain" in text

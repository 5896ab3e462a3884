"""The page of a real fit, read in the system Chromium, holds what the run's files hold (issue 20.9): the mistake
count equals the wrong rows of predictions.csv, the provenance line is the card's, a set without duplicates gets the
one-line duplicates section and nothing else, and a planted exact copy of a training photo in test/ is found and
shown. Real photos of ../shared/data/weather (train/ + test/ folders, a few per class)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests import browser
from tests.requests import fit_request
from transfer.backbones.provenance import provenance_line

WEATHER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "weather"
PER_CLASS = {"train": 8, "test": 4}  # 4 classes: 48 photos, enough for the near-copy search (22 distinct images)


def _weather_subset(root: Path) -> Path:
    """The first photos of each class of ../shared/data/weather, in train/ and test/ (no duplicates among them)."""
    if not WEATHER.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{WEATHER} is missing under CI: ../shared/data must be beside the checkout")
        pytest.skip(f"real photos not here: {WEATHER} (../shared/data beside the checkout)")
    for split, n in PER_CLASS.items():
        for cdir in sorted(p for p in (WEATHER / split).iterdir() if p.is_dir()):
            (root / split / cdir.name).mkdir(parents=True)
            for f in sorted(cdir.iterdir())[:n]:
                shutil.copyfile(f, root / split / cdir.name / f.name)
    return root


def _fit(out: Path, data: Path) -> dict:
    from transfer.studies.fit import run_fit

    overrides = ("data=folder", f"data.root={data}", "augment=none", f"features.cache_dir={out.parent / 'features'}")
    return run_fit(fit_request(out, *overrides))


def _read_page(path: Path) -> dict:
    """What a reader sees: the visible text of the parts the assertions are about."""
    with browser.open_page(path) as (page, errors):
        facts = {
            "errors": errors,
            "title": page.inner_text("h1"),
            "provenance": page.eval_on_selector_all("#provenance li", "els => els.map(e => e.innerText)"),
            "warnings": page.inner_text("#warnings") if page.locator("#warnings").count() else "",
            "headline": page.inner_text("#headline"),
            "gallery_headings": page.eval_on_selector_all("#gallery h3", "els => els.map(e => e.innerText)"),
            "duplicates": page.inner_text("#duplicates"),
            "duplicates_headings": page.eval_on_selector_all("#duplicates h2, #duplicates h3", "e => e.length"),
            "pairs": page.eval_on_selector_all("#duplicates .pair", "els => els.map(e => e.innerText)"),
            "pair_images": page.eval_on_selector_all(
                "#duplicates .pair img", "els => els.map(e => e.complete ? e.naturalWidth : 0)"
            ),
        }
    return facts


def _mistakes_on_page(headings: list[str]) -> int:
    """The count in 'Mistakes (24 of 62 shown)' / 'Mistakes (5, all shown)'; no heading: no mistakes."""
    for h in headings:
        m = re.fullmatch(r"Mistakes \((?:(\d+), all shown|\d+ of (\d+) shown)\)", h.strip())
        if m:
            return int(m.group(1) or m.group(2))
    return 0


def _wrong_rows(run: Path, split: str) -> int:
    with (run / "predictions.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    assert rows, f"no {split} rows in predictions.csv"
    return sum(r["label"] != r["prediction"] for r in rows)


@pytest.mark.slow  # two small fits on 48 real photos and two Chromium starts: ~20 s on 2 busy cores
def test_the_rendered_page_states_what_the_runs_files_hold(tmp_path):
    browser.need_browser()
    data = _weather_subset(tmp_path / "weather")
    run = tmp_path / "run"
    report = _fit(run, data)
    seen = _read_page(run / "report.html")
    assert seen["errors"] == []
    card = json.loads((run / "model" / "card.json").read_text())

    # the mistakes the page counts are the wrong rows of predictions.csv (the test/ split: the headline's images)
    assert report["eval_split"] == "test" and "no test/ folder" not in seen["headline"]
    assert _mistakes_on_page(seen["gallery_headings"]) == _wrong_rows(run, "test")

    # the weights line is the card's, and random weights (lenet5 has none published) are the first warning
    assert seen["provenance"][0] == f"weights: {provenance_line(card['weights'])}"
    assert card["weights"]["kind"] == "random" and "from random initialisation" in seen["title"]
    assert seen["warnings"].split("\n")[1].startswith("random weights: lenet5 was not pretrained")
    fc = card["feature_cache"]
    assert seen["provenance"][1] == f"feature cache: {fc['dir']}: {', '.join(fc['namespaces'].values())}"

    # no duplicates among these photos: the section is its one line, no heading, no pair, no warning
    assert seen["duplicates"].strip().startswith("No duplicates among the 48 images")
    assert "\n" not in seen["duplicates"].strip() and seen["duplicates_headings"] == 0 and seen["pairs"] == []
    assert "duplicate" not in seen["warnings"]

    # a training photo copied into test/ (same class, another name) is found, warned about and shown
    planted = data / "test" / "rain" / "copy_of_a_training_photo.jpg"
    source = sorted((data / "train" / "rain").iterdir())[0]
    shutil.copyfile(source, planted)
    again = run.parent / "planted"
    _fit(again, data)
    seen = _read_page(again / "report.html")
    assert seen["errors"] == []
    assert "1 test image(s) duplicate the chosen model's training images" in seen["warnings"]
    assert "Same photo in training and held-out images (1)" in seen["duplicates"]
    assert len(seen["pairs"]) == 1 and len(seen["pair_images"]) == 2 and all(w > 0 for w in seen["pair_images"])
    pair = seen["pairs"][0]
    assert source.name in pair and planted.name in pair and "same\npixels" in pair
    assert _mistakes_on_page(seen["gallery_headings"]) == _wrong_rows(again, "test")

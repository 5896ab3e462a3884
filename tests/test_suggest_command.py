"""What to label next in the product (issue 23.2): `command=suggest model=<model dir> images=<folder> n=...` and
`transfer.suggest`: the model's probabilities and its body's cached features on the unlabelled images, the fit's
training images as already covered when they can be found, suggest.csv, the contact sheet and the terminal lines."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.requests import fit_request
from tests.synthetic import write_brightness_folder
from transfer.errors import UserError

COLUMNS = ["rank", "index", "name", "score", "uncertainty", "distance", "predicted", "p_predicted"]


def _square(level: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(level + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A frozen fit on 30 labelled grey squares (run/model, run/scan_report.json) and an unlabelled pool: two images
    between two classes (one with a near copy), two clear ones, and a copy of a labelled image."""
    from transfer.studies.fit import run_fit

    base = tmp_path_factory.mktemp("suggest")
    labelled = write_brightness_folder(base / "labelled", n=10)
    overrides = ["data=folder", f"data.root={labelled}", "augment=none", f"features.cache_dir={base / 'features'}"]
    with contextlib.redirect_stdout(io.StringIO()):
        run_fit(fit_request(base / "run", *overrides, "report.cv_folds=0", "report.probe_baseline=false"))
    pool = base / "pool"
    pool.mkdir()
    rng = np.random.default_rng(1)
    between = _square(87, rng)
    Image.fromarray(between).save(pool / "between_dark_grey.png")
    Image.fromarray((between.astype(int) + 1).clip(0, 255).astype(np.uint8)).save(pool / "between_dark_grey_copy.png")
    Image.fromarray(_square(162, rng)).save(pool / "between_grey_light.png")
    Image.fromarray(_square(50, rng)).save(pool / "clearly_dark.png")
    Image.fromarray(_square(200, rng)).save(pool / "clearly_light.png")
    shutil.copy(labelled / "grey" / "grey_003.png", pool / "already_labelled.png")
    return base, labelled, pool


def _config(base: Path, pool: Path, *more: str):
    from transfer.app.compose import compose

    return compose(
        ["command=suggest", f"model={base / 'run' / 'model'}", f"images={pool}", "trainer.accelerator=cpu"]
        + [f"features.cache_dir={base / 'features'}", "features.progress=false", *more]
    )


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_suggest_writes_the_csv_and_the_sheet_and_prints_the_table(world, tmp_path, capsys):
    from transfer.app.commands.suggest import print_suggestions, suggest_config

    base, _, pool = world
    run = suggest_config(_config(base, pool, "n=2"), tmp_path, None)
    print_suggestions(run)
    columns, rows = read_rows(tmp_path / "suggest.csv")
    assert columns == COLUMNS
    assert [(r["rank"], r["name"], r["predicted"]) for r in rows] == [
        ("1", "between_grey_light.png", "light"),
        ("2", "between_dark_grey.png", "grey"),
    ]  # the two images between classes; the clear ones and the labelled copy are not asked for
    assert all(0 < float(r["uncertainty"]) <= 1 and 0 < float(r["distance"]) <= 2 for r in rows)
    assert (run.pool, run.labelled) == (5, 30)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["rank", "image", "score", "uncert.", "dist.", "model", "says"]
    assert [ln.split()[:2] for ln in out[1:3]] == [["1", "between_grey_light.png"], ["2", "between_dark_grey.png"]]
    assert out[3].startswith("note: 5 unlabelled images scored by ") and "margin uncertainty x distance" in out[3]
    assert out[4:] == [
        "note: 1 image(s) of images= are already labelled (the same pixels): left out",
        f"note: already labelled: 30 images count as covered: the fit's training images, listed in "
        f"{(base / 'run' / 'scan_report.json').resolve()}",
        "suggested 2 of 5 images to label next",
        f"list:    {tmp_path / 'suggest.csv'}",
        f"sheet:   {tmp_path / 'suggest.html'}",
    ]
    page = (tmp_path / "suggest.html").read_text()
    assert re.findall(r'alt="([^"]+)"', page) == ["between_grey_light.png", "between_dark_grey.png"]  # in order
    assert page.index("#1") < page.index("#2") and "score: " in page and "model says: light" in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 2 and all(s.startswith("data:image/") for s in srcs)
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()


def test_a_near_copy_waits_behind_the_others(world, tmp_path):
    from transfer.app.commands.suggest import suggest_config

    base, _, pool = world
    rows = suggest_config(_config(base, pool, "n=5"), tmp_path, None).rows
    names = [r["name"] for r in rows]
    assert names[:2] == ["between_grey_light.png", "between_dark_grey.png"] and len(names) == 5
    copy = rows[names.index("between_dark_grey_copy.png")]
    assert copy["distance"] < 0.05  # measured from its original, chosen before it


def test_without_the_fits_scan_report_nothing_counts_as_labelled_and_it_says_so(world, tmp_path):
    from transfer.app.commands.suggest import suggest_config

    base, _, pool = world
    lone = tmp_path / "elsewhere" / "model"
    shutil.copytree(base / "run" / "model", lone)
    cfg = _config(base, pool, "n=3", f"model={lone}")
    run = suggest_config(cfg, tmp_path, None)
    assert (run.pool, run.labelled) == (6, None)  # the labelled copy cannot be recognised: it stays in the pool
    assert any(n.startswith("no training images found (no scan_report.json beside the model dir)") for n in run.notes)


def test_library_suggest_with_a_labelled_folder_more_than_the_pool_and_an_unreadable_file(world, tmp_path):
    import transfer

    base, labelled, pool = world
    mixed = tmp_path / "pool"
    shutil.copytree(pool, mixed)
    (mixed / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    run = transfer.suggest(
        base / "run" / "model", mixed, n=50, out_dir=tmp_path / "out", labelled=labelled,
        overrides=[f"features.cache_dir={base / 'features'}", "features.progress=false"],
    )  # fmt: skip
    assert (len(run.rows), run.pool, run.labelled) == (5, 5, 30)
    assert "n=50: the folder holds 5 usable images, all are listed" in run.notes
    assert any(n.startswith(f"images: skipped {mixed / 'broken.jpg'}: ") for n in run.notes)
    assert f"already labelled: 30 images count as covered: data.root={labelled}" in run.notes
    assert len(read_rows(tmp_path / "out" / "suggest.csv")[1]) == 5


def test_bad_inputs_are_one_line_errors_naming_the_key(world, tmp_path):
    from transfer.app.compose import compose
    from transfer.app.early import check_before_run

    base, _, pool = world
    with pytest.raises(UserError, match=r"^n=0: must be >= 1"):
        _config(base, pool, "n=0")
    with pytest.raises(UserError, match=r"^images=.*nowhere: no such file or folder"):
        check_before_run(_config(base, pool, f"images={tmp_path / 'nowhere'}"))
    with pytest.raises(UserError, match=r"^model=.*: not a model dir"):
        check_before_run(_config(base, pool, f"model={tmp_path}"))
    with pytest.raises(UserError, match=r"^command=suggest needs model="):
        check_before_run(compose(["command=suggest", f"images={pool}"]))
    with pytest.raises(UserError, match=r"^suggest.measure='widest'"):
        _config(base, pool, "suggest.measure=widest")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"^images=.*empty: no image files"):
        from transfer.app.commands.suggest import suggest_config

        suggest_config(_config(base, pool, f"images={empty}"), tmp_path, None)


@pytest.mark.slow  # a python -m transfer process: ~15 s on 2 busy cores
def test_suggest_cli(world, run_cli, tmp_path):
    base, _, pool = world
    proc = run_cli(
        "command=suggest", f"model={base / 'run' / 'model'}", f"images={pool}", "n=2", "hydra.run.dir=run",
        f"features.cache_dir={base / 'features'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "suggested 2 of 5 images to label next" in lines
    assert f"list:    {tmp_path / 'run' / 'suggest.csv'}" in lines
    assert f"sheet:   {tmp_path / 'run' / 'suggest.html'}" in lines


@pytest.mark.slow  # starts Chromium: ~7 s on 2 busy cores
def test_contact_sheet_in_chromium(world, tmp_path):
    from tests import browser
    from transfer.app.commands.suggest import suggest_config

    base, _, pool = world
    run = suggest_config(_config(base, pool, "n=4"), tmp_path, None)
    with browser.open_page(run.page) as (page, errors):
        widths = page.eval_on_selector_all("#suggestions img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
        ranks = page.locator("#suggestions .rank").all_inner_texts()
    assert errors == []
    assert len(widths) == 4 and all(w > 0 for w in widths)
    assert ranks == ["#1", "#2", "#3", "#4"]

"""Suspected label errors in the product (issue 23.1): every fit that cross-validates its headline writes
label_issues.csv, metrics.json["label_issues"], the report section and one terminal line; `command=label-issues` (and
`transfer.label_issues`) does the same from the frozen probe cross-validated on cached features."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.requests import fit_request
from tests.synthetic import write_brightness_folder, write_image_folder
from transfer.eval.label_issues import CSV_COLUMNS

MOVES = (("dark", "light"), ("light", "grey"))  # a dark image filed under light/, a light one under grey/
FOUND = [("light/was_dark.png", "light", "dark"), ("grey/was_light.png", "grey", "light")]  # (file, given, suggested)


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def flipped(tmp_path_factory) -> Path:
    return write_brightness_folder(tmp_path_factory.mktemp("data") / "grey", moves=MOVES)


@pytest.fixture(scope="module")
def fitted(flipped, tmp_path_factory):
    """One cross-validated frozen fit (LeNet-5, random weights) on the flipped folder: (report, run dir)."""
    from transfer.studies.fit import run_fit

    tmp = tmp_path_factory.mktemp("fit")
    overrides = ("data=folder", f"data.root={flipped}", "augment=none", f"features.cache_dir={tmp / 'features'}")
    out = tmp / "run"
    return run_fit(fit_request(out, *overrides)), out


def test_a_cross_validated_fit_writes_the_csv_metrics_and_the_page_section(fitted, flipped):
    report, out = fitted
    found = report["label_issues"]
    assert (found["count"], found["n_images"], found["filter_by"]) == (2, 60, "both")
    columns, rows = read_csv(out / "label_issues.csv")
    assert columns == list(CSV_COLUMNS)
    assert [(r["rank"], r["name"], r["given"], r["suggested"]) for r in rows] == [
        (str(i), str(flipped / name), given, suggested) for i, (name, given, suggested) in enumerate(FOUND, 1)
    ]  # exactly the two planted errors, the surer one first, each with its true class
    assert float(rows[0]["score"]) <= float(rows[1]["score"]) < 0.5
    assert json.loads((out / "metrics.json").read_text())["label_issues"] == found
    page = (out / "report.html").read_text()
    section = page.split('<section id="label_issues">')[1].split("</section>")[0]
    assert section.startswith("<h2>Suspected label errors</h2><p><b>2</b> of 60 images may be mislabelled")
    assert section.count('src="data:image/') == 2  # a thumbnail per flagged image
    assert section.index("was_dark.png") < section.index("was_light.png")


def test_the_fit_summary_has_one_label_issues_line(fitted, capsys):
    from transfer.app.commands.fit import print_summary

    report, out = fitted
    print_summary(report, out)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "mislabelled" in ln]
    assert lines == [f"labels:  2 images may be mislabelled (of 60): see report ({out / 'label_issues.csv'})"]


def test_a_fit_scored_on_test_folder_cross_validates_nothing_and_writes_no_list(tmp_path):
    from transfer.studies.fit import run_fit

    for split, n, seed in (("train", 4, 0), ("test", 2, 2)):
        write_image_folder(tmp_path / "data" / split, n=n, seed=seed, size=(32, 32))
    overrides = ("data=folder", f"data.root={tmp_path / 'data'}", "augment=none", f"features.cache_dir={tmp_path}/f")
    report = run_fit(fit_request(tmp_path / "run", *overrides))
    assert "label_issues" not in report and not (tmp_path / "run" / "label_issues.csv").exists()
    assert 'id="label_issues"' not in (tmp_path / "run" / "report.html").read_text()


def test_label_issues_command_prints_the_table_and_writes_its_files(flipped, tmp_path, capsys):
    from transfer.app.commands.label_issues import label_issues_config, print_issues
    from transfer.app.compose import compose

    cfg = compose(
        ["command=label-issues", "data=folder", f"data.root={flipped}", "features.progress=false"]
        + ["trainer.accelerator=cpu", f"features.cache_dir={tmp_path / 'features'}"]
    )  # the default recipe, as on the command line: its digits source model is not used for a folder
    found = label_issues_config(cfg, tmp_path, quiet=True)
    print_issues(found, tmp_path)
    out = capsys.readouterr().out.splitlines()
    issues = found.issues.issues
    assert [(Path(i.name).relative_to(flipped).as_posix(), i.given, i.suggested) for i in issues] == FOUND
    probe = next(ln for ln in out if ln.startswith("probe: "))
    assert "5-fold cross-validated linear probe on frozen lenet5 features: accuracy 0.967" in probe
    assert "over 60 images" in probe
    table = out[out.index(probe) + 1 : out.index(probe) + 4]
    assert [ln.split()[:4] for ln in table] == [
        ["rank", "image", "given", "suggested"],
        ["1", "light/was_dark.png", "light", "dark"],
        ["2", "grey/was_light.png", "grey", "light"],
    ]
    assert out[out.index(probe) + 4 :][:3] == [
        "2 images may be mislabelled (of 60): see report",
        f"list:    {tmp_path / 'label_issues.csv'}",
        f"report:  {tmp_path / 'report.html'}  (metrics.json beside it)",
    ]
    columns, csv_rows = read_csv(tmp_path / "label_issues.csv")
    assert columns == list(CSV_COLUMNS) and len(csv_rows) == len(issues)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["label_issues"]["count"] == len(issues) and metrics["probe"]["folds"] == 5
    assert metrics["probe"]["n"] == 60 and metrics["backbone"] == "lenet5"
    page = (tmp_path / "report.html").read_text()
    assert 'id="label_issues"' in page and 'id="headline"' in page and 'id="scan"' in page
    assert "5-fold cross-validated linear probe accuracy" in page


def test_library_label_issues_reads_the_cache_the_command_filled(flipped, tmp_path):
    import transfer

    cache = f"features.cache_dir={tmp_path / 'features'}"
    first = transfer.label_issues(flipped, "lenet5", tmp_path / "a", [cache, "features.progress=false"], False)
    again = transfer.label_issues(flipped, "lenet5", tmp_path / "b", [cache, "features.progress=false"], False)
    assert [i.name for i in first.issues] == [i.name for i in again.issues] == [str(flipped / f) for f, *_ in FOUND]
    extracted = [json.loads((tmp_path / d / "metrics.json").read_text())["probe"]["extracted"] for d in "ab"]
    assert extracted[0] > 0 and extracted[1] == 0  # the second call extracted nothing
    assert (tmp_path / "b" / "label_issues.csv").is_file() and (tmp_path / "b" / "report.html").is_file()


@pytest.mark.slow  # a python -m transfer process: ~15 s on 2 busy cores
def test_label_issues_cli_on_a_folder(flipped, run_cli, tmp_path):
    proc = run_cli(
        "command=label-issues", "data=folder", f"data.root={flipped}", "hydra.run.dir=run",
        f"features.cache_dir={tmp_path / 'features'}", "features.progress=false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert [ln for ln in lines if "mislabelled" in ln] == ["2 images may be mislabelled (of 60): see report"]
    assert f"list:    {tmp_path / 'run' / 'label_issues.csv'}" in lines
    assert any(ln.startswith("report:  ") for ln in lines)


@pytest.mark.slow  # starts Chromium: ~7 s on 2 busy cores
def test_the_fit_page_shows_the_label_issues_section_in_chromium(fitted):
    from tests import browser

    report, out = fitted
    with browser.open_page(out / "report.html") as (page, errors):
        visible = page.is_visible("#label_issues")
        widths = page.eval_on_selector_all("#label_issues img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
        text = page.inner_text("#label_issues")
    assert errors == [] and visible
    assert len(widths) == 2 and all(w > 0 for w in widths)
    assert "2 of 60 images may be mislabelled" in text and "given: light" in text and "suggested: dark" in text

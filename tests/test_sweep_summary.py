"""The `-m` sweep summary: one row per job from its dir (overrides that differ, selection, headline, wall time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfer.app.sweep_summary import (
    FAILED,
    SweepSummary,
    build_summary,
    differing_keys,
    job_dirs,
    read_job,
    summary_markdown,
    write_summary,
)

REPO = Path(__file__).resolve().parents[1]


def fake_job(sweep: Path, num: int | str, overrides: list[str], metrics: dict | None) -> Path:
    """A job dir as Hydra and `fit` leave it: .hydra/overrides.yaml, and metrics.json unless the job died."""
    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides), encoding="utf-8")
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return d


def metrics(val: float, test: float | None = None, ci: list[float] | None = None, wall: float = 12.5) -> dict:
    m: dict = {"best": {"regime": "frozen", "seed": 0, "accuracy": val}, "eval_split": "val", "wall_seconds": wall}
    if ci is not None:
        m["best"]["accuracy_ci95"] = ci
    if test is not None:
        m["headline"] = {"name": "test accuracy", "value": test, "ci95": [test - 0.05, test + 0.04], "n": 153}
    return m


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    s = tmp_path / "multirun"
    fake_job(s, 0, ["head.lr=0.01", "seed=0"], metrics(0.80, test=0.75, ci=[0.7, 0.9], wall=10.0))
    fake_job(s, 1, ["head.lr=0.1", "seed=0"], metrics(0.85, test=0.72, ci=[0.75, 0.95], wall=11.0))
    fake_job(s, 10, ["head.lr=1.0", "seed=0"], None)  # died: no metrics.json
    fake_job(s, 2, ["head.lr=0.001", "seed=0"], metrics(0.85, test=0.70))
    (s / "multirun.yaml").write_text("{}\n", encoding="utf-8")
    (s / "optimization_results.yaml").write_text("{}\n", encoding="utf-8")
    return s


def test_job_dirs_are_the_job_folders_in_numeric_order(sweep):
    assert [d.name for d in job_dirs(sweep)] == ["0", "1", "2", "10"]


def test_only_the_overrides_that_differ_become_columns(sweep):
    rows = [read_job(d) for d in job_dirs(sweep)]
    assert differing_keys(rows) == ["head.lr"]
    rows.append({"overrides": {"head.lr": "0.01", "seed": "0", "trainer.max_epochs": "5"}})
    assert differing_keys(rows) == ["head.lr", "trainer.max_epochs"]  # set in one job only: it differs


def test_a_row_carries_selection_headline_intervals_and_wall_time(sweep):
    row = read_job(sweep / "0")
    assert row["status"] == "ok"
    assert row["overrides"] == {"head.lr": "0.01", "seed": "0"}
    assert row["selection"] == {"name": "val accuracy", "value": 0.80, "ci95": [0.7, 0.9]}
    assert row["headline"]["name"] == "test accuracy"
    assert row["headline"]["value"] == 0.75
    assert row["headline"]["ci95"] == pytest.approx([0.70, 0.79])
    assert row["wall_seconds"] == 10.0


def test_without_headline_keys_the_accuracy_is_the_headline(tmp_path):
    d = fake_job(tmp_path, 0, ["head.lr=0.1"], {"best": {"accuracy": 0.6}, "wall_seconds": 3.0})
    row = read_job(d)
    assert row["headline"] == {"name": "val accuracy", "value": 0.6, "ci95": None}
    assert row["selection"] == row["headline"]


def test_a_failed_job_gets_a_row_saying_so(sweep):
    row = read_job(sweep / "10")
    assert row["status"] == FAILED
    assert row["selection"] is None and row["headline"] is None and row["wall_seconds"] is None
    (sweep / "10" / "metrics.json").write_text("{half-written", encoding="utf-8")
    assert read_job(sweep / "10")["status"] == FAILED


def test_the_best_job_is_chosen_by_selection_never_by_the_headline(sweep):
    summary = build_summary(sweep)
    assert summary["best_job"] == "1"  # val 0.85 (first of the tie with job 2); job 0 has the best test score
    assert summary["n_failed"] == 1
    assert [r["job"] for r in summary["jobs"]] == ["0", "1", "2", "10"]


def test_markdown_has_one_row_per_job_with_the_numbers(sweep):
    md = summary_markdown(build_summary(sweep))
    lines = md.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    header = "| job | head.lr | val accuracy (selection) | test accuracy (headline, 95% CI) | wall s | status |"
    assert table[0] == header
    assert len(table) == 2 + 4
    assert table[2] == "| 0 | 0.01 | 0.800 [0.700, 0.900] | 0.750 [0.700, 0.790] | 10.0 | ok |"
    assert table[3].startswith("| 1 (best) | 0.1 | 0.850 [0.750, 0.950] | 0.720 ")
    assert table[5] == f"| 10 | 1.0 | - | - | - | {FAILED} |"
    assert "best by val accuracy: job 1 (head.lr=0.1)" in md
    assert "1 of 4 jobs left no usable metrics.json" in md


def test_long_floats_drawn_by_a_search_are_shortened_in_the_table_only(tmp_path):
    fake_job(tmp_path, 0, ["head.lr=0.004430375245218269"], metrics(0.5))
    fake_job(tmp_path, 1, ["head.lr=0.01"], metrics(0.6))
    summary = build_summary(tmp_path)
    assert "| 0 | 0.00443 |" in summary_markdown(summary)
    assert summary["jobs"][0]["overrides"]["head.lr"] == "0.004430375245218269"


def test_write_summary_writes_both_files(sweep):
    write_summary(sweep)
    data = json.loads((sweep / "summary.json").read_text(encoding="utf-8"))
    assert data["keys"] == ["head.lr"] and len(data["jobs"]) == 4
    assert (sweep / "summary.md").read_text(encoding="utf-8").count("\n| ") == 5  # separator + 4 jobs


def test_the_callback_writes_and_prints_at_the_end_of_the_sweep(sweep, capsys):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    cb = SweepSummary()
    cb.on_multirun_start(cfg)
    cb.on_multirun_end(cfg)
    assert (sweep / "summary.md").is_file()
    assert "| 1 (best) | 0.1 |" in capsys.readouterr().out


def test_the_callback_is_configured_for_every_run():
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "conf" / "config.yaml")
    assert cfg.hydra.callbacks.sweep_summary._target_ == "transfer.app.sweep_summary.SweepSummary"


@pytest.mark.slow
def test_a_cli_sweep_ends_with_the_summary(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli(
        "-m",
        "head.lr=0.01,0.1",
        "trainer.max_epochs=2",
        "study.seeds=[0]",
        "study.regimes=[frozen]",
        "study.probe_stages=null",
        "source.max_epochs=1",  # the digits recipe's source model: one epoch keeps the test short
        f"hydra.sweep.dir={sweep}",
        env={"PYTHONPATH": str(REPO)},  # this checkout's package, whichever one the environment installed
    )
    assert r.returncode == 0, r.stderr[-2000:]
    md = (sweep / "summary.md").read_text(encoding="utf-8")
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| job")]
    assert len(rows) == 2
    assert rows[0].startswith("| 0 ") and "| 0.01 |" in rows[0] and rows[0].endswith("| ok |")
    assert rows[1].startswith("| 1") and "| 0.1 |" in rows[1]
    assert json.loads((sweep / "summary.json").read_text(encoding="utf-8"))["keys"] == ["head.lr"]
    assert "summary.md" in r.stdout

"""One table for a Hydra `-m` sweep: a row per job (the overrides that differ, the selection and headline numbers,
wall time), printed when the sweep ends and written as summary.md + summary.json in the sweep dir.

Jobs are read back from their dirs (`<sweep dir>/<job num>/.hydra/overrides.yaml` and `metrics.json`), not from
memory, so the table is the same whichever launcher ran them (local, joblib, SLURM) and a job that died leaves a
row saying so. The selection column (the held-out split the fit chose on) is the one to compare jobs by; the headline
is the test/ score when there is one, quoted with its interval, and picking a job by it would spend the test set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

FAILED = "failed: no metrics.json"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job dirs of a sweep: sub-folders holding Hydra's `.hydra/` or a metrics.json, in job-number order."""
    dirs = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or _metrics(p).is_file())]
    return sorted(dirs, key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name))


def _metrics(job_dir: Path) -> Path:
    return job_dir / "metrics.json"


def job_overrides(job_dir: Path) -> dict[str, str]:
    """`key=value` task overrides of one job as {key: value} (Hydra writes them to .hydra/overrides.yaml)."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for line in OmegaConf.to_container(OmegaConf.load(path)) or []:  # type: ignore[union-attr]
        key, _, value = str(line).partition("=")
        out[key] = value
    return out


def _interval(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return [float(value[0]), float(value[1])]
    if isinstance(value, dict) and {"low", "high"} <= value.keys():
        return [float(value["low"]), float(value["high"])]
    return None


def read_job(job_dir: Path) -> dict:
    """One row: job, dir, overrides, status, selection {name, value, ci95}, headline {name, value, ci95}, seconds."""
    job_dir = Path(job_dir)
    row: dict = {"job": job_dir.name, "dir": str(job_dir), "overrides": job_overrides(job_dir)}
    try:
        report = json.loads(_metrics(job_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {**row, "status": FAILED, "selection": None, "headline": None, "wall_seconds": None}
    best = report.get("best") or {}
    eval_name = report.get("eval_split", "val")
    selection = None
    if isinstance(best.get("accuracy"), (int, float)):
        selection = {"name": f"{eval_name} accuracy", "value": float(best["accuracy"]), "ci95": None}
        selection["ci95"] = _interval(best.get("accuracy_ci95"))
    head = report.get("headline")
    if isinstance(head, dict) and isinstance(head.get("value"), (int, float)):
        headline = {"name": str(head.get("name", "headline")), "value": float(head["value"])}
        headline["ci95"] = _interval(head.get("ci95"))
    elif isinstance(report.get("test"), dict) and isinstance(report["test"].get("accuracy"), (int, float)):
        t = report["test"]
        headline = {"name": "test accuracy", "value": float(t["accuracy"]), "ci95": _interval(t.get("accuracy_ci95"))}
    else:  # no headline key (older metrics.json): the accuracy the fit reports
        headline = dict(selection) if selection else None
    wall = report.get("wall_seconds")
    status = "ok" if selection or headline else "no accuracy in metrics.json"
    return {
        **row,
        "status": status,
        "selection": selection,
        "headline": headline,
        "wall_seconds": float(wall) if isinstance(wall, (int, float)) else None,
    }


def differing_keys(rows: list[dict]) -> list[str]:
    """Override keys whose value is not the same in every job (a key missing from some jobs differs too)."""
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    return [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1]


def build_summary(sweep_dir: Path) -> dict:
    """summary.json's content: the sweep dir, the differing keys, one row per job, and the best job by selection."""
    rows = [read_job(d) for d in job_dirs(Path(sweep_dir))]
    scored = [r for r in rows if r["selection"]]
    best = max(scored, key=lambda r: r["selection"]["value"]) if scored else None  # first job wins a tie
    return {
        "sweep_dir": str(sweep_dir),
        "keys": differing_keys(rows),
        "jobs": rows,
        "best_job": best["job"] if best else None,
        "n_failed": sum(r["status"] != "ok" for r in rows),
    }


def _number(m: dict | None, with_name: bool = False) -> str:
    if not m:
        return "-"
    text = f"{m['value']:.3f}"
    if m.get("ci95"):
        lo, hi = m["ci95"]
        text += f" [{lo:.3f}, {hi:.3f}]"
    return f"{text} ({m['name']})" if with_name else text


def _value(text: str) -> str:
    """An override value for the table: a float Optuna drew (0.004430375245218269) to 4 significant digits."""
    if sum(c.isdigit() for c in text) <= 6:  # as typed: 0.01, 1.0, 1e-05
        return text
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _column_name(rows: list[dict], key: str, fallback: str) -> tuple[str, bool]:
    """The column header (the metric's name when every job shares it) and whether cells must name it instead."""
    names = {r[key]["name"] for r in rows if r[key]}
    return (names.pop(), False) if len(names) == 1 else (fallback, len(names) > 1)


def summary_markdown(summary: dict) -> str:
    """summary.md: a markdown table, then which job is best by the selection metric (and the caveat that goes with
    choosing a job by a number measured on a few images)."""
    rows, keys = summary["jobs"], summary["keys"]
    sel_name, sel_named = _column_name(rows, "selection", "selection")
    head_name, head_named = _column_name(rows, "headline", "headline")
    header = ["job", *keys, f"{sel_name} (selection)", f"{head_name} (headline, 95% CI)", "wall s", "status"]
    lines = [f"# Sweep summary: {summary['sweep_dir']}", ""]
    lines += ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        wall = "-" if r["wall_seconds"] is None or not math.isfinite(r["wall_seconds"]) else f"{r['wall_seconds']:.1f}"
        marker = " (best)" if r["job"] == summary["best_job"] else ""
        cells = [
            f"{r['job']}{marker}",
            *(_value(r["overrides"].get(k, "(not set)")) for k in keys),
            _number(r["selection"], sel_named),
            _number(r["headline"], head_named),
            wall,
            r["status"],
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    if summary["best_job"] is not None:
        best = next(r for r in rows if r["job"] == summary["best_job"])
        what = ", ".join(f"{k}={_value(best['overrides'].get(k, '(not set)'))}" for k in keys) or "every job alike"
        lines.append(
            f"best by {sel_name}: job {best['job']} ({what}). Compare jobs by the selection column; the headline "
            "(test/ when there is one) is for quoting the chosen job, not for choosing it."
        )
    if summary["n_failed"]:
        lines.append(f"{summary['n_failed']} of {len(rows)} jobs left no usable metrics.json: see their dirs.")
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path) -> dict:
    """Build the summary of the sweep in sweep_dir, write summary.md and summary.json there, return it."""
    sweep_dir = Path(sweep_dir)
    summary = build_summary(sweep_dir)
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (sweep_dir / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    return summary


class SweepSummary(Callback):
    """hydra.callbacks entry (conf/config.yaml): at the end of a `-m` sweep, print and write the summary table."""

    def __init__(self) -> None:
        self.sweep_dir: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = str(config.hydra.sweep.dir)  # resolved once, as the launcher resolves it (`${now:}` cached)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(self.sweep_dir or str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        summary = write_summary(sweep_dir)
        print()
        print(summary_markdown(summary), end="")
        print(f"summary: {sweep_dir / 'summary.md'} and summary.json")

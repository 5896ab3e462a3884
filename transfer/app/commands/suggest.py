"""`command=suggest model=<model dir> images=<unlabelled folder> n=50`: which images to label next (studies/suggest.py):
a short table, suggest.csv and the contact sheet suggest.html in the run dir."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.app.dispatch import output_dir
from transfer.app.early import check_before_run
from transfer.app.schema import Config

if TYPE_CHECKING:
    from transfer.studies.suggest import SuggestRun

SHOWN = 15  # rows of the terminal table (the CSV and the page hold them all)


def labelled_root(cfg: Config) -> str | None:
    """The folder of images already labelled: data.root when data=folder is given (else the model dir's fit's)."""
    return str(cfg.data.root) if cfg.data.kind == "folder" and cfg.data.root not in (None, "???") else None


def suggest_config(cfg: Config, out_dir: Path, labelled: str | None) -> SuggestRun:
    """Check and run (the library's `transfer.suggest` comes here too); `labelled`: see labelled_root."""
    check_before_run(cfg)
    from transfer.studies.suggest import suggest_next
    from transfer.training.fit import head_device

    return suggest_next(
        str(cfg.model),
        str(cfg.images),
        int(cfg.n),
        out_dir,
        data_root=labelled,
        measure=cfg.suggest.measure,
        diversity=float(cfg.suggest.diversity),
        features=cfg.features,
        device=head_device(cfg),
    )


def print_suggestions(run: SuggestRun) -> None:
    rows = run.rows
    width = min(60, max([len(r["name"]) for r in rows[:SHOWN]] + [5]))
    print(f"{'rank':>4}  {'image':<{width}}  {'score':>6} {'uncert.':>7} {'dist.':>6}  model says")
    for r in rows[:SHOWN]:
        print(
            f"{r['rank']:>4}  {r['name']:<{width}}  {r['score']:>6.3f} {r['uncertainty']:>7.3f} {r['distance']:>6.3f}  "
            f"{r['predicted']} ({r['p_predicted']:.2f})"
        )
    if len(rows) > SHOWN:
        print(f"  ... {len(rows) - SHOWN} more in {run.csv}")
    for note in run.notes:
        print(f"note: {note}")
    print(f"suggested {len(rows)} of {run.pool} images to label next")
    print(f"list:    {run.csv}")
    print(f"sheet:   {run.page}")


def run(cfg: Config) -> None:
    started = time.perf_counter()
    print_suggestions(suggest_config(cfg, output_dir(), labelled_root(cfg)))
    print(f"wall time: {time.perf_counter() - started:.1f}s")

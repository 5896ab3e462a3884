"""`command=rank-backbones backbones=[a,b,c] data=folder data.root=<labelled folder>`: which pretrained body suits these
images best (studies/rank_backbones.py): a table (score, interval, feature time, size), the verdict between the first
two, the names skipped and why, and rank_backbones.json in the run dir."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.app.commands.label_issues import for_folder
from transfer.app.dispatch import output_dir, quiet_lightning
from transfer.app.early import check_before_run
from transfer.app.schema import Config

if TYPE_CHECKING:
    from transfer.studies.rank_backbones import Ranking


def rank_config(cfg: Config, out_dir: Path, quiet: bool = False) -> Ranking:
    """Check and rank (the library's `transfer.rank_backbones` comes here too)."""
    from transfer.app.commands.fit import fit_request

    cfg = for_folder(cfg)
    check_before_run(cfg)
    quiet_lightning()
    from transfer.studies.rank_backbones import rank_backbones

    return rank_backbones(fit_request(cfg, out_dir, quiet), list(cfg.backbones))


def print_ranking(ranking: Ranking, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"backbones ranked by a cross-validated linear probe on {ranking.n_images} images "
        f"({len(ranking.classes)} classes)"
    )
    for col in ("#", "backbone", "CV accuracy (95% CI)", "balanced", "LogME", "features", "params", "width"):
        table.add_column(col, justify="left" if col == "backbone" else "right")
    for i, c in enumerate(ranking.candidates, 1):
        if c.status == "skipped":
            continue
        if c.accuracy is not None:
            ci = c.accuracy_ci95 or [c.accuracy, c.accuracy]
            acc, bal = f"{c.accuracy:.3f} ({ci[0]:.3f}-{ci[1]:.3f})", f"{c.balanced_accuracy:.3f}"
        else:
            acc, bal = "pre-filtered by LogME", ""
        feat = f"{c.feature_seconds:.1f}s" + ("" if c.extracted else " (cached)")
        table.add_row(str(i), c.label, acc, bal, f"{c.logme:.3f}", feat, f"{c.params / 1e6:.1f}M", str(c.dim))
    console = Console() if Console().is_terminal else Console(width=140)
    console.print(table)
    w = ranking.winner
    if w is not None:
        print(f"best: {w.label}" + (f" - {ranking.verdict}" if ranking.verdict else ""))
    for c in ranking.skipped:
        print(f"skipped: {c.label}: {c.reason}")
    if w is not None:
        print(f"fit it:  python -m transfer {fit_overrides(w.backbone)} data.root={ranking.data} ...")
    print(f"ranking: {out_dir / 'rank_backbones.json'}")


def fit_overrides(b: dict) -> str:
    """The winner as command-line overrides (backbone.name=... and its weights)."""
    parts = [f"backbone.name={b['name']}"]
    if b.get("weights"):
        parts.append(f"backbone.weights={b['weights']}")
    else:
        parts.append(f"backbone.pretrained={str(bool(b.get('pretrained'))).lower()}")
    parts += [f"+backbone.kwargs.{k}={v}" for k, v in (b.get("kwargs") or {}).items()]
    return " ".join(parts)


def run(cfg: Config) -> None:
    started = time.perf_counter()
    out = output_dir()
    print_ranking(rank_config(cfg, out), out)
    print(f"wall time: {time.perf_counter() - started:.1f}s")

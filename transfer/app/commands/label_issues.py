"""`command=label-issues`: which images of a labelled folder are probably filed under the wrong class.

The frozen linear probe is cross-validated over every labelled image on cached features (a probe per fold, as a
fit's cross-validated frozen headline: studies/probe_cv.nested_probe_cv), and confident learning ranks the images its
out-of-fold probabilities contradict (studies/label_issues.py): a table, one summary line, label_issues.csv,
metrics.json and a small report.html in the run dir.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.app.dispatch import output_dir, quiet_lightning
from transfer.app.early import check_before_run
from transfer.app.schema import Config
from transfer.errors import UserError

if TYPE_CHECKING:
    from transfer.studies.label_issues import ProbeLabelIssues

SHOWN = 20  # rows of the terminal table (the CSV and the page hold them all)


def for_folder(cfg: Config) -> Config:
    """Source pretraining (the digits recipe's) applies to data=digits only: on a folder the configured body is used
    as it is, as by the other commands that read a folder with the default recipe."""
    return cfg if cfg.data.kind == "digits" or cfg.source is None else replace(cfg, source=None)


def label_issues_config(cfg: Config, out_dir: Path, quiet: bool = False) -> ProbeLabelIssues:
    """Check, search and write (the library's `transfer.label_issues` comes here too)."""
    from transfer.app.commands.fit import fit_request

    cfg = for_folder(cfg)
    if cfg.data.kind == "folder" and cfg.data.root in (None, "???"):
        raise UserError(
            "command=label-issues needs a labelled folder: data=folder data.root=<folder of class folders>."
        )
    check_before_run(cfg)
    quiet_lightning()
    from transfer.studies.label_issues import probe_label_issues

    return probe_label_issues(fit_request(cfg, out_dir, quiet))


def print_issues(found: ProbeLabelIssues, out_dir: Path) -> None:
    """The probe's score, the most suspicious images as a table, the one-line summary and the paths."""
    from transfer.studies.label_issues import CSV_NAME, terminal_line

    p = found.report["probe"]
    ci = p.get("accuracy_ci95") or [p["accuracy"], p["accuracy"]]
    print(
        f"probe: {p['folds']}-fold cross-validated linear probe on frozen {found.report['backbone']} features: "
        f"accuracy {p['accuracy']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}) over {p['n']} images "
        f"(features {p['feature_seconds']:.1f}s, probe {p['probe_seconds']:.1f}s)"
    )
    issues = found.issues.issues
    if issues:
        width = min(60, max(len(_short(i.name)) for i in issues[:SHOWN]))
        print(f"{'rank':>4}  {'image':<{width}}  {'given':<12} {'suggested':<12} score")
        for r, i in enumerate(issues[:SHOWN], 1):
            print(f"{r:>4}  {_short(i.name):<{width}}  {i.given:<12} {i.suggested:<12} {i.score:.3f}")
        if len(issues) > SHOWN:
            print(f"  ... {len(issues) - SHOWN} more in {CSV_NAME}")
    print(terminal_line(found.issues))
    print(f"list:    {out_dir / CSV_NAME}")
    print(f"report:  {out_dir / 'report.html'}  (metrics.json beside it)")


def _short(name: str) -> str:
    """The class folder and file name: what a user looks for."""
    parts = Path(name).parts
    return str(Path(*parts[-2:])) if len(parts) >= 2 else name


def run(cfg: Config) -> None:
    started = time.perf_counter()
    out = output_dir()
    found = label_issues_config(cfg, out)
    print_issues(found, out)
    print(f"wall time: {time.perf_counter() - started:.1f}s")

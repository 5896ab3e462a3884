"""`command=fit` (the default): train under the configured regimes and seeds, save the best model, report."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.app.config_source import conf_dir
from transfer.app.dispatch import collector_paused, output_dir, quiet_lightning
from transfer.app.early import check_before_run
from transfer.app.schema import Config

if TYPE_CHECKING:
    from transfer.studies.startup import FitRequest
    from transfer.training.config import Regime


def regime_presets() -> dict[str, Regime]:
    """Every regime of conf/regime/ by name: the YAML files are the one definition of each preset."""
    from omegaconf import OmegaConf

    from transfer.training.config import Regime

    out = {}
    for path in sorted((conf_dir() / "regime").glob("*.yaml")):
        out[path.stem] = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Regime), OmegaConf.load(path)))
    return out


def regime_on_command_line() -> bool:
    """`regime=partial` on the command line (or in a sweep) means that regime alone, whatever study.regimes says."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    return any(o.lstrip("+~").startswith("regime=") for o in HydraConfig.get().overrides.task)


def fit_request(cfg: Config, out_dir: Path, quiet: bool = False) -> FitRequest:
    """The study's input: the typed config, its regimes (by name from the presets) and where it writes."""
    from transfer.studies.startup import FitRequest, study_regimes

    if regime_on_command_line():
        cfg = replace(cfg, study=replace(cfg.study, regimes=None))
    presets = regime_presets()
    return FitRequest(cfg, study_regimes(cfg, presets), presets, Path(out_dir), quiet)


def fit_config(cfg: Config, out_dir: Path, quiet: bool = False) -> dict:
    """Check, build and run a fit; returns the report (metrics.json's content; empty on DDP ranks other than 0)."""
    started = time.perf_counter()
    check_before_run(cfg)  # the CLI ran it before Hydra started; the library comes here directly
    with collector_paused():
        from transfer.studies.fit import run_fit  # torch, Lightning, the study

    request = fit_request(cfg, out_dir, quiet)
    quiet_lightning()
    return run_fit(request, started)


def run(cfg: Config) -> float | None:
    """Fit and print; returns the selection accuracy (`best`: the held-out split the fit chose on, never test/) so
    that a search sweep (recipe=search_finetune) optimises what selection may see. None on DDP ranks other than 0."""
    out = output_dir()
    report = fit_config(cfg, out)
    if report:
        print_summary(report, out)
        return float(report["best"]["accuracy"])
    return None


def print_summary(report: dict, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from transfer.eval.evidence_tables import REGIME_COLUMNS, regime_rows
    from transfer.eval.report_sections import provenance_lines, weights_warnings

    eval_name = report.get("eval_split", "val")
    table = Table(title=f"{eval_name} accuracy ({len(report['classes'])} classes)")
    for col in REGIME_COLUMNS:
        table.add_column(col, justify="left" if col == "regime" else "right")
    for row in regime_rows(report["table"]):
        table.add_row(*row)
    console = Console() if Console().is_terminal else Console(width=120)  # piped: do not squeeze tables into 80
    if "auto" in report:
        console.print(auto_table(report["auto"]))
    console.print(table)
    for verdict in (report.get("paired") or {}).get("verdicts", []):
        print(f"  {verdict}")
    best = report["best"]
    console.print(
        f"best: {best['regime']} (seed {best['seed']}), {eval_name} accuracy {best['accuracy']:.3f}, "
        f"macro F1 {best['f1_macro']:.3f}"
    )
    if "stage_probe" in report:
        rows = ", ".join(
            f"{stage} ({r['width']} wide) {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}"
            for stage, r in report["stage_probe"].items()
        )
        print(f"frozen features by stage, linear probe: {rows}")
    if "test" in report:
        t = report["test"]
        print(
            f"test:    accuracy {t['accuracy']:.3f}, macro F1 {t['f1_macro']:.3f} on the {t['n']} images of test/ "
            "(the best model, scored once)"
        )
    if "headline" in report:
        print(headline_line(report["headline"]))
    for line in provenance_lines(report):
        print(line)
    for warning in weights_warnings(report):
        print(f"warning: {warning}")
    if "headline" in report:
        for warning in chance_warnings(report):
            print(f"warning: {warning}")
    model_dir = best["model_dir"]
    print(f"model:   {model_dir}")
    plots = ", ".join(p for p in ("confusion.png", "regimes.png", "curves.png") if (out_dir / p).is_file())
    print(f"report:  {out_dir / 'report.html'}")
    if "label_issues" in report:  # the cross-validated headline's folds, searched by confident learning
        print(f"labels:  {label_issues_line(report['label_issues'], out_dir)}")
    if (out_dir / "summary.md").is_file():
        print(f"runs:    {out_dir / 'summary.md'}  (one row per regime and seed, with 95% intervals)")
    print(f"metrics: {out_dir / 'metrics.json'}  (predictions.csv{', ' + plots if plots else ''} beside it)")
    print(f"predict: python -m transfer command=predict model={model_dir} images=<file or folder>")
    print(f"wall time: {report['wall_seconds']:.1f}s")


def label_issues_line(found: dict, out_dir: Path) -> str:
    """'7 images may be mislabelled (of 605): see report (<run dir>/label_issues.csv)' from metrics.json's entry."""
    from transfer.eval.label_issues import LabelIssues
    from transfer.studies.label_issues import terminal_line

    return terminal_line(LabelIssues.from_dict(found), out_dir)


def headline_line(h: dict) -> str:
    """'headline: test accuracy 0.870 (95% CI 0.810-0.920, 153 images; test/ folder, ...); baseline: majority class
    0.410; linear probe 0.800' (a baseline that is the model itself says so)."""
    ci = h.get("ci95")
    ci_text = f"95% CI {ci[0]:.3f}-{ci[1]:.3f}, " if ci else ""
    itself = set(h.get("same_as_model") or [])
    bases = "; ".join(
        f"{name} {v:.3f}" + (" (the model itself)" if name in itself else "")
        for name, v in (h.get("baselines") or {}).items()
    )
    return f"headline: {h['name']} {h['value']:.3f} ({ci_text}{h['n']} images; {h['source']})" + (
        f"; baseline: {bases}" if bases else ""
    )


def chance_warnings(report: dict) -> list[str]:
    """The headline's baseline warnings, each with the likely cause for that baseline."""
    from transfer.eval.report_sections import baseline_shortfalls

    return [f"{w}; {_likely_cause(report, name)}." for name, w in baseline_shortfalls(report["headline"])]


def _likely_cause(report: dict, baseline: str) -> str:
    regime = report["best"]["regime"]
    if baseline == "linear probe":  # the frozen regime's head on the same features (training/probe_baseline.py)
        if regime == "frozen":
            return (
                "likely cause: this head adds nothing measurable over a linear probe on the same frozen features; "
                "head=softmax head.solver=lbfgs is that probe, and cheaper"
            )
        return (
            f"likely cause: fine-tuning ({regime}) did not beat the linear probe on the frozen features, so it adds "
            "nothing measurable here; consider regime=frozen (as good, and far cheaper)"
        )
    if report.get("random_body") and regime == "frozen":
        return "likely cause: backbone.pretrained=false with the frozen regime (random features); give weights"
    if report.get("random_body"):
        return "likely cause: a randomly initialised body and few images; give pretrained weights"
    return "likely causes: too few images per class, labels that the images do not show, or a source too far off"


def auto_table(auto: dict):
    """regime=auto's evidence as a rich table, with the choice and its reason in the caption."""
    from rich.table import Table

    from transfer.eval.evidence_tables import AUTO_COLUMNS, auto_rows, auto_scope

    table = Table(
        title=f"regime=auto: evidence on the training images ({auto_scope(auto)})",
        caption=f"chosen: {auto['chosen']} - {auto['reason']}",
        caption_justify="left",  # a reason wraps over lines: centred, each line drifted
    )
    for col in AUTO_COLUMNS:
        table.add_column(col)
    for row in auto_rows(auto, short_note):
        table.add_row(*row)
    return table


def short_note(note: str) -> str:
    """The evidence table's note, short enough for one line (metrics.json keeps the whole text)."""
    if "weakest penalty" in note:
        return "L2 at the weak end of the grid"
    if "strongest penalty" in note:
        return "L2 at the strong end of the grid"
    return note.replace(" (stopped at its share of the budget)", ", cut at budget").replace(" (set-up and scoring)", "")

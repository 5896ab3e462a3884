"""`command=learning-curve`: would more images help? The configured regime (frozen is cheapest: features are cached
once) on 10/25/50/100% of the training images, each scored on the same held-out images; a table, the doubling
sentence, and learning_curve.png / learning_curve.json / report.html in the run dir."""

from __future__ import annotations

import time

from transfer.app.commands.fit import fit_request
from transfer.app.dispatch import output_dir, quiet_lightning
from transfer.app.early import check_before_run
from transfer.app.schema import Config


def run(cfg: Config) -> None:
    started = time.perf_counter()
    out = output_dir()
    check_before_run(cfg)
    request = fit_request(cfg, out)
    quiet_lightning()
    from transfer.studies.learning_curve import run_learning_curve

    fractions = [float(f) for f in cfg.learning_curve.fractions]
    result = run_learning_curve(
        request,
        fractions,
        on_point=lambda p: print(f"  {p['fraction']:>4.0%} of train: {p['n']} images, accuracy {p['accuracy']:.3f}"),
    )
    print_curve(result)
    print(f"report:  {out / 'report.html'}  (learning_curve.png, learning_curve.json beside it)")
    print(f"wall time: {time.perf_counter() - started:.1f}s")


def print_curve(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from transfer.studies.learning_curve import curve_table_rows

    table = Table(
        title=f"learning curve: {result['regime']} (seed {result['seed']}), "
        f"scored on the same {result['eval_n']} {result['eval_split']} images"
    )
    for col in ("train fraction", "images", "accuracy (95% CI)", "balanced acc.", "s"):
        table.add_column(col, justify="right")
    for row in curve_table_rows(result):
        table.add_row(*row)
    Console().print(table)
    print(result["sentence"])
    from transfer.backbones.provenance import provenance_line
    from transfer.eval.report_sections import weights_warnings

    print(f"weights: {provenance_line(result.get('weights'))}")
    for warning in weights_warnings(result):
        print(f"warning: {warning}")

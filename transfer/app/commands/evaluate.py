"""`command=evaluate`: score a model dir (or an ensemble) on a labelled folder."""

from __future__ import annotations

from pathlib import Path

from transfer.app.dispatch import output_dir
from transfer.app.early import check_data_early
from transfer.app.schema import Config
from transfer.errors import UserError


def run(cfg: Config) -> None:
    if not cfg.model or cfg.data.kind != "folder" or cfg.data.root in (None, "???"):
        raise UserError(
            "command=evaluate needs model=<model dir> (or a list) and data=folder data.root=<labelled folder>."
        )
    check_data_early(cfg.data)
    from transfer.app.early import check_model_early

    model = list(cfg.model) if isinstance(cfg.model, list | tuple) else str(cfg.model)
    check_model_early(model)
    from transfer.inference.evaluate import evaluate_folder

    m = evaluate_folder(model, Path(str(cfg.data.root)).expanduser(), output_dir(), cfg.tta)
    print(
        f"{m['n']} images ({m['split']}), tta={m['tta']}: accuracy {m['accuracy']:.3f}, "
        f"balanced accuracy {m['balanced_accuracy']:.3f}, macro F1 {m['f1_macro']:.3f}"
    )
    for c, pr in m["per_class"].items():
        print(f"  {c:<16} precision {pr['precision']:.3f}  recall {pr['recall']:.3f}")
    print(f"report: {output_dir() / 'report.html'}  (metrics.json, confusion.png, predictions.csv beside it)")

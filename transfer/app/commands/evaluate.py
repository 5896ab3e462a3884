"""`command=evaluate`: score a model dir (or an ensemble) on a labelled folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transfer.app.dispatch import check_data_early, output_dir, plain
from transfer.errors import UserError


def run(cfg: DictConfig) -> None:
    if not cfg.get("model") or cfg.data.get("kind") != "folder" or cfg.data.get("root") in (None, "???"):
        raise UserError(
            "command=evaluate needs model=<model dir> (or a list) and data=folder data.root=<labelled folder>."
        )
    check_data_early(plain(cfg.data))
    from transfer.app.early import check_model_early

    check_model_early(plain(cfg.model) if OmegaConf.is_list(cfg.model) else str(cfg.model))
    from transfer.inference.evaluate import evaluate_folder

    model = plain(cfg.model) if OmegaConf.is_list(cfg.model) else str(cfg.model)
    m = evaluate_folder(model, Path(str(cfg.data.root)).expanduser(), output_dir(), str(cfg.get("tta", "center")))
    print(
        f"{m['n']} images ({m['split']}), tta={m['tta']}: accuracy {m['accuracy']:.3f}, "
        f"balanced accuracy {m['balanced_accuracy']:.3f}, macro F1 {m['f1_macro']:.3f}"
    )
    for c, pr in m["per_class"].items():
        print(f"  {c:<16} precision {pr['precision']:.3f}  recall {pr['recall']:.3f}")
    print(f"report: {output_dir() / 'report.html'}  (metrics.json, confusion.png, predictions.csv beside it)")

"""`command=predict`: classes for image files, from one model dir or an ensemble, with optional multi-crop."""

from __future__ import annotations

from pathlib import Path

from transfer.app.dispatch import output_dir
from transfer.app.schema import Config
from transfer.errors import UserError


def run(cfg: Config) -> None:
    if not cfg.model or not cfg.images:
        raise UserError(
            "command=predict needs model=<run dir>/model (or a list, an ensemble) and images=<file or folder>."
        )
    from transfer.app.early import check_model_early

    model = list(cfg.model) if isinstance(cfg.model, list | tuple) else str(cfg.model)
    check_model_early(model)
    from transfer.inference.predict import predict_files, write_csv

    rows = predict_files(model, str(cfg.images), tta=cfg.tta, calibrate=cfg.calibrate)
    refuse_if_nothing_readable(rows, str(cfg.images))
    out = write_csv(rows, output_dir() / "predictions.csv")
    root = Path(str(cfg.images)).expanduser()
    names = [str(Path(r["file"]).relative_to(root)) if root.is_dir() else Path(r["file"]).name for r in rows]
    width = max(len(n) for n in names)
    for name, r in zip(names, rows, strict=True):
        what = f"{r['class']:<12} {r['probability']:.3f}" if not r.get("error") else f"unreadable: {r['error']}"
        print(f"{name:<{width}}  {what}")
    members = f"an ensemble of {len(model)} models" if isinstance(model, list) else "1 model"
    print(f"\n{len(rows)} images, {members}, tta={cfg.tta}: predictions written to {out}")


def refuse_if_nothing_readable(rows: list[dict], images: str) -> None:
    """One line (exit 2) when no file given could be read as an image: a single non-image file, or a folder of
    them; a folder with some good files predicts those and lists the others."""
    bad = [r for r in rows if r.get("error")]
    if not rows or len(bad) < len(rows):
        return
    if len(rows) == 1:
        raise UserError(f"images={images}: {bad[0]['error']}; give an image file or a folder of them.")
    raise UserError(
        f"images={images}: none of its {len(rows)} files is a readable image ({bad[0]['file']}: {bad[0]['error']}); "
        "give image files."
    )

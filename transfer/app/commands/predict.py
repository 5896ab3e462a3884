"""`command=predict`: classes for image files, from one model dir or an ensemble, with optional multi-crop."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transfer.app.dispatch import output_dir, plain
from transfer.errors import UserError


def run(cfg: DictConfig) -> None:
    if not cfg.get("model") or not cfg.get("images"):
        raise UserError(
            "command=predict needs model=<run dir>/model (or a list, an ensemble) and images=<file or folder>."
        )
    from transfer.app.early import check_model_early

    check_model_early(plain(cfg.model) if OmegaConf.is_list(cfg.model) else str(cfg.model))
    from transfer.inference.predict import predict_files, write_csv

    model = plain(cfg.model) if OmegaConf.is_list(cfg.model) else str(cfg.model)
    rows = predict_files(model, str(cfg.images), tta=str(cfg.get("tta", "center")), calibrate=bool(cfg.calibrate))
    out = write_csv(rows, output_dir() / "predictions.csv")
    root = Path(str(cfg.images)).expanduser()
    names = [str(Path(r["file"]).relative_to(root)) if root.is_dir() else Path(r["file"]).name for r in rows]
    width = max(len(n) for n in names)
    for name, r in zip(names, rows, strict=True):
        what = f"{r['class']:<12} {r['probability']:.3f}" if not r.get("error") else f"unreadable: {r['error']}"
        print(f"{name:<{width}}  {what}")
    members = f"an ensemble of {len(model)} models" if isinstance(model, list) else "1 model"
    print(f"\n{len(rows)} images, {members}, tta={cfg.get('tta', 'center')}: predictions written to {out}")

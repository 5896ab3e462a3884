"""`command=export model=<model dir> format=onnx|torchscript`: one self-describing file to run without this package
(`model=[a,b,c]`: an ensemble, averaged probabilities, written into the current run dir)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from transfer.app.dispatch import output_dir, plain
from transfer.errors import UserError


def run(cfg: DictConfig) -> None:
    if not cfg.get("model"):
        raise UserError("command=export needs model=<run dir>/model (or a list of them: an ensemble) and format=onnx.")
    from transfer.inference.export import FORMATS, check_format, export_ensemble, export_model_dir

    fmt = check_format(str(cfg.format))
    if OmegaConf.is_list(cfg.model) and len(cfg.model) > 1:
        path = export_ensemble([str(m) for m in plain(cfg.model)], output_dir() / FORMATS[fmt], fmt)
    else:
        model = str(cfg.model[0]) if OmegaConf.is_list(cfg.model) else str(cfg.model)
        path = export_model_dir(model, fmt)
    print(f"exported ({fmt}): {path}")
    if fmt == "onnx":
        print("run it anywhere with onnxruntime: see README, 'Export' (class names and preprocessing are inside)")

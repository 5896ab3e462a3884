"""`command=export model=<model dir> format=onnx|torchscript`: one self-describing file to run without this package
(`model=[a,b,c]`: an ensemble, averaged probabilities, written into the current run dir)."""

from __future__ import annotations

from transfer.app.dispatch import output_dir
from transfer.app.schema import Config
from transfer.errors import UserError


def run(cfg: Config) -> None:
    if not cfg.model:
        raise UserError("command=export needs model=<run dir>/model (or a list of them: an ensemble) and format=onnx.")
    from transfer.inference.export import FORMATS, check_format, export_ensemble, export_model_dir

    fmt = check_format(str(cfg.format))
    models = [str(m) for m in cfg.model] if isinstance(cfg.model, list | tuple) else [str(cfg.model)]
    if len(models) > 1:
        path = export_ensemble(models, output_dir() / FORMATS[fmt], fmt)
    else:
        model = models[0]
        path = export_model_dir(model, fmt)
    print(f"exported ({fmt}): {path}")
    if fmt == "onnx":
        print("run it anywhere with onnxruntime: see docs/export.md (class names and preprocessing are inside)")

"""Export a model dir (or an ensemble of them) to one self-describing file: ONNX or TorchScript.

The graph takes `image` (N x C x H x W float32, already resized, centre-cropped and normalised as the card's
preprocessing says) and returns `probabilities` (N x num_classes, softmax), with a dynamic batch axis. Class
names and preprocessing travel inside the file (ONNX metadata_props; TorchScript `_extra_files`, same keys),
so a runtime needs nothing else. Files are written atomically: a half-written export never replaces a good one.

ONNX uses the TorchScript-based exporter (`dynamo=False`) on a checked trace: it needs no `onnxscript`, takes any
nn.Module the trace check accepts (timm, torchvision, own code) and marks the batch axis dynamic with
`dynamic_axes`; the dynamo exporter needs `onnxscript` and `torch.export`-clean models.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from transfer import __version__
from transfer.atomic import write_bytes_atomic
from transfer.backbones.base import Preprocessing
from transfer.errors import UserError
from transfer.inference.trace_check import trace_checked
from transfer.model.classifier import Classifier

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript"}
OPSET = 17
INPUT, OUTPUT = "image", "probabilities"


class Probabilities(nn.Module):
    """A classifier followed by softmax: what an exported graph returns."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image), dim=1)  # N x num_classes


class MeanProbabilities(nn.Module):
    """The members' mean probabilities. The input is normalised as member 0 expects; each other member gets it
    re-normalised to its own mean/std (x * std0/std_i + (mean0 - mean_i)/std_i), exact when they agree."""

    def __init__(self, members: Sequence[nn.Module], pres: Sequence[Preprocessing]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        mean0, std0 = torch.tensor(pres[0].mean), torch.tensor(pres[0].std)
        for i, pre in enumerate(pres):
            mean, std = torch.tensor(pre.mean), torch.tensor(pre.std)
            self.register_buffer(f"scale{i}", (std0 / std).view(1, -1, 1, 1))
            self.register_buffer(f"shift{i}", ((mean0 - mean) / std).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        probs = [
            torch.softmax(m(image * getattr(self, f"scale{i}") + getattr(self, f"shift{i}")), dim=1)
            for i, m in enumerate(self.members)
        ]
        return torch.stack(probs).mean(0)  # N x num_classes


def check_format(format: str) -> str:
    if format not in FORMATS:
        raise UserError(f"format={format!r}: choose one of {', '.join(FORMATS)}.")
    return format


def drop_aux_heads(classifier: Classifier) -> Classifier:
    """Auxiliary heads (GoogLeNet, Inception v3) become Identity: eval never runs them, the file need not hold them."""
    aux = {id(a.module) for a in classifier.backbone.aux_heads()}
    for name, module in list(classifier.named_modules()):
        if id(module) in aux:
            parent, _, attr = name.rpartition(".")
            setattr(classifier.get_submodule(parent), attr, nn.Identity())
    return classifier


def export_metadata(classes: list[str], pre: Preprocessing, backbone: str, **extra: str) -> dict[str, str]:
    """String key -> string value (JSON for lists): ONNX metadata_props and TorchScript _extra_files alike."""
    return {
        "classes": json.dumps(list(classes), ensure_ascii=False),
        "input_size": json.dumps(list(pre.input_size)),
        "mean": json.dumps(list(pre.mean)),
        "std": json.dumps(list(pre.std)),
        "interpolation": pre.interpolation,
        "crop_pct": repr(float(pre.crop_pct)),
        "backbone": backbone,
        "transfer_version": __version__,
        "input": f"{INPUT}: N x C x H x W float32, resized (shorter side H / crop_pct), centre-cropped, /255, "
        "(x - mean) / std",
        "output": f"{OUTPUT}: N x len(classes) softmax, in the order of classes",
        **extra,
    }


def onnx_bytes(traced: torch.jit.ScriptModule, example: torch.Tensor, metadata: dict[str, str]) -> bytes:
    import onnx

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            traced,
            (example,),
            buf,
            dynamo=False,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
        )
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def torchscript_bytes(traced: torch.jit.ScriptModule, metadata: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.save's deprecation notice
        torch.jit.save(traced, buf, _extra_files=metadata)
    return buf.getvalue()


def export_module(
    model: nn.Module, pre: Preprocessing, metadata: dict[str, str], format: str, out: Path, label: str
) -> Path:
    """Trace (checked), serialise and write `model` (which returns probabilities) to `out`."""
    check_format(format)
    gen = torch.Generator().manual_seed(0)
    example = torch.randn((2, *pre.input_size), generator=gen)  # 2 x C x H x W
    traced = trace_checked(model.eval(), example, label, prefix=_prefix(model))
    data = onnx_bytes(traced, example, metadata) if format == "onnx" else torchscript_bytes(traced, metadata)
    return write_bytes_atomic(Path(out), data)  # readers see the old file or the new one, never half


def _prefix(model: nn.Module) -> str:
    return "model." if isinstance(model, Probabilities) else ""


def export_model_dir(model_dir: str | Path, format: str = "onnx", out: str | Path | None = None) -> Path:
    """Export one model dir to `<model dir>/model.onnx` (or `model.pt`), or to `out`; returns the file written."""
    from transfer.model.model_dir import load_model_dir

    check_format(format)
    classifier, card = load_model_dir(model_dir)
    pre = Preprocessing.from_dict(card["preprocessing"])
    metadata = export_metadata(card["classes"], pre, card["backbone"])
    target = Path(out) if out is not None else Path(model_dir).expanduser() / FORMATS[format]
    label = f"model={model_dir} (backbone {card['backbone']})"
    return export_module(Probabilities(drop_aux_heads(classifier)), pre, metadata, format, target, label)


def export_ensemble(model_dirs: Sequence[str | Path], out: str | Path, format: str | None = None) -> Path:
    """One graph averaging the members' probabilities; `format` defaults from the suffix of `out` (else onnx)."""
    from transfer.inference.ensemble import load_members

    out = Path(out).expanduser()
    format = check_format(format or SUFFIXES.get(out.suffix, "onnx"))
    if not model_dirs:
        raise UserError("model: an ensemble export needs at least one model dir.")
    members, classes = load_members(model_dirs)
    pres = [Preprocessing.from_dict(card["preprocessing"]) for _, card in members]
    for d, pre in zip(model_dirs, pres, strict=True):
        if pre.input_size != pres[0].input_size:
            raise UserError(
                f"model={d}: input size {list(pre.input_size)} differs from {model_dirs[0]}'s "
                f"{list(pres[0].input_size)}; one exported graph needs members with the same input size."
            )
    backbones = [card["backbone"] for _, card in members]
    metadata = export_metadata(
        classes, pres[0], "+".join(backbones), members=json.dumps([str(d) for d in model_dirs], ensure_ascii=False)
    )
    model = MeanProbabilities([drop_aux_heads(c) for c, _ in members], pres)
    label = f"ensemble ({', '.join(str(d) for d in model_dirs)})"
    return export_module(model, pres[0], metadata, format, out, label)

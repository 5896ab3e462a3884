"""Export: ONNX (onnxruntime, CPU) and TorchScript give the PyTorch model's probabilities on real-looking images."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from transfer.backbones.base import Backbone, Preprocessing, Stage
from transfer.backbones.factory import create_backbone
from transfer.backbones.registry import register_backbone
from transfer.errors import UserError
from transfer.inference.export import export_ensemble, export_model_dir
from transfer.inference.predict import decode_images, predict_files
from transfer.inference.tta import MultiCrop
from transfer.model.classifier import Classifier
from transfer.model.heads import create_head
from transfer.model.model_dir import load_model_dir, save_model_dir

ort = pytest.importorskip("onnxruntime")
SNIPPET = Path(__file__).resolve().parents[1] / "docs" / "snippets" / "onnx_predict.py"
CLASSES = ["cat", "dog", "bird"]
ATOL = 1e-4


def make_model_dir(path: Path, name: str, seed: int = 0, size: int | None = None, classes=CLASSES, **kwargs) -> Path:
    """A randomly initialised classifier saved as a model dir (GoogLeNet's side heads sized to the task)."""
    torch.manual_seed(seed)
    backbone = create_backbone(name, pretrained=False, **kwargs)
    backbone.reset_aux_heads(len(classes))
    if size:
        pre = backbone.preprocessing
        backbone.preprocessing = Preprocessing((pre.channels, size, size), pre.mean, pre.std, pre.interpolation, 0.875)
    classifier = Classifier(backbone, create_head("softmax", backbone.num_features, len(classes)))
    return save_model_dir(path, classifier, name, list(classes), {"name": "softmax"}, backbone_kwargs=kwargs)


def write_images(folder: Path, n: int = 5) -> list[Path]:
    """Photo-like PNGs: colour gradients with a few shapes, odd sizes (so resize and crop matter)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        w, h = 70 + 13 * i, 50 + 7 * i
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([xx * 255 / w, yy * 255 / h, np.full_like(xx, 40 * i)], -1).astype(np.uint8)
        img = Image.fromarray(rgb)
        draw = ImageDraw.Draw(img)
        draw.ellipse((5 + i, 8, 30 + 3 * i, 35), fill=(250, 240 - 30 * i, 20))
        draw.rectangle((w // 2, h // 3, w - 4, h - 6), outline=(10, 10, 10), width=3)
        files.append(folder / f"img{i}.png")
        img.save(files[-1])
    return files


def card_inputs(model_dir: Path, files: list[Path]) -> torch.Tensor:
    """The images as the card's preprocessing says (predict's own decode + centre crop): N x C x H x W."""
    _, card = load_model_dir(model_dir)
    pre = Preprocessing.from_dict(card["preprocessing"])
    x, errors = decode_images(files, pre)
    assert not any(errors)
    return MultiCrop(nn.Identity(), pre.size).crops(x)[0]


def torch_probs(model_dir: Path, x: torch.Tensor) -> np.ndarray:
    classifier, _ = load_model_dir(model_dir)
    with torch.no_grad():
        return torch.softmax(classifier(x), dim=1).numpy()


def onnx_probs(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    return session.run(["probabilities"], {"image": x.numpy()})[0]


def onnx_metadata(path: Path) -> dict[str, str]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    root = tmp_path_factory.mktemp("lenet")
    model_dir = make_model_dir(root / "model", "lenet5")
    return model_dir, export_model_dir(model_dir), write_images(root / "images")


def test_lenet_onnx_matches_pytorch_at_batch_5_and_1(lenet) -> None:
    model_dir, onnx_path, files = lenet
    assert onnx_path == model_dir / "model.onnx"
    x = card_inputs(model_dir, files)
    assert x.shape == (5, 1, 32, 32)
    ref = torch_probs(model_dir, x)
    got5, got1 = onnx_probs(onnx_path, x), onnx_probs(onnx_path, x[:1])
    assert got5.shape == (5, 3) and got1.shape == (1, 3)
    assert np.abs(got5 - ref).max() < ATOL
    assert np.abs(got1 - ref[:1]).max() < ATOL
    np.testing.assert_allclose(got5.sum(1), 1.0, atol=1e-5)  # probabilities, not logits
    assert not [p for p in model_dir.iterdir() if p.name.endswith(".tmp")]


def test_onnx_metadata_round_trips_the_card(lenet) -> None:
    model_dir, onnx_path, _ = lenet
    card = json.loads((model_dir / "card.json").read_text())
    meta = onnx_metadata(onnx_path)
    assert json.loads(meta["classes"]) == CLASSES
    assert json.loads(meta["mean"]) == [0.5] and json.loads(meta["std"]) == [0.5]
    assert json.loads(meta["input_size"]) == [1, 32, 32]
    assert float(meta["crop_pct"]) == card["preprocessing"]["crop_pct"] == 1.0
    assert meta["interpolation"] == "bilinear" and meta["backbone"] == "lenet5"
    assert meta["transfer_version"] == card["transfer_version"]


def test_lenet_torchscript_matches_pytorch_and_carries_metadata(lenet, tmp_path) -> None:
    model_dir, _, files = lenet
    path = export_model_dir(model_dir, format="torchscript", out=tmp_path / "lenet.pt")
    extra = {"classes": "", "mean": "", "input_size": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["classes"]) == CLASSES and json.loads(extra["input_size"]) == [1, 32, 32]
    x = card_inputs(model_dir, files)
    with torch.no_grad():
        assert (loaded(x).numpy() - torch_probs(model_dir, x)).__abs__().max() < ATOL
        assert loaded(x[:1]).shape == (1, 3)


def test_readme_snippet_predicts_like_predict_files(lenet, monkeypatch, capsys) -> None:
    """docs/snippets/onnx_predict.py (quoted verbatim by docs/export.md) on an exported model: same class, same p."""
    _, onnx_path, files = lenet
    rows = predict_files(onnx_path.parent, files[2])
    monkeypatch.setattr(sys, "argv", [str(SNIPPET), str(onnx_path), str(files[2])])
    runpy.run_path(str(SNIPPET), run_name="__main__")
    top, p = capsys.readouterr().out.split()
    assert top == rows[0]["class"]
    assert abs(float(p) - rows[0]["probability"]) < ATOL


def test_unknown_format_names_the_choices(lenet) -> None:
    with pytest.raises(UserError, match=r"^format='banana': choose one of onnx, torchscript\.$"):
        export_model_dir(lenet[0], format="banana")


def test_failed_export_leaves_the_old_file_whole(tmp_path, monkeypatch) -> None:
    model_dir = make_model_dir(tmp_path / "m", "lenet5")
    (model_dir / "model.onnx").write_bytes(b"old export")

    def half_written(*args, **kwargs):
        raise OSError("disk full")

    import transfer.atomic

    monkeypatch.setattr(transfer.atomic.os, "fsync", half_written)
    with pytest.raises(OSError, match="disk full"):
        export_model_dir(model_dir)
    assert (model_dir / "model.onnx").read_bytes() == b"old export"
    assert sorted(p.name for p in model_dir.iterdir()) == ["card.json", "model.onnx", "model.safetensors"]


# -- a backbone that cannot be traced --------------------------------------------------------------------------------
class Hazard(nn.Module):
    """Python on tensor values: the three ways a trace silently freezes one input's answer."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "if":
            return x * 2 if x.mean() > 0 else x - 1
        if self.kind == "item":
            return x / x.abs().max().item()
        return torch.from_numpy(np.tanh(x.detach().numpy()))


class HazardNet(Backbone):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.gate = Hazard(kind)
        self.num_features = 4
        self.preprocessing = Preprocessing((1, 16, 16), (0.5,), (0.5,), "bilinear", 1.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.conv(x))  # N x 4 x 14 x 14

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean((2, 3))  # N x 4

    def stages(self) -> list[Stage]:
        return [Stage("conv", ("conv.weight", "conv.bias"))]


@register_backbone("export_test_hazard", source="user")
def export_test_hazard(pretrained: bool = False, tag: str | None = None, kind: str = "if") -> HazardNet:
    return HazardNet(kind)


@pytest.mark.parametrize("kind", ["if", "item", "numpy"])
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_untraceable_backbone_is_one_line_naming_the_module(tmp_path, kind, format) -> None:
    model_dir = make_model_dir(tmp_path / "m", "export_test_hazard", kind=kind)
    with pytest.raises(UserError) as info:
        export_model_dir(model_dir, format=format)
    msg = str(info.value)
    assert "\n" not in msg
    assert "module 'backbone.gate' (Hazard)" in msg and "cannot export" in msg
    assert not list(model_dir.glob("model.onnx")) and not list(model_dir.glob("model.pt"))


# -- ensembles -------------------------------------------------------------------------------------------------------
def test_ensemble_of_two_averages_members_even_with_different_normalisation(tmp_path) -> None:
    a = make_model_dir(tmp_path / "a", "lenet5", seed=1)
    b = make_model_dir(tmp_path / "b", "lenet5", seed=2)
    card = json.loads((b / "card.json").read_text())
    card["preprocessing"].update(mean=[0.4], std=[0.3])  # member b expects other statistics: the graph re-normalises
    (b / "card.json").write_text(json.dumps(card))
    files = write_images(tmp_path / "images")
    path = export_ensemble([a, b], tmp_path / "ens.onnx")
    xa, xb = card_inputs(a, files), card_inputs(b, files)
    ref = (torch_probs(a, xa) + torch_probs(b, xb)) / 2
    got = onnx_probs(path, xa)
    assert np.abs(got - ref).max() < ATOL
    assert onnx_probs(path, xa[:1]).shape == (1, 3)
    meta = onnx_metadata(path)
    assert json.loads(meta["classes"]) == CLASSES and meta["backbone"] == "lenet5+lenet5"
    assert json.loads(meta["members"]) == [str(a), str(b)]
    ts = export_ensemble([a, b], tmp_path / "ens.pt")
    with torch.no_grad():
        assert np.abs(torch.jit.load(str(ts))(xa).numpy() - ref).max() < ATOL


def test_ensemble_refuses_an_odd_member(tmp_path) -> None:
    a = make_model_dir(tmp_path / "a", "lenet5")
    other = make_model_dir(tmp_path / "other", "lenet5", classes=["x", "y", "z"])
    small = make_model_dir(tmp_path / "small", "lenet5")
    card = json.loads((small / "card.json").read_text())
    card["preprocessing"]["input_size"] = [1, 28, 28]
    (small / "card.json").write_text(json.dumps(card))
    with pytest.raises(UserError, match=rf"^model={other}: its classes"):
        export_ensemble([a, other], tmp_path / "e.onnx")
    with pytest.raises(UserError, match=rf"^model={small}: input size \[1, 28, 28\] differs"):
        export_ensemble([a, small], tmp_path / "e.onnx")
    assert not (tmp_path / "e.onnx").exists()


# -- library backbones (slow: real architectures, random weights) ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("resnet18", 64), ("googlenet", 96)])
def test_library_backbones_onnx_and_torchscript_match_pytorch(tmp_path, name, size) -> None:
    model_dir = make_model_dir(tmp_path / "m", name, size=size)
    files = write_images(tmp_path / "images")
    x = card_inputs(model_dir, files)
    assert x.shape == (5, 3, size, size)
    ref = torch_probs(model_dir, x)
    onnx_path = export_model_dir(model_dir)
    assert np.abs(onnx_probs(onnx_path, x) - ref).max() < ATOL
    assert np.abs(onnx_probs(onnx_path, x[:1]) - ref[:1]).max() < ATOL
    with torch.no_grad():
        ts = torch.jit.load(str(export_model_dir(model_dir, format="torchscript")))
        assert np.abs(ts(x).numpy() - ref).max() < ATOL
    if name == "googlenet":  # the side heads are not in the file: fewer stored weights than the main path alone
        import onnx

        classifier, _ = load_model_dir(model_dir)
        main = sum(p.numel() for n, p in classifier.named_parameters() if ".aux" not in n)
        stored = sum(int(np.prod(t.dims)) for t in onnx.load(str(onnx_path)).graph.initializer)
        assert stored <= main < sum(p.numel() for p in classifier.parameters())

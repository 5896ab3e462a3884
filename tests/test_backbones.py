"""The backbone contract, parametrised over the registry; GoogLeNet's auxiliary loss; registering a user's backbone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transfer.backbones import Backbone, create_backbone, get_spec, list_backbones
from transfer.errors import UserError

NATIVE_299 = {"inception_v3", "inception_v4", "inception_resnet_v2"}
# real CPU forwards for the small ones in the default run; the big ones (VGG, Inception, deep ResNets) are slow here
LIGHT = {"lenet5", "nin", "alexnet", "googlenet", "resnet18"}
EXPECTED_AUX = {"googlenet": [0.3, 0.3], "inception_v3": [0.4]}


def meta_backbone(name: str) -> Backbone:
    with torch.device("meta"):
        return create_backbone(name, pretrained=False)


def test_registry_holds_the_classic_zoo():
    names = set(list_backbones())
    classics = {"lenet5", "alexnet", "nin", "googlenet", "inception_v3", "inception_v4", "inception_resnet_v2"}
    vggs = {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
    resnets = {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    assert classics | vggs | resnets <= names


@pytest.mark.parametrize("name", list_backbones())
def test_contract_on_meta_device(name):
    """Shapes, stages and auxiliary heads at the default input size, without allocating any weights."""
    b = meta_backbone(name)
    pre = b.preprocessing
    assert len(pre.mean) == len(pre.std) == pre.channels
    assert 0 < pre.crop_pct <= 1
    if name in NATIVE_299:
        assert pre.size == (299, 299)
    # stages: ordered, named, non-empty, and together every parameter exactly once
    stages = b.stages()
    assert stages and all(s.params for s in stages)
    listed = [p for s in stages for p in s.params]
    assert sorted(listed) == sorted(n for n, _ in b.named_parameters())
    assert len(listed) == len(set(listed))
    x = torch.zeros(2, *pre.input_size, device="meta")  # 2 x C x H x W
    b.eval()
    assert tuple(b(x).shape) == (2, b.num_features)
    feats, aux = b.forward_with_aux(x)
    assert tuple(feats.shape) == (2, b.num_features) and aux == []  # never at inference
    b.train()
    feats, aux = b.forward_with_aux(x)
    assert [h.weight for h in b.aux_heads()] == EXPECTED_AUX.get(name, [])
    assert len(aux) == len(b.aux_heads())
    b.reset_aux_heads(5)
    assert [tuple(a.shape) for a in b.forward_with_aux(x)[1]] == [(2, 5)] * len(b.aux_heads())


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in LIGHT else pytest.mark.slow) for n in list_backbones()]
)
@torch.no_grad()
def test_real_forward_small_input(name):
    torch.manual_seed(0)
    b = create_backbone(name, pretrained=False).eval()
    size = 299 if name in NATIVE_299 else 32 if name in ("lenet5", "nin") else 64
    x = torch.randn(2, b.preprocessing.channels, size, size)
    feats = b(x)
    assert feats.shape == (2, b.num_features) and torch.isfinite(feats).all()
    assert torch.equal(feats, b(x))  # eval mode is deterministic (no dropout, BN on running statistics)


def test_preprocessing_comes_from_the_weights():
    alex, goog = meta_backbone("alexnet"), meta_backbone("googlenet")
    for b in (alex, goog):  # torchvision ImageClassification(crop_size=224): resize 256, bilinear, ImageNet stats
        assert b.preprocessing.input_size == (3, 224, 224)
        assert b.preprocessing.crop_pct == pytest.approx(224 / 256)
        assert b.preprocessing.interpolation == "bilinear"
        assert b.preprocessing.mean == pytest.approx((0.485, 0.456, 0.406))
    v3 = meta_backbone("inception_v3")  # timm's default tag tv_in1k: 299, bicubic, Inception mean/std 0.5
    assert (v3.preprocessing.input_size, v3.preprocessing.interpolation) == ((3, 299, 299), "bicubic")
    assert v3.preprocessing.mean == pytest.approx((0.5, 0.5, 0.5))
    assert meta_backbone("inception_resnet_v2").preprocessing.crop_pct == pytest.approx(0.8975)
    assert meta_backbone("resnet50").preprocessing.crop_pct == pytest.approx(0.95)  # a1_in1k, the default tag


def test_googlenet_training_loss_adds_both_aux_terms_at_0_3():
    from transfer.training.module import TransferModule
    from transfer.training.regimes import Regime

    torch.manual_seed(0)
    b = create_backbone("googlenet", pretrained=False)
    b.reset_aux_heads(3)
    head = nn.Linear(b.num_features, 3)
    module = TransferModule(b, head, 3, Regime("full", frozen_stages=0))
    module.train()
    for m in b.modules():  # dropout off so that the two passes below see the same function
        if isinstance(m, nn.Dropout):
            m.eval()
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    loss, _, _ = module.model_step((x, y))
    feats, (aux1, aux2) = b.forward_with_aux(x)
    main = F.cross_entropy(head(feats), y)
    expected = main + 0.3 * F.cross_entropy(aux1, y) + 0.3 * F.cross_entropy(aux2, y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(loss.item() - main.item()) > 0.5  # the aux terms are really there (each about 0.3 * ln 3)
    module.eval()
    with torch.no_grad():
        eval_loss, _, _ = module.model_step((x, y))
    assert eval_loss.item() == pytest.approx(F.cross_entropy(head(b(x)), y).item(), rel=1e-5)


@pytest.mark.slow
def test_inception_v3_aux_logits_at_native_size():
    torch.manual_seed(0)
    b = create_backbone("inception_v3", pretrained=False)
    b.reset_aux_heads(4)
    b.train()
    feats, aux = b.forward_with_aux(torch.randn(2, 3, 299, 299))
    assert feats.shape == (2, 2048) and [a.shape for a in aux] == [(2, 4)]


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(UserError) as e:
        get_spec("resnet5O")
    assert "resnet50" in str(e.value) and "command=backbones" in str(e.value)
    with pytest.raises(UserError, match="vgg16"):
        create_backbone("vgg_16")


@pytest.mark.parametrize("name", ["lenet5", "nin"])
def test_no_public_weights_is_said(name):
    assert get_spec(name).pretrained_tags == ()
    with pytest.raises(UserError, match="no public pretrained weights.*backbone.pretrained=false"):
        create_backbone(name, pretrained=True)


def test_unknown_hub_tag_lists_the_valid_ones():
    with pytest.raises(UserError, match="tv_in1k"):
        create_backbone("vgg11", pretrained=True, weights="no_such_tag")
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        create_backbone("alexnet", pretrained=True, weights="IMAGENET9K")


def test_listing_rows_cover_the_registry():
    from transfer.app.commands.backbones import backbone_row

    row = backbone_row("googlenet")
    assert row["aux"] == 2 and row["features"] == 1024 and row["input"] == "3x224x224"
    assert row["params_m"] == pytest.approx(5.6, abs=0.1)  # torchvision's 6.62 M minus the 1000-way fc
    assert row["gflops"] == pytest.approx(2 * 1.498, rel=0.02)  # torchvision's meta "_ops" (GMACs) x 2
    assert row["weights"] == ["IMAGENET1K_V1"]
    assert backbone_row("alexnet")["gflops"] == pytest.approx(2 * 0.714, rel=0.02)
    assert backbone_row("nin")["weights"] == []


# -- a user's own backbone and head: the README example, verbatim ----------------------------------------------------

USER_PLUGIN = '''
import torch
from torch import nn
from transfer import Backbone, Preprocessing, Stage, register_backbone, register_head


class TinyNet(Backbone):
    """Two conv blocks and global average pooling: 32 features."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.num_features = 32
        self.preprocessing = Preprocessing(input_size=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(x))  # N x 32 x 32 x 32

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=(2, 3))  # N x 32

    def stages(self) -> list[Stage]:
        blocks = ("block1", "block2")
        return [Stage(n, tuple(f"{n}.{p}" for p, _ in getattr(self, n).named_parameters())) for n in blocks]


@register_backbone("tinynet", description="my two-block CNN")
def tinynet(pretrained: bool = False, tag: str | None = None) -> TinyNet:
    return TinyNet()  # its checkpoint comes with backbone.weights=tinynet.safetensors


class CosineClassifier(nn.Module):
    """Logits = scale x cosine(feature, class weight) (Chen et al. 2019, "A Closer Look at Few-shot Classification")."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 10.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, in_features) * 0.01)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.normalize(x, dim=1) @ nn.functional.normalize(self.weight, dim=1).T


@register_head("cosine")
def cosine_head(in_features: int, num_classes: int, scale: float = 10.0) -> nn.Module:
    return CosineClassifier(in_features, num_classes, scale)
'''


def write_user_plugin(folder) -> None:
    (folder / "my_backbones.py").write_text(USER_PLUGIN, encoding="utf-8")


def test_user_backbone_and_head_work_with_every_regime(tmp_path, monkeypatch):
    import importlib

    from safetensors.torch import save_file

    from tests.requests import fit_request
    from tests.synthetic import write_image_folder
    from transfer.studies.fit import run_fit

    write_user_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = importlib.import_module("my_backbones")
    torch.manual_seed(3)
    source = plugin.TinyNet()
    save_file(source.state_dict(), str(tmp_path / "tinynet.safetensors"))  # the user's own checkpoint
    loaded = create_backbone("tinynet", weights=str(tmp_path / "tinynet.safetensors"))
    assert torch.equal(loaded.block2[0].weight, source.block2[0].weight)
    report = run_fit(
        fit_request(
            tmp_path / "run",
            "backbone=lenet5",
            "backbone.name=tinynet",
            f"backbone.weights={tmp_path / 'tinynet.safetensors'}",
            "data=folder",
            f"data.root={write_image_folder(tmp_path / 'data', n=8)}",
            "data.batch_size=8",
            "head.name=cosine",
            "head.lr=0.01",
            "+head.params.scale=5.0",
            "trainer.max_epochs=2",
            "augment=none",
            "study.regimes=[frozen,partial,full]",
            "regime.frozen_stages=1",
            "regime=partial",
        )
    )
    assert list(report["table"]) == ["frozen", "partial", "full"]
    params = {name: row["trainable_params"] for name, row in report["table"].items()}
    head = 3 * 32  # the cosine head: one weight row per class, no bias
    block2 = 16 * 32 * 9 + 32 + 2 * 32
    assert params == {"frozen": head, "partial": head + block2, "full": head + block2 + 3 * 16 * 9 + 16 + 2 * 16}


def test_real_lightning_checkpoint_gives_its_backbone_weights(tmp_path):
    """A checkpoint Lightning wrote while fine-tuning (weights_only=True loads it) chains into a new backbone."""
    from configs import train_config

    from tests.synthetic import write_image_folder
    from transfer.data.labelled import LabelledImages
    from transfer.data.pixels import scan_and_decode
    from transfer.model.heads import create_head
    from transfer.training.config import Regime
    from transfer.training.fit import fit_classifier

    backbone = create_backbone("nin", pretrained=False)
    manifest, pixels = scan_and_decode(write_image_folder(tmp_path / "data", n=4), backbone.preprocessing)
    labels = torch.tensor([s.label for s in manifest.samples])
    images = LabelledImages(pixels, labels, manifest.classes, [s.path for s in manifest.samples])
    cfg = train_config(epochs=1, batch_size=4, accelerator="cpu", devices=1)
    head = create_head("softmax", backbone.num_features, 3)
    fitted = fit_classifier(backbone, head, Regime("full", frozen_stages=0), images, None, cfg, tmp_path / "fit", True)
    (ckpt,) = (tmp_path / "fit").rglob("*.ckpt")
    chained = create_backbone("nin", weights=str(ckpt))
    trained = fitted.classifier.backbone.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in chained.state_dict().items())


@pytest.mark.slow
def test_user_backbone_from_the_cli(tmp_path):
    import os
    import subprocess
    import sys

    from tests.synthetic import write_image_folder

    write_user_plugin(tmp_path)
    root = write_image_folder(tmp_path / "data", n=6)
    env = {**os.environ, "TRANSFER_PLUGINS": "my_backbones", "PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    args = [
        "backbone.name=tinynet",
        "backbone.pretrained=false",
        "recipe=cat_detector",
        f"data.root={root}",
        "head.name=cosine",
    ]
    args += ["regime=partial", "regime.frozen_stages=1", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(
        [sys.executable, "-m", "transfer", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = (tmp_path / "run" / "model" / "card.json").read_text()
    assert '"backbone": "tinynet"' in card and '"name": "cosine"' in card


def test_plugin_module_that_cannot_be_imported_is_a_user_error(monkeypatch):
    from transfer.backbones.catalog import PLUGINS_ENV, load_plugins

    monkeypatch.setenv(PLUGINS_ENV, "no_such_plugin_module")
    with pytest.raises(UserError, match="TRANSFER_PLUGINS=no_such_plugin_module: cannot import it"):
        load_plugins()


def test_readme_shows_the_tested_plugin_verbatim():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert USER_PLUGIN.strip("\n") in readme

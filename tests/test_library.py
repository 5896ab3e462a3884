"""`transfer.fit` from Python (issue 20.5): the config it builds for every backbone form (a registered name, a config
group's option, an nn.Module) x head form (a group's option, a custom registered head) x `pretrained` given or not,
and tiny real fits end to end through the library."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from tests.synthetic import write_image_folder
from transfer import Backbone, Preprocessing, Stage, register_backbone, register_head
from transfer.app.api import library_config

CUSTOM_HEAD = "library_matrix_head"
PLUGIN = "library_matrix_net"


@register_head(CUSTOM_HEAD)
def _cosine_head(in_features: int, num_classes: int, scale: float = 10.0) -> nn.Module:
    """A head that is not a config group's option: registered in code only."""
    return nn.Sequential(nn.LayerNorm(in_features), nn.Linear(in_features, num_classes))


class _PluginNet(Backbone):
    """A registered backbone that has no conf/backbone/ option."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.num_features = 6
        self.preprocessing = Preprocessing(input_size=(3, 32, 32))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))  # N x 6 x 30 x 30

    def pool(self, f: torch.Tensor) -> torch.Tensor:
        return f.mean((2, 3))  # N x 6

    def stages(self) -> list[Stage]:
        return [Stage("conv", ("conv.weight", "conv.bias"))]


register_backbone(PLUGIN, description="a test plugin")(lambda pretrained=False, tag=None, **kw: _PluginNet())


class SmallCNN(nn.Module):
    """A user's own module handed to transfer.fit (the MyCNN of docs/backbones.md)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # N x 8


def _module() -> Backbone:
    return Backbone.from_module(SmallCNN(), preprocessing=Preprocessing(input_size=(3, 32, 32)), name="smallcnn")


BACKBONES = {"registered": PLUGIN, "group": "resnet50", "module": "module"}  # "module": an nn.Module object
HEADS = {"softmax": "softmax", "mlp": "mlp", "custom": CUSTOM_HEAD}
PRETRAINED = {"not given": None, "true": True, "false": False}


@pytest.mark.parametrize(
    ("backbone_kind", "head_kind", "given"),
    list(itertools.product(BACKBONES, HEADS, PRETRAINED)),
    ids=lambda v: str(v),
)
def test_library_config_for_every_backbone_head_and_pretrained_form(tmp_path, backbone_kind, head_kind, given):
    backbone = _module() if backbone_kind == "module" else BACKBONES[backbone_kind]
    head = HEADS[head_kind]
    cfg = library_config(tmp_path / "data", backbone=backbone, head=head, pretrained=PRETRAINED[given])
    # the backbone argument is what the body is, whatever the head (the head never overwrites it)
    if backbone_kind == "registered":
        assert cfg.backbone.name == PLUGIN and cfg.backbone.weights is None
        assert cfg.backbone.pretrained is (PRETRAINED[given] or False)  # not given: the schema's default, false
    elif backbone_kind == "group":  # conf/backbone/resnet50.yaml: pretrained true unless the call says otherwise
        assert cfg.backbone.name == "resnet50"
        assert cfg.backbone.pretrained is (True if PRETRAINED[given] is None else PRETRAINED[given])
    else:  # the module is registered under its name and used with the weights it holds: `pretrained` is ignored
        assert cfg.backbone.name == "smallcnn" and cfg.backbone.pretrained is False
        from transfer.backbones.catalog import registered

        assert registered()["smallcnn"].source == "library"
    # the head argument is what the head is
    assert cfg.head.name == head
    if head_kind == "mlp":  # the group's option brings its YAML: solver and params
        assert cfg.head.solver == "sgd" and cfg.head.params == {"hidden": 256, "dropout": 0.2}
    else:
        assert cfg.head.solver == "lbfgs" and cfg.head.params == {}
    # and the rest is the folder defaults, whatever the arguments
    assert cfg.data.kind == "folder" and cfg.data.root == str(tmp_path / "data") and cfg.regime.name == "frozen"
    assert cfg.source is None and cfg.optimizer.name == "adamw" and cfg.trainer.max_epochs >= 1


def test_overrides_apply_after_the_arguments_and_a_wrong_key_is_one_line(tmp_path):
    from transfer.errors import UserError

    cfg = library_config(tmp_path, backbone="resnet18", head="mlp", overrides=["head.params.hidden=32"])
    assert cfg.backbone.name == "resnet18" and cfg.head.params["hidden"] == 32
    for typo in ("head.lrr=3", "+head.lrr=3"):  # command-line style, with or without the plus
        with pytest.raises(UserError, match=r"^head.lrr: unknown key; head.\* accepts"):
            library_config(tmp_path, overrides=[typo])
    with pytest.raises(UserError, match=r"^head.lr=-1.0: must be > 0"):  # the dataclass's own check
        library_config(tmp_path, overrides=["head.lr=-1"])
    cfg = library_config(tmp_path, overrides=["augment=none", "optimizer=sgd", "optimizer.momentum=0.5"])
    assert not cfg.augment.mirror and cfg.optimizer.name == "sgd" and cfg.optimizer.momentum == 0.5  # group options
    with pytest.raises(UserError, match=r"^augment=huge: not an option of the augment group; choose one of light"):
        library_config(tmp_path, overrides=["augment=huge"])


def _fit(tmp_path, **kwargs):
    import transfer

    root = write_image_folder(tmp_path / "data", n=6, size=(32, 32))
    model = transfer.fit(
        root,
        out_dir=tmp_path / "run",
        overrides=["report.cv_folds=0", "augment=none", "trainer.max_epochs=2", "data.val_fraction=0.25"]
        + [f"features.cache_dir={tmp_path / 'features'}", "trainer.accelerator=cpu"],
        **kwargs,
    )
    return model, root


def test_a_module_with_a_custom_head_fits_and_predicts_end_to_end(tmp_path):
    model, root = _fit(tmp_path, backbone=_module(), head=CUSTOM_HEAD)
    assert model.card["backbone"] == "smallcnn" and model.card["head"] == {"name": CUSTOM_HEAD}
    assert model.card["weights"]["kind"] == "module"  # its own weights, not "random initialisation"
    rows = model.predict(root / "tigger")
    assert len(rows) == 6 and all(r["class"] in model.classes for r in rows)
    import transfer

    again = transfer.load(model.model_dir)  # a fresh load rebuilds the module's class and the custom head
    torch.testing.assert_close(again.predict_proba(root / "misty"), model.predict_proba(root / "misty"))


def test_a_group_backbone_with_the_mlp_head_and_pretrained_false_fits(tmp_path):
    model, root = _fit(tmp_path, backbone="lenet5", head="mlp", pretrained=False)
    assert model.card["backbone"] == "lenet5" and model.card["head"]["name"] == "mlp"
    assert model.card["weights"]["kind"] == "random"
    assert len(model.predict(root / "neither")) == 6

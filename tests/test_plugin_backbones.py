"""A user's backbone plugin: cache folders and errors carry its registered name even when its class sets none, and
the feature cache is keyed on its code, so editing its `forward` never serves the old code's features."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
import torch
from features_helpers import images
from safetensors.torch import save_file

from transfer.backbones.factory import create_backbone
from transfer.data.augment import AugmentConfig
from transfer.errors import UserError
from transfer.features import FeatureCache, FeatureConfig
from transfer.features.key import code_digest

PLUGIN = """
import torch
from torch import nn
from transfer import Backbone, Preprocessing, Stage, register_backbone


class {cls}(Backbone):  # sets no `name`: the base class's placeholder stays
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.num_features = 4
        self.preprocessing = Preprocessing(input_size=(1, 32, 32), mean=(0.5,), std=(0.5,), crop_pct=1.0)

    def forward_features(self, x):
        return {body}  # N x 4 x 30 x 30

    def pool(self, f):
        return f.mean((2, 3))  # N x 4

    def stages(self):
        return [Stage("conv", ("conv.weight", "conv.bias"))]


@register_backbone("{name}")
def build(pretrained=False, tag=None, **kwargs):
    return {cls}()
"""


def _plugin(tmp_path, monkeypatch, module: str, body: str = "torch.relu(self.conv(x))"):
    """Write and import a plugin module (a user's file on PYTHONPATH); returns the module."""
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / f"{module}.py"
    path.write_text(textwrap.dedent(PLUGIN.format(cls="Unnamed", name=module, body=body)))
    if module in sys.modules:
        return importlib.reload(sys.modules[module])
    return importlib.import_module(module)


def _cache(backbone, tmp_path) -> FeatureCache:
    cfg = FeatureConfig(cache_dir=str(tmp_path / "cache"), views=1, progress=False)
    return FeatureCache(backbone, cfg, augment=AugmentConfig(mirror=False))


def test_a_plugin_class_without_a_name_is_named_by_its_registration(tmp_path, monkeypatch):
    _plugin(tmp_path, monkeypatch, "plugin_unnamed")
    body = create_backbone("plugin_unnamed")
    assert body.name == "plugin_unnamed"
    cache = _cache(body, tmp_path)
    cache.features(images(4))
    assert [p.name.split("-")[0] for p in (tmp_path / "cache").iterdir()] == ["plugin_unnamed"]
    save_file({"other.weight": torch.zeros(2, 2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(UserError, match="backbone 'plugin_unnamed'"):  # the weights error names it too
        create_backbone("plugin_unnamed", weights=str(tmp_path / "w.safetensors"))


def test_editing_a_plugins_forward_changes_the_cache_key_and_the_old_features_are_not_served(tmp_path, monkeypatch):
    imgs = images(6)
    _plugin(tmp_path, monkeypatch, "plugin_edited")
    torch.manual_seed(0)
    before = _cache(create_backbone("plugin_edited"), tmp_path)
    old = before.features(imgs)
    assert before.last.extracted == 6
    _plugin(tmp_path, monkeypatch, "plugin_edited", body="torch.sigmoid(self.conv(x))")  # the user edits forward
    torch.manual_seed(0)  # the same weights: only the code differs
    body = create_backbone("plugin_edited")
    after = _cache(body, tmp_path)
    assert after.namespace("center")[0] != before.namespace("center")[0]
    assert after.model_key["weights_sha256"] == before.model_key["weights_sha256"]
    new = after.features(imgs)
    assert after.last.extracted == 6 and after.last.hits == 0  # extracted again, never served from the old code
    with torch.inference_mode():
        x = (imgs.pixels.float() / 255 - 0.5) / 0.5
        torch.testing.assert_close(new[:, 0], body(x), rtol=0, atol=1e-6)
    assert not torch.allclose(new, old)


def test_library_code_is_keyed_by_version_not_digested():
    from features_helpers import lenet

    assert code_digest(lenet()) == {}  # transfer's own LeNet-5: the version in the key covers it
    assert list(code_digest(torch.nn.Sequential(torch.nn.Linear(2, 2)))) == []

"""Hub weights with no network: a cache hit loads, a miss is one clear UserError in seconds, never a minute of retries.

Sockets are blocked in-process (and in a CLI subprocess) so these tests behave the same on a machine with network.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from transfer.backbones import create_backbone
from transfer.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _blocked(*args, **kwargs):
    raise OSError("network unreachable (blocked by the test)")


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Sockets fail, HF_HUB_OFFLINE is unset (we must detect offline ourselves), caches live in tmp_path."""
    import huggingface_hub.constants

    monkeypatch.setattr(socket.socket, "connect", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFER_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    return tmp_path


def assert_offline_message(msg: str, tag: str, cache_dir: str) -> None:
    assert "\n" not in msg
    assert tag in msg and cache_dir in msg
    for fix in ("backbone.weights=FILE", "on a machine with network", "backbone.pretrained=false"):
        assert fix in msg


def test_timm_miss_without_network_is_one_clear_error(no_network):
    with pytest.raises(UserError) as e:
        create_backbone("resnet50", pretrained=True)
    assert_offline_message(str(e.value), "resnet50.a1_in1k", str(no_network / "hf"))
    assert "timm.create_model('resnet50.a1_in1k', pretrained=True)" in str(e.value)
    with pytest.raises(UserError, match="'inception_v3.tf_in1k'"):
        create_backbone("inception_v3", pretrained=True, weights="tf_in1k")  # a tag picks other weights


@pytest.mark.parametrize("name", ["googlenet", "alexnet"])
def test_torchvision_miss_without_network_is_one_clear_error(no_network, name):
    with pytest.raises(UserError) as e:
        create_backbone(name, pretrained=True)
    assert_offline_message(str(e.value), f"{name}.IMAGENET1K_V1", str(no_network / "torch_hub" / "checkpoints"))
    assert f"torchvision.models.{name}(weights='IMAGENET1K_V1')" in str(e.value)


def test_timm_hub_cache_hit_loads_without_network(no_network):
    import timm

    repo = no_network / "hf" / "models--timm--resnet18.a1_in1k"
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    torch.manual_seed(7)
    state = timm.create_model("resnet18").state_dict()
    save_file(state, str(repo / "snapshots" / "0123abcd" / "model.safetensors"))
    b = create_backbone("resnet18", pretrained=True)
    assert torch.equal(b.model.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])


def test_torchvision_hub_cache_hit_loads_without_network(no_network):
    from torchvision.models import GoogLeNet, GoogLeNet_Weights

    torch.manual_seed(8)
    tv = GoogLeNet(aux_logits=True, init_weights=False)
    ckpt = no_network / "torch_hub" / "checkpoints" / Path(GoogLeNet_Weights.IMAGENET1K_V1.url).name
    ckpt.parent.mkdir(parents=True)
    torch.save(tv.state_dict(), ckpt)
    b = create_backbone("googlenet", pretrained=True)
    assert torch.equal(b.model.inception4e.branch2[1].conv.weight, tv.inception4e.branch2[1].conv.weight)
    assert b.preprocessing.input_size == (3, 224, 224)


def test_tampered_torch_hub_cache_file_does_not_run_code(no_network):
    from torchvision.models import AlexNet_Weights

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {no_network / 'pwned'}",))

    ckpt = no_network / "torch_hub" / "checkpoints" / Path(AlexNet_Weights.IMAGENET1K_V1.url).name
    ckpt.parent.mkdir(parents=True)
    torch.save({"features.0.weight": RunsCode()}, ckpt)
    with pytest.raises(UserError, match="delete it to download again"):
        create_backbone("alexnet", pretrained=True)
    assert not (no_network / "pwned").exists()


def test_hf_hub_offline_env_counts_as_offline(no_network, monkeypatch):
    from transfer.backbones.sources.hub import network_reachable

    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: None)  # would "succeed"; the env var wins
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert network_reachable("https://huggingface.co") is False


CLI_WITHOUT_SOCKETS = """
import runpy, socket, sys
def _blocked(*args, **kwargs):
    raise OSError("network unreachable (blocked by the test)")
socket.socket.connect = _blocked
socket.getaddrinfo = _blocked
sys.argv = ["transfer", *sys.argv[1:]]
runpy.run_module("transfer", run_name="__main__", alter_sys=True)
"""


def test_cli_cat_detector_without_network_exits_2_with_one_line(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("misty", "neither", "tigger"):
        (tmp_path / "cats" / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "cats" / cls / f"{i}.png")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFER_OFFLINE")}
    env |= {"HF_HOME": str(tmp_path / "hf_home"), "TORCH_HOME": str(tmp_path / "torch"), "PYTHONWARNINGS": "ignore"}
    args = ["recipe=cat_detector", f"data.root={tmp_path / 'cats'}", f"hydra.run.dir={tmp_path / 'run'}"]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CLI_WITHOUT_SOCKETS, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.perf_counter() - started
    print(f"offline cat_detector: exit {proc.returncode} after {wall:.1f}s")  # measured, not asserted
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert_offline_message(lines[0], "resnet50.a1_in1k", str(tmp_path / "hf_home" / "hub"))


def test_default_tag_table_matches_the_registry():
    """The table the CLI's pre-torch offline check names weights from agrees with timm / torchvision defaults."""
    from transfer.backbones import get_spec, list_backbones
    from transfer.backbones.sources.default_tags import DEFAULT_TAGS, default_weights_name

    hub_backbones = {n for n in list_backbones() if get_spec(n).pretrained_tags}
    assert set(DEFAULT_TAGS) == hub_backbones
    assert all(DEFAULT_TAGS[n] == get_spec(n).pretrained_tags[0] for n in hub_backbones)
    assert default_weights_name("resnet101") == "resnet101.a1h_in1k"
    assert default_weights_name("resnet50.tv_in1k") == "resnet50.tv_in1k"

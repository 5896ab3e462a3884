"""Weight sources through one resolver: round trips through every local format, foreign layouts, bad files."""

from __future__ import annotations

import logging
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from transfer.backbones import create_backbone
from transfer.backbones.sources.weights import load_backbone_weights
from transfer.errors import UserError


def fresh(name: str, seed: int, **kwargs):
    torch.manual_seed(seed)
    return create_backbone(name, pretrained=False, **kwargs)


def assert_same_body(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    differing = [k for k in sa if not k.startswith(skip) and not torch.equal(sa[k], sb[k])]
    assert differing == []


def lightning_checkpoint(body: dict, head_width: int) -> dict:
    """The layout Lightning writes for our TransferModule (backbone.* + head.* under state_dict, plus bookkeeping)."""
    state = {f"backbone.{k}": v for k, v in body.items()}
    state |= {"head.weight": torch.zeros(3, head_width), "head.bias": torch.zeros(3)}
    return {
        "epoch": 4,
        "global_step": 40,
        "pytorch-lightning_version": "2.6.0",
        "state_dict": state,
        "hyper_parameters": {"num_classes": 3, "lr": 0.001},
        "optimizer_states": [],
        "lr_schedulers": [],
    }


@pytest.mark.parametrize("fmt", ["safetensors", "pth", "pt_module", "pt_orig_mod", "ckpt_lightning", "pth_model_key"])
def test_round_trip_through_every_local_format(tmp_path, fmt):
    source = fresh("nin", 1)
    state = source.state_dict()
    if fmt == "safetensors":
        path = tmp_path / "nin.safetensors"
        save_file(state, str(path))
    elif fmt == "ckpt_lightning":
        path = tmp_path / "last.ckpt"
        torch.save(lightning_checkpoint(state, source.num_features), path)
    else:
        prefix = {"pt_module": "module.", "pt_orig_mod": "_orig_mod.module."}.get(fmt, "")
        obj = {f"{prefix}{k}": v for k, v in state.items()}
        path = tmp_path / ("nin.pt" if fmt.startswith("pt_") else "nin.pth")
        torch.save({"model": obj, "epoch": 3} if fmt == "pth_model_key" else obj, path)
    target = create_backbone("nin", weights=str(path))
    assert_same_body(source, target)
    assert not torch.equal(fresh("nin", 2).block1[0].weight, target.block1[0].weight)


def test_chain_transfer_from_a_model_dir(tmp_path):
    from transfer.model.classifier import Classifier
    from transfer.model.heads import create_head
    from transfer.model.model_dir import save_model_dir

    source = fresh("lenet5", 1)
    model_dir = save_model_dir(
        tmp_path / "model",
        Classifier(source, create_head("softmax", 84, 5)),
        "lenet5",
        list("abcde"),
        {"name": "softmax"},
    )
    target = create_backbone("lenet5", weights=str(model_dir))
    assert_same_body(source, target)


def test_googlenet_chain_transfer_reinitialises_task_sized_aux_heads(tmp_path, caplog):
    from transfer.model.classifier import Classifier
    from transfer.model.heads import create_head
    from transfer.model.model_dir import save_model_dir

    source = fresh("googlenet", 1)
    source.reset_aux_heads(3)  # the source task had 3 classes
    head = create_head("softmax", 1024, 3)
    model_dir = save_model_dir(
        tmp_path / "m", Classifier(source, head), "googlenet", ["a", "b", "c"], {"name": "softmax"}
    )
    with caplog.at_level(logging.INFO, logger="transfer.backbones.sources.weights"):
        target = create_backbone("googlenet", weights=str(model_dir))
    assert target.model.aux1.fc2.out_features == 1000  # kept its fresh init; reset_aux_heads sizes it for the task
    assert_same_body(source, target, skip=("model.aux1.fc2.", "model.aux2.fc2."))
    assert "auxiliary-head tensors re-initialised" in caplog.text and "model.aux1.fc2.weight" in caplog.text
    from transfer.model.model_dir import load_model_dir  # predict's path: the task-sized side heads load as saved

    classifier, card = load_model_dir(model_dir)
    assert classifier.backbone.model.aux2.fc2.out_features == 3
    assert_same_body(source, classifier.backbone)


def test_torchvision_format_state_dicts_load(tmp_path, caplog):
    from torchvision.models import GoogLeNet, alexnet

    torch.manual_seed(3)
    tv_alex = alexnet()
    torch.save(tv_alex.state_dict(), tmp_path / "alexnet-owt.pth")  # keys as torchvision saves them
    with caplog.at_level(logging.INFO, logger="transfer.backbones.sources.weights"):
        ours = create_backbone("alexnet", weights=str(tmp_path / "alexnet-owt.pth"))
    assert torch.equal(ours.model.features[0].weight, tv_alex.features[0].weight)
    assert torch.equal(ours.model.classifier[4].weight, tv_alex.classifier[4].weight)  # fc7
    assert "classifier.6.weight" in caplog.text and "head is re-initialised" in caplog.text

    tv_goog = GoogLeNet(aux_logits=True, init_weights=False)
    save_file(tv_goog.state_dict(), str(tmp_path / "googlenet.safetensors"))
    ours = create_backbone("googlenet", weights=str(tmp_path / "googlenet.safetensors"))
    assert torch.equal(ours.model.inception5b.branch1.conv.weight, tv_goog.inception5b.branch1.conv.weight)
    assert torch.equal(ours.model.aux2.fc1.weight, tv_goog.aux2.fc1.weight)
    # torchvision's googlenet(weights=...) drops the aux heads: such a file still loads, the aux heads start fresh
    no_aux = {k: v for k, v in tv_goog.state_dict().items() if not k.startswith("aux")}
    torch.save(no_aux, tmp_path / "googlenet_noaux.pth")
    ours = create_backbone("googlenet", weights=str(tmp_path / "googlenet_noaux.pth"))
    assert torch.equal(ours.model.conv1.conv.weight, tv_goog.conv1.conv.weight)


def test_timm_format_state_dict_loads_and_head_keys_are_reported(tmp_path):
    import timm

    torch.manual_seed(4)
    model = timm.create_model("resnet18", num_classes=7)
    save_file(model.state_dict(), str(tmp_path / "resnet18.safetensors"))
    ours = fresh("resnet18", 0)
    ignored = load_backbone_weights(ours, tmp_path / "resnet18.safetensors")
    assert ignored == ["model.fc.bias", "model.fc.weight"]
    assert torch.equal(ours.model.layer4[1].conv2.weight, model.layer4[1].conv2.weight)


def test_torchvision_format_vgg_loads_into_timm_vgg(tmp_path):
    from torchvision.models import vgg11

    torch.manual_seed(5)
    tv = vgg11()
    save_file(tv.state_dict(), str(tmp_path / "vgg11.safetensors"))
    ours = create_backbone("vgg11", weights=str(tmp_path / "vgg11.safetensors"))
    assert torch.equal(ours.model.features[0].weight, tv.features[0].weight)
    assert torch.equal(ours.model.pre_logits.fc1.weight.flatten(1), tv.classifier[0].weight)  # fc6 as a 7x7 conv


# -- bad inputs: each a UserError with one line naming the file and the fix ------------------------------------------


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False])
def test_pickled_code_never_runs_even_when_forced(tmp_path, monkeypatch, zipped):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(
        {"conv.weight": torch.zeros(1), "x": _RunsCode(str(marker))}, path, _use_new_zipfile_serialization=zipped
    )
    with pytest.raises(UserError) as e:
        create_backbone("lenet5", weights=str(path))
    assert not marker.exists()
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "pickled code" in msg and ".safetensors" in msg
    assert "system" in msg and "weights_only" not in msg  # names what it wanted; never advises the unsafe load


def test_plain_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises(UserError, match="evil.ckpt"):
        create_backbone("lenet5", weights=str(path))
    assert not marker.exists()


def test_weights_of_another_architecture(tmp_path):
    save_file(fresh("resnet18", 0).state_dict(), str(tmp_path / "r18.safetensors"))
    with pytest.raises(UserError, match="none of its .* tensors fit backbone 'lenet5'"):
        create_backbone("lenet5", weights=str(tmp_path / "r18.safetensors"))
    save_file(fresh("resnet34", 0).state_dict(), str(tmp_path / "r34.safetensors"))
    with pytest.raises(UserError) as e:
        create_backbone("resnet18", weights=str(tmp_path / "r34.safetensors"))
    assert "does not fit backbone 'resnet18'" in str(e.value) and "unexpected model.layer1.2.bn1.bias" in str(e.value)
    save_file(fresh("lenet5", 0, in_chans=3).state_dict(), str(tmp_path / "lenet_rgb.safetensors"))
    with pytest.raises(UserError) as e:
        create_backbone("lenet5", weights=str(tmp_path / "lenet_rgb.safetensors"))
    assert "c1.weight: file (6, 3, 5, 5) vs model (6, 1, 5, 5)" in str(e.value)
    state = fresh("nin", 0).state_dict()
    del state["block3.4.weight"]
    save_file(state, str(tmp_path / "nin_part.safetensors"))
    with pytest.raises(UserError, match="1 missing.*missing block3.4.weight"):
        create_backbone("nin", weights=str(tmp_path / "nin_part.safetensors"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"nin{suffix}"
    state = fresh("nin", 0).state_dict()
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated"):
        create_backbone("nin", weights=str(path))


def test_wrong_paths_and_formats(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        create_backbone("nin", weights=str(tmp_path / "missing.safetensors"))
    (tmp_path / "w.npz").write_bytes(b"xx")
    with pytest.raises(UserError, match="unknown weights format"):
        create_backbone("nin", weights=str(tmp_path / "w.npz"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UserError, match="without model.safetensors"):
        create_backbone("nin", weights=str(tmp_path / "empty_dir"))


@pytest.mark.slow  # four CLI start-ups (~10 s each here); the same inputs are checked in-process above
def test_cli_bad_weights_files_exit_2_with_one_line(tmp_path):
    """Through `python -m transfer`: pickled code (with the force-unsafe env set), another architecture, a truncated
    file and an unknown backbone name each end in one `error:` line and exit code 2, never a traceback."""
    import subprocess
    import sys

    from tests.synthetic import write_image_folder

    root = write_image_folder(tmp_path / "cats", n=3)
    marker = tmp_path / "pwned"
    torch.save({"conv1.weight": _RunsCode(str(marker))}, tmp_path / "evil.pth")
    save_file(fresh("lenet5", 0).state_dict(), str(tmp_path / "lenet.safetensors"))
    save_file(fresh("nin", 0).state_dict(), str(tmp_path / "nin.safetensors"))
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "nin.safetensors").read_bytes()[:5000])
    cases = {
        "evil.pth": ("backbone.name=resnet18", "pickled code"),
        "lenet.safetensors": ("backbone.name=resnet18", "none of its 8 tensors fit backbone 'resnet18'"),
        "cut.safetensors": ("backbone.name=nin", "truncated"),
        "nin.safetensors": ("backbone.name=resnet5O", "Did you mean: resnet50"),
    }
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    for i, (file, (name, needle)) in enumerate(cases.items()):
        args = ["recipe=cat_detector", f"data.root={root}", name, "backbone.pretrained=false"]
        args += [f"backbone.weights={tmp_path / file}", f"hydra.run.dir={tmp_path / f'run{i}'}"]
        proc = subprocess.run(
            [sys.executable, "-m", "transfer", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, proc.stderr[-1500:]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr[-1500:]
        assert "Traceback" not in proc.stderr
    assert not marker.exists()

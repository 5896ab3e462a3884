"""GPU defaults as decisions on plain facts (a fake GPU), and prepare_module run on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transfer.errors import UserError
from transfer.training.device_setup import (
    plan_device,
    prepare_module,
    resolve_trainer_args,
    resolve_workers,
    restore_memory_format,
    trainer_device,
)

AUTO = {"accelerator": "auto", "devices": 1, "precision": "auto", "compile": False}


def test_auto_precision_and_benchmark_on_a_gpu_and_on_the_cpu():
    assert resolve_trainer_args(AUTO, "cuda", bf16_supported=True) == {
        "accelerator": "auto",
        "devices": 1,
        "precision": "bf16-mixed",
        "benchmark": True,
    }
    assert resolve_trainer_args(AUTO, "cuda:0", bf16_supported=False)["precision"] == "16-mixed"
    assert resolve_trainer_args(AUTO, "cpu") == {"accelerator": "auto", "devices": 1, "precision": "32-true"}
    assert resolve_trainer_args(AUTO, torch.device("cpu"))["precision"] == "32-true"


def test_explicit_choices_win():
    args = resolve_trainer_args({**AUTO, "precision": "32", "deterministic": True}, "cuda", bf16_supported=True)
    assert args["precision"] == "32" and "benchmark" not in args  # deterministic runs do not autotune
    assert resolve_trainer_args({"benchmark": False}, "cuda", True)["benchmark"] is False


def test_the_device_follows_the_accelerator_and_the_machine():
    assert trainer_device({"accelerator": "auto"}, cuda_available=True) == "cuda"
    assert trainer_device({"accelerator": "cpu"}, cuda_available=True) == "cpu"
    assert trainer_device({"accelerator": "gpu"}, cuda_available=False) == "cpu"


def test_workers_auto_uses_the_cores_on_a_gpu_and_none_on_the_cpu():
    assert resolve_workers("auto", "cuda", cores=16) == 8  # capped
    assert resolve_workers("auto", "cuda", cores=4) == 3
    assert resolve_workers("auto", "cuda", cores=16, ranks=4) == 3  # 4 cores per rank
    assert resolve_workers("auto", "cpu", cores=16) == 0
    assert resolve_workers(2, "cpu") == 2
    with pytest.raises(UserError, match="num_workers=-1"):
        resolve_workers(-1, "cuda")


def test_a_plan_for_a_resnet_on_a_fake_ampere_gpu_and_for_the_cpu():
    gpu = plan_device({**AUTO, "compile": True}, "auto", "resnet50.a1_in1k", True, True, cores=12)
    assert (gpu.device, gpu.channels_last, gpu.compile, gpu.num_workers, gpu.pin_memory) == (
        "cuda",
        True,
        True,
        8,
        True,
    )
    assert gpu.trainer["precision"] == "bf16-mixed" and "compile" not in gpu.trainer
    assert (
        gpu.describe() == "cuda: precision bf16-mixed, 8 loader workers, channels_last, torch.compile, cudnn.benchmark"
    )
    cpu = plan_device(AUTO, "auto", "resnet50", False, cores=12)
    assert (cpu.channels_last, cpu.num_workers, cpu.pin_memory, cpu.trainer["precision"]) == (
        False,
        0,
        False,
        "32-true",
    )
    assert not plan_device(AUTO, 0, "vit_small_patch16_224", True, True).channels_last


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def test_prepare_module_makes_conv_weights_channels_last_and_back():
    net, x = _net(), torch.randn(2, 3, 8, 8)
    expected = net(x)
    prepare_module(net, channels_last=True)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(net(x), expected, atol=1e-6)
    restore_memory_format(net)
    assert net[0].weight.is_contiguous()


@pytest.mark.slow
def test_prepare_module_compiles_the_call_in_place():
    """Dynamo tracing takes tens of seconds on a busy CPU; the eager backend checks the wiring, not inductor."""
    net, x = _net(), torch.randn(2, 3, 8, 8)
    expected = net(x)
    assert prepare_module(net, channels_last=False, compile=True, backend="eager") is net
    assert torch.allclose(net(x), expected, atol=1e-6)
    assert list(net.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]  # no _orig_mod. prefixes

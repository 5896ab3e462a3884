"""Device defaults: `auto` resolves from plain facts; explicit values pass; wrong names list the choices."""

from __future__ import annotations

import pytest

from transfer.errors import UserError
from transfer.training.device_defaults import resolve_num_workers, resolve_precision, use_channels_last


@pytest.mark.parametrize(
    "device,bf16,expected", [("cuda", True, "bf16-mixed"), ("cuda", False, "16-mixed"), ("cpu", True, "32-true")]
)
def test_auto_precision_by_device(device, bf16, expected) -> None:
    assert resolve_precision("auto", device, bf16) == expected


@pytest.mark.parametrize("value", ["32-true", "16-mixed", "bf16-mixed"])
def test_explicit_precision_passes_through(value) -> None:
    assert resolve_precision(value, "cpu", False) == value
    assert resolve_precision(value, "cuda", True) == value


def test_invalid_precision_lists_the_choices() -> None:
    with pytest.raises(
        UserError, match=r"^trainer.precision='fp8': choose one of auto, 32-true, 32, 16-mixed, bf16-mixed"
    ):
        resolve_precision("fp8", "cuda", True)


def test_invalid_device_lists_the_choices() -> None:
    with pytest.raises(UserError, match=r"^device='tpu': choose one of cpu, cuda\.$"):
        resolve_precision("auto", "tpu", False)


@pytest.mark.parametrize("cores,expected", [(1, 0), (2, 1), (4, 3), (9, 8), (64, 8)])
def test_auto_workers_leave_one_core_and_cap(cores, expected) -> None:
    assert resolve_num_workers("auto", cores=cores) == expected


def test_workers_cap_and_explicit_values() -> None:
    assert resolve_num_workers("auto", cores=16, cap=4) == 4
    assert resolve_num_workers(3, cores=1) == 3
    assert resolve_num_workers("2") == 2
    assert resolve_num_workers("auto") >= 0


@pytest.mark.parametrize("value", [-1, "many", 1.5, True])
def test_invalid_workers(value) -> None:
    with pytest.raises(UserError, match=r"^num_workers=.*: give a whole number >= 0, or auto\.$"):
        resolve_num_workers(value)


@pytest.mark.parametrize(
    "name,device,expected",
    [
        ("resnet18", "cuda", True),
        ("resnet50.a1_in1k", "cuda", True),
        ("googlenet", "cuda", True),
        ("resnet18", "cpu", False),
        ("vit_small_patch16_224", "cuda", False),
    ],
)
def test_channels_last_for_convnets_on_cuda(name, device, expected) -> None:
    assert use_channels_last(name, device) is expected

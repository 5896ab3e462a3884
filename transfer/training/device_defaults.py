"""Device-dependent defaults as pure functions: precision, DataLoader workers, memory format.

`auto` resolves from plain facts (device kind, bf16 support, core count, backbone name), so the choice is testable
without a GPU and the caller (the fit pipeline) passes the facts in: `torch.cuda.is_bf16_supported()`,
`os.cpu_count()`, the backbone's registry name.
"""

from __future__ import annotations

import os

from transfer.errors import UserError
from transfer.training.config import PRECISIONS

DEVICES = ("cpu", "cuda")
# Name prefixes of backbones that are (mostly) convolutions: channels_last speeds up their cuDNN kernels
CONVNET_PREFIXES = (
    "resnet", "resnext", "wide_resnet", "seresnet", "regnet", "vgg", "alexnet", "googlenet", "inception",
    "densenet", "efficientnet", "mobilenet", "convnext", "mnasnet", "ghostnet", "dla", "dpn", "nin", "lenet5",
)  # fmt: skip


def _check_device(device: str) -> str:
    if device not in DEVICES:
        raise UserError(f"device={device!r}: choose one of {', '.join(DEVICES)}.")
    return device


def resolve_precision(value: str, device: str, bf16_supported: bool) -> str:
    """`auto`: bf16-mixed on GPUs with bf16 (Ampere and later), 16-mixed on older GPUs, 32-true on CPU.

    Explicit Lightning precision names pass through unchanged.
    """
    value = str(value)
    if value not in PRECISIONS:
        raise UserError(f"trainer.precision={value!r}: choose one of {', '.join(PRECISIONS)}.")
    if value != "auto":
        return value
    if _check_device(device) == "cpu":
        return "32-true"  # CPU autocast is slower than fp32 for most convnets
    return "bf16-mixed" if bf16_supported else "16-mixed"


def resolve_num_workers(value: int | str, cores: int | None = None, cap: int = 8) -> int:
    """`auto`: one worker per core but one (the main process trains), at most `cap`; 0 on one core."""
    if value == "auto":
        cores = (os.cpu_count() or 1) if cores is None else cores
        return max(0, min(cap, cores - 1))
    try:
        workers = int(value)
    except (TypeError, ValueError):
        workers = -1
    if workers < 0 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise UserError(f"num_workers={value!r}: give a whole number >= 0, or auto.")
    return workers


SMALL_WORK = 2e8  # parameters x input pixels below which one CPU thread trains as fast as several (LeNet: 6e7)


def cpu_threads_for(num_params: int, input_pixels: int, device: str) -> int | None:
    """1 for a small model on the CPU: its ops are too short to share between threads, and on a busy machine the
    second thread's spinning made the digits study's fine-tunes 5-30x slower (measured); None: leave torch's count."""
    if _check_device(device) != "cpu":
        return None
    return 1 if num_params * input_pixels < SMALL_WORK else None


def use_channels_last(backbone_name: str, device: str) -> bool:
    """channels_last memory format for convnets on CUDA (tensor-core convolutions want NHWC); never on CPU."""
    if _check_device(device) != "cuda":
        return False
    arch = backbone_name.split(".")[0].lower()
    return arch.startswith(CONVNET_PREFIXES)

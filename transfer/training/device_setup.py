"""The GPU defaults a timm user expects, resolved once per fit from the trainer config and the machine.

`precision: auto` (bf16-mixed on Ampere+, 16-mixed on older GPUs, 32-true on CPU), cudnn.benchmark on CUDA (the
input size is fixed: the store is cropped to the backbone's size), channels_last for convnets on CUDA,
`num_workers: auto` (one per core but one on a GPU; 0 on the CPU, where workers would take cores from torch's own
threads and the pixels are in-memory tensors), pinned memory on GPU only, optional `trainer.compile`.
The decisions are pure functions of plain facts (device_defaults.py); `device_plan` asks torch for the facts.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from transfer.training.device_defaults import resolve_num_workers, resolve_precision, use_channels_last

NOT_TRAINER_ARGS = ("compile",)  # trainer.* keys this toolkit reads itself; pl.Trainer would reject them


@dataclass(frozen=True)
class DevicePlan:
    device: str  # cuda | cpu: which defaults apply
    trainer: dict  # pl.Trainer keyword arguments, precision resolved, benchmark set
    compile: bool
    channels_last: bool
    num_workers: int
    pin_memory: bool

    def describe(self) -> str:
        """One line for the log: what was chosen."""
        parts = [f"precision {self.trainer.get('precision')}", f"{self.num_workers} loader workers"]
        parts += ["channels_last"] * self.channels_last + ["torch.compile"] * self.compile
        parts += ["cudnn.benchmark"] * bool(self.trainer.get("benchmark"))
        return f"{self.device}: " + ", ".join(parts)


def trainer_device(trainer: dict, cuda_available: bool) -> str:
    """cuda when the accelerator may be a GPU and there is one, else cpu (mps and others take the CPU defaults)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    return "cuda" if accelerator in ("auto", "gpu", "cuda") and cuda_available else "cpu"


def resolve_trainer_args(trainer: dict, device: str | torch.device, bf16_supported: bool | None = None) -> dict:
    """pl.Trainer arguments from `trainer.*`: `precision: auto` resolved, `benchmark=True` on CUDA unless the run
    asks to be deterministic or sets it, and this toolkit's own keys (compile) removed."""
    kind = torch.device(device).type if not isinstance(device, str) else device.split(":")[0]
    kind = "cuda" if kind == "cuda" else "cpu"
    args = {k: v for k, v in trainer.items() if k not in NOT_TRAINER_ARGS}
    if str(args.get("precision", "auto")) == "auto":
        if bf16_supported is None:
            bf16_supported = kind == "cuda" and torch.cuda.is_bf16_supported()
        args["precision"] = resolve_precision("auto", kind, bf16_supported)
    if kind == "cuda" and args.get("benchmark") is None and not args.get("deterministic"):
        args["benchmark"] = True  # fixed input size: cuDNN's autotuned kernels pay for themselves after one batch
    return args


def resolve_workers(value: int | str, device: str, cores: int | None = None, ranks: int = 1) -> int:
    """`auto`: on a GPU one worker per core but one, shared among the node's ranks; on the CPU 0 (augmenting uint8
    tensors in the main process costs less than taking cores from the forward and backward passes)."""
    if value != "auto":
        return resolve_num_workers(value)
    if device != "cuda":
        return 0
    cores = (os.cpu_count() or 1) if cores is None else cores
    return resolve_num_workers("auto", cores=max(1, cores // max(1, ranks)) if ranks > 1 else cores)


def plan_device(
    trainer: dict,
    num_workers: int | str,
    backbone_name: str,
    cuda_available: bool,
    bf16_supported: bool = False,
    cores: int | None = None,
) -> DevicePlan:
    """Every device default of one fit, from plain facts (pure: tests pass a fake GPU)."""
    device = trainer_device(trainer, cuda_available)
    devices = trainer.get("devices", 1)
    ranks = devices if isinstance(devices, int) and devices > 0 else 1
    return DevicePlan(
        device=device,
        trainer=resolve_trainer_args(trainer, device, bf16_supported),
        compile=bool(trainer.get("compile", False)),
        channels_last=use_channels_last(backbone_name, device),
        num_workers=resolve_workers(num_workers, device, cores, ranks),
        pin_memory=device == "cuda",
    )


def device_plan(trainer: dict, num_workers: int | str, backbone_name: str) -> DevicePlan:
    """plan_device with this machine's facts."""
    cuda = torch.cuda.is_available()
    return plan_device(trainer, num_workers, backbone_name, cuda, cuda and torch.cuda.is_bf16_supported())


@contextlib.contextmanager
def cpu_threads(threads: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """torch's intra-op threads set to `threads` (None: unchanged) for the block, on the CPU."""
    before = torch.get_num_threads()
    if threads and torch.device(device).type == "cpu":
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_module(
    module: nn.Module, channels_last: bool, compile: bool = False, backend: str = "inductor"
) -> nn.Module:
    """In place: NHWC weights for cuDNN's tensor-core convolutions, and torch.compile of the module's call (the
    module stays the same object with the same state_dict keys; its submodules stay eager for scoring after fit)."""
    if channels_last:
        module.to(memory_format=torch.channels_last)
    if compile:
        module.compile(backend=backend)
    return module


def restore_memory_format(module: nn.Module) -> nn.Module:
    """Back to contiguous (NCHW) weights after training: safetensors saves contiguous tensors only."""
    return module.to(memory_format=torch.contiguous_format)


def quiet_worker_warning(plan: DevicePlan) -> None:
    """Lightning's 'does not have many workers' warning is noise on the CPU (in-memory tensors, 0 workers by
    design); on a GPU with a DataLoader it is the real bottleneck and stays."""
    if plan.device == "cpu":
        warnings.filterwarnings("ignore", ".*does not have many workers.*")

"""Trace a model and prove the trace is the model, or say which module is in the way (one UserError line).

`torch.jit.trace` records the ops one input takes: Python `if` on tensor values, `.item()` and numpy calls are
frozen as constants with only a TracerWarning. Here such warnings are pinned to the module that was running
(forward hooks keep a stack of module names), and the trace is re-run on a second input of another batch size
against the eager model; any hazard, exception or mismatch ends in a UserError naming the module.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from transfer.errors import UserError

# TracerWarnings that mean "the trace froze a value that depends on the data"
HAZARDS = ("Converting a tensor to a Python", "Converting a tensor to a NumPy", "from_numpy results are registered")
PARITY_ATOL = 1e-4  # on probabilities


@contextlib.contextmanager
def module_stack(model: nn.Module) -> Iterator[list[str]]:
    """A list holding the names of the modules whose forward is running, innermost last."""
    stack: list[str] = []
    handles = []

    def enter(name: str) -> None:
        stack.append(name)

    def leave(name: str) -> None:  # returns None: a hook's return value would replace the module's output
        if stack and stack[-1] == name:
            stack.pop()

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(lambda m, args, name=name: enter(name)))
            handles.append(module.register_forward_hook(lambda m, args, out, name=name: leave(name)))
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def _describe(model: nn.Module, name: str, prefix: str) -> str:
    if not name:
        return f"{type(model).__name__}"
    module = model.get_submodule(name)
    return f"module '{name.removeprefix(prefix)}' ({type(module).__name__})"


def untraceable(label: str, where: str, reason: str) -> UserError:
    reason = (reason.strip().splitlines() or [""])[0][:200]
    return UserError(
        f"{label}: cannot export: {where} {reason}; export needs a forward made of tensor ops only "
        "(no Python if/for on tensor values, .item(), .tolist() or numpy): rewrite that forward or predict with "
        "`python -m transfer command=predict`."
    )


def trace_checked(model: nn.Module, example: torch.Tensor, label: str, prefix: str = "") -> torch.jit.ScriptModule:
    """`torch.jit.trace(model, example)` that refuses a trace which is not the model; `prefix` is cut from names."""
    model.eval()
    hazards: list[tuple[str, str]] = []  # (module name, warning text)
    with module_stack(model) as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's own deprecation notice
        warnings.simplefilter("always", torch.jit.TracerWarning)

        def record(message, category, *args, **kwargs) -> None:
            if issubclass(category, torch.jit.TracerWarning):
                hazards.append((stack[-1] if stack else "", str(message)))

        warnings.showwarning = record  # restored by catch_warnings
        try:
            with torch.no_grad():
                traced = torch.jit.trace(model, example, check_trace=False)
        except Exception as e:  # noqa: BLE001  -- any tracer failure is reported against the running module
            raise untraceable(label, _describe(model, stack[-1] if stack else "", prefix), str(e)) from None
    bad = [(name, msg) for name, msg in hazards if msg.startswith(HAZARDS)]
    if bad:
        name, msg = bad[0]
        raise untraceable(label, _describe(model, name, prefix), f"computes from tensor values: {msg}")
    where = _describe(model, hazards[0][0], prefix) if hazards else _describe(model, "", prefix)
    gen = torch.Generator().manual_seed(1)
    other = torch.randn((example.shape[0] + 1, *example.shape[1:]), generator=gen) * 2 - 0.5  # another batch size
    with torch.no_grad():
        try:
            got = traced(other)
        except Exception as e:  # noqa: BLE001
            raise untraceable(label, where, f"traced graph fails on another input ({e})") from None
        diff = (got - model(other)).abs().max().item()
    if diff > PARITY_ATOL:
        raise untraceable(label, where, f"traced graph differs from the model by {diff:.2g} on another input")
    return traced

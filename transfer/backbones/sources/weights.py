"""Local weight sources through one path: `.safetensors`, `.pth`/`.th`/`.ckpt` (weights_only), or a model dir."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

from transfer.errors import UserError

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = {".pth", ".pt", ".th", ".ckpt", ".bin"}
_STRIP_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: str | Path, key: str = "backbone.weights") -> dict[str, torch.Tensor]:
    """Tensors from a weights file or model dir; never runs pickled code (weights_only=True, always passed)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(
            f"{key}={path}: no such file or directory. Give a .safetensors file, a .pth/.ckpt, or a model dir."
        )
    if path.is_dir():
        return _read_model_dir(path, key)
    if path.stat().st_size == 0:
        raise UserError(f"{key}={path}: empty file (0 bytes), an interrupted download or copy; fetch or save it again.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"{key}={path}: not a readable safetensors file ({e}); is it truncated?") from None
    if path.suffix in PICKLE_SUFFIXES:
        return _read_pickle(path, key)
    raise UserError(
        f"{key}={path}: unknown weights format {path.suffix!r}; use .safetensors (preferred), .pth or .ckpt."
    )


def _read_model_dir(path: Path, key: str) -> dict[str, torch.Tensor]:
    weights = path / "model.safetensors"
    if not weights.exists():
        raise UserError(f"{key}={path}: a directory without model.safetensors; point at a model dir of an earlier run.")
    state = read_state_dict(weights, key)
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


def _pickle_reason(e: Exception) -> str:
    """The line of torch's refusal that names what the pickle wanted (its first line advises weights_only=False)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line or "global" in line]
    return (named or lines or ["unknown reason"])[0].rstrip(".")


def _read_pickle(path: Path, key: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(
            f"{key}={path}: refused to load: the file holds pickled code, not only tensors ({_pickle_reason(e)}). "
            "Re-save it as .safetensors from a trusted environment."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0].rstrip(".")
        raise UserError(
            f"{key}={path}: not a readable checkpoint ({why}); truncated or damaged: fetch or save it again."
        ) from None
    if isinstance(obj, dict):
        for inner in ("state_dict", "model", "state_dict_ema", "model_state_dict"):
            if isinstance(obj.get(inner), dict):
                obj = obj[inner]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{key}={path}: holds no state dict of tensors.")
    state = dict(obj)
    if any(k.startswith("backbone.") for k in state):  # a Lightning checkpoint of our module: take the body
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return state


def _normalise(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _STRIP_PREFIXES:
                if k.startswith(prefix):
                    k, changed = k[len(prefix) :], True
        out[k] = v
    return out


def _optional_keys(backbone: torch.nn.Module, target: dict[str, torch.Tensor]) -> set[str]:
    """Keys a file may lack or hold in another shape: auxiliary heads (task-specific) and BatchNorm counters."""
    aux_modules = [h.module for h in backbone.aux_heads()] if hasattr(backbone, "aux_heads") else []
    prefixes = tuple(f"{n}." for n, m in backbone.named_modules() if any(m is a for a in aux_modules))
    return {k for k in target if k.startswith(prefixes) or k.endswith("num_batches_tracked")}


def _align(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file may hold the bare model (timm / torchvision keys) or our wrapper's keys: pick the best alignment."""
    candidates = [state]
    for prefix in {k.split(".", 1)[0] + "." for k in target if "." in k}:
        candidates.append({prefix + k: v for k, v in state.items()})
        candidates.append({k.removeprefix(prefix): v for k, v in state.items()})
    return max(candidates, key=lambda s: len(s.keys() & target.keys()))


def load_backbone_weights(backbone: torch.nn.Module, path: str | Path, key: str = "backbone.weights") -> list[str]:
    """Load a body's weights from `path`; returns the ignored (head) keys. Missing or mis-shaped keys are an error.

    Keys of the classifier the file was trained with are ignored (the task's head replaces it); auxiliary heads
    that are absent from the file or sized for another task keep their fresh initialisation. Both are logged.
    """
    target = backbone.state_dict()
    state = _normalise(read_state_dict(path, key))
    if hasattr(backbone, "adapt_state_dict"):
        state = backbone.adapt_state_dict(state)
    state = _align(state, target)
    optional = _optional_keys(backbone, target)
    name = getattr(backbone, "name", type(backbone).__name__)
    if not (target.keys() & state.keys()):
        raise UserError(
            f"{key}={path}: none of its {len(state)} tensors fit backbone {name!r}; weights of another architecture? "
            "Pick the matching backbone.name= or another file."
        )
    fits = {k for k in target.keys() & state.keys() if state[k].shape == target[k].shape}
    declared = backbone.classifier_prefixes() if hasattr(backbone, "classifier_prefixes") else None
    ignored = sorted(state.keys() - target.keys())
    foreign = [] if declared is None else [k for k in ignored if not k.startswith(declared)]
    missing = sorted(target.keys() - state.keys() - optional)
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sorted(target.keys() & state.keys() - optional)
        if k not in fits
    ]
    if missing or mismatched or foreign:
        lines = [f"missing {k}" for k in missing[:6]] + mismatched[:6] + [f"unexpected {k}" for k in foreign[:6]]
        more = len(missing) + len(mismatched) + len(foreign) - len(lines)
        raise UserError(
            f"{key}={path} does not fit backbone {name!r} ({len(missing)} missing, {len(mismatched)} mis-shaped, "
            f"{len(foreign)} unexpected: "
            + "; ".join(lines)
            + (f"; and {more} more" if more > 0 else "")
            + "). Weights of another architecture? Pick the matching backbone.name= or another file."
        )
    if ignored:
        log.info(
            "weights %s: %d keys not in the body (the source's classifier) ignored; the head is re-initialised: %s",
            path,
            len(ignored),
            ", ".join(ignored[:6]),
        )
    fresh = sorted(k for k in optional - fits if not k.endswith("num_batches_tracked"))
    if fresh:
        log.info(
            "weights %s: %d auxiliary-head tensors re-initialised (absent or sized for another task): %s",
            path,
            len(fresh),
            ", ".join(fresh[:6]),
        )
    backbone.load_state_dict({k: state[k] for k in fits}, strict=False)
    return ignored

"""A model dir: `model.safetensors` (backbone.* + head.*) and `card.json` (backbone, classes, preprocessing, head).

`predict` and `evaluate` load model dirs, never Hydra configs. A model dir is written whole into a hidden sibling,
fsynced, then renamed into place, so a kill at any moment leaves the previous complete dir or the new one (or,
between the two renames of a replacement, the previous one intact beside it as `.<name>.old-<pid>-*`): never new
weights with an old card, never a half-written file. The next install of that path (and `resume=true`, through
training/resume.py) puts such a previous dir back and removes a dead process's temp sibling (atomic.recover_dir).
Files get the user's umask (safetensors alone makes 0600).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from transfer import __version__
from transfer.atomic import crash_point, fsync_dir, recover_dir, user_umask
from transfer.backbones.base import Preprocessing
from transfer.errors import UserError
from transfer.model.classifier import Classifier
from transfer.model.rebuild import rebuild_info

CARD = "card.json"
WEIGHTS = "model.safetensors"


def save_model_dir(
    path: str | Path,
    classifier: Classifier,
    backbone_name: str,
    classes: list[str],
    head: dict,
    backbone_kwargs: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write weights and card atomically; `head` is {"name": ..., **kwargs} as given to `create_head`."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()}
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(
                f"{path}: not saved: tensor {name} holds NaN or inf; training diverged: lower head.lr "
                "(and the body's lr in a fine-tuning regime)."
            )
    card = {
        "format": "transfer.model_dir/1",
        "transfer_version": __version__,
        "backbone": backbone_name,
        "backbone_kwargs": backbone_kwargs or {},
        "num_features": int(classifier.backbone.num_features),
        "classes": list(classes),
        "preprocessing": classifier.backbone.preprocessing.to_dict(),
        "head": dict(head),
        "rebuild": rebuild_info(classifier.backbone, backbone_name, head.get("name")),
        "weights": getattr(classifier.backbone, "weights_source", None),  # where the body's start came from
        **(extra or {}),
    }

    def write(tmp: Path) -> None:
        # ONE metadata key: safetensors writes its metadata map in a per-process random order, so two keys made the
        # same weights hash differently from run to run (the card and the terminal quote that sha256)
        save_file(state, str(tmp / WEIGHTS), metadata={"format": f"transfer.model_dir {__version__}"})
        (tmp / CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    _install(path, write)
    return path


def copy_model_dir(src: str | Path, dst: str | Path) -> Path:
    """Copy the model dir `src` to `dst` with the guarantee of `save_model_dir` (all of it or the previous one)."""
    src, dst = Path(src), Path(dst)
    read_card(src, "model_dir")  # a damaged source is named before anything is replaced

    def write(tmp: Path) -> None:
        for f in sorted(src.iterdir()):
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
            elif f.is_dir():
                shutil.copytree(f, tmp / f.name)
            crash_point("model_dir.copy")

    _install(dst, write)
    return dst


def _install(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` fills a hidden sibling of `path`; fsync and chmod it, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    old = path.with_name(f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    mask = user_umask()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_dir(path)  # what a killed install of this path left: the previous dir back, dead temp dirs gone
        tmp.mkdir()
        write(tmp)
        for f in tmp.rglob("*"):
            os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~mask)
            if f.is_file():
                fsync_dir(f)
        os.chmod(tmp, 0o777 & ~mask)
        fsync_dir(tmp)
        crash_point("model_dir.before_rename")
        if path.exists():
            os.rename(path, old)  # the previous dir stays whole, aside, until the new one is in
            crash_point("model_dir.between_renames")
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST):
            why = "Not a directory" if e.errno == errno.EEXIST else e.strerror or str(e)  # mkdir where a file is
            raise UserError(
                f"{path.parent}: cannot write the model dir {path.name} ({why}); free space on that "
                "disk or run where the output folder is writable (hydra.run.dir=<folder>)."
            ) from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and path.exists():
            shutil.rmtree(old, ignore_errors=True)
        elif old.exists():  # the new dir never made it in: put the previous one back
            with contextlib.suppress(OSError):
                os.rename(old, path)


def read_card(path: str | Path, key: str = "model") -> dict:
    path = Path(path).expanduser()
    card = path / CARD
    if not card.is_file() or not (path / WEIGHTS).is_file():
        raise UserError(
            f"{key}={path}: not a model dir (needs {CARD} and {WEIGHTS}); use <run dir>/model of a fit run."
        )
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{key}={path}: unreadable {CARD} ({e}); restore it from the run, or fit again.") from None
    check_card(data, path, key)
    return data


REQUIRED = ("backbone", "classes", "num_features", "preprocessing", "head")  # what rebuilding and predicting read


def check_card(card: object, path: Path, key: str = "model") -> None:
    """A card that lacks what `load_model_dir` and predict read is named in one line, not a KeyError later."""
    where = f"{key}={path}: {CARD}"
    fix = "restore the card from the run it came from, or fit again"
    if not isinstance(card, dict):
        raise UserError(f"{where} holds {type(card).__name__}, not a card; {fix}.")
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise UserError(f"{where} lacks {', '.join(repr(k) for k in missing)}; {fix}.")
    if not isinstance(card["classes"], list) or not card["classes"]:
        raise UserError(f"{where}: 'classes' must be the list of class names in index order; {fix}.")
    try:
        Preprocessing.from_dict(card["preprocessing"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(
            f"{where}: 'preprocessing' is incomplete or malformed ({type(e).__name__}: {e}); {fix}."
        ) from None
    if not isinstance(card["head"], dict) or "name" not in card["head"]:
        raise UserError(f"{where}: 'head' must name the head ({{\"name\": ...}}); {fix}.")


def read_weights(path: Path, key: str = "model") -> dict[str, torch.Tensor]:
    """model.safetensors of a model dir; a truncated or damaged file is one line naming it."""
    from safetensors import SafetensorError

    try:
        return load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"{key}={path}: {WEIGHTS} is not readable ({why}); truncated or damaged: copy the model dir again, "
            "or fit again."
        ) from None


def _check_weights(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], card: dict, path, key) -> None:
    """The weights fit the card (shapes) and are finite: a model that would predict NaN, or that the card
    misdescribes, is refused before any image is looked at."""
    for name, t in state.items():
        want = expected.get(name)
        if want is not None and tuple(t.shape) != tuple(want.shape):
            if name.startswith("head.") and t.dim() >= 1 and t.shape[0] != want.shape[0]:
                raise UserError(
                    f"{key}={path}: {CARD} lists {len(card['classes'])} classes but the weights' head has "
                    f"{t.shape[0]} outputs ({name}); the card and {WEIGHTS} come from different models: restore the "
                    "card, or fit again."
                )
            raise UserError(
                f"{key}={path}: {WEIGHTS} tensor {name} is {tuple(t.shape)} where the card's model needs "
                f"{tuple(want.shape)}; the card and the weights come from different models: fit again."
            )
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(
                f"{key}={path}: {WEIGHTS} tensor {name} holds NaN or inf, so every prediction would be NaN; "
                "this model dir is damaged: copy it again, or fit again."
            )


def load_model_dir(path: str | Path, key: str = "model") -> tuple[Classifier, dict]:
    """Rebuild the classifier from a model dir; returns (classifier in eval mode, card)."""
    from transfer.model.heads import create_head
    from transfer.model.rebuild import ensure_head, rebuild_backbone

    card = read_card(path, key)
    backbone = rebuild_backbone(card, key)
    ensure_head(card, key)
    backbone.reset_aux_heads(len(card["classes"]))  # GoogLeNet / Inception v3 saved their task-sized side heads
    head_cfg = dict(card["head"])
    head = create_head(head_cfg.pop("name"), card["num_features"], len(card["classes"]), **head_cfg)
    classifier = Classifier(backbone, head)
    state = read_weights(Path(path).expanduser(), key)
    _check_weights(state, classifier.state_dict(), card, path, key)
    missing, unexpected = classifier.load_state_dict(state, strict=False)
    if missing:
        raise UserError(
            f"{key}={path}: {len(missing)} weights missing from {WEIGHTS} (e.g. {missing[0]}); file damaged?"
        )
    backbone.preprocessing = Preprocessing.from_dict(card["preprocessing"])
    backbone.weights_source = card.get("weights")  # the rebuilt body's are the saved ones, not a random start
    return classifier.eval(), card

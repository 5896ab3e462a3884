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
        **(extra or {}),
    }

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "transfer.model_dir", "version": __version__})
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
        return json.loads(card.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path / CARD}: unreadable card ({e}).") from None


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
    state = load_file(str(Path(path).expanduser() / WEIGHTS))
    missing, unexpected = classifier.load_state_dict(state, strict=False)
    if missing:
        raise UserError(
            f"{key}={path}: {len(missing)} weights missing from {WEIGHTS} (e.g. {missing[0]}); file damaged?"
        )
    backbone.preprocessing = Preprocessing.from_dict(card["preprocessing"])
    return classifier.eval(), card

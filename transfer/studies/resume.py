"""`resume=true`: what a killed fit already finished, read back from its run dir, so only the rest is rerun.

Each finished (regime, seed) run leaves its model dir (written whole, model_dir.save_model_dir) and then, beside it,
`<model dir>.run.json` (written whole, transfer.atomic): its metrics, split and held-out probabilities. The record
is written last, so its presence with a complete model dir means the run finished; a record whose key (regime,
seed, backbone, head, classes, split) differs from the resumed config is ignored and the run is redone. A fit
without `resume` forgets every record first (`forget_runs`), so a later resume never mixes two configs' runs.

While a fine-tune is unfinished, `<model dir>.checkpoints/` holds its newest complete epoch checkpoint (and
`best.ckpt`, the epoch selection's), with the run's key in `key.json`: a resumed run continues from it when the key
matches, and the folder is removed once the run's record is written. Every epoch draws its randomness from (seed,
epoch) (training/resumable.py), so the resumed run ends where the uninterrupted one does.
Kept free of torch imports: the CLI's Ctrl-C message lists the finished runs without loading torch.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from transfer.atomic import recover_dir, write_text_atomic

RECORD_SUFFIX = ".run.json"
CHECKPOINTS_SUFFIX = ".checkpoints"
FORMAT = "transfer.run_record/1"


def record_path(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    return model_dir.with_name(model_dir.name + RECORD_SUFFIX)


def model_dir_complete(model_dir: str | Path) -> bool:
    """Card and weights both there (the atomic install writes them together or not at all)."""
    model_dir = Path(model_dir)
    return (model_dir / "card.json").is_file() and (model_dir / "model.safetensors").is_file()


def write_run_record(model_dir: str | Path, key: dict, result: dict) -> Path:
    """`result`: metrics, seconds, trainable_params, train_idx, eval_idx, probs (a list of rows or None)."""
    data = {"format": FORMAT, "key": key, **result}
    return write_text_atomic(record_path(model_dir), json.dumps(data, ensure_ascii=False) + "\n")


def read_run_record(model_dir: str | Path, key: dict) -> dict | None:
    """The finished run's record when its model dir is complete and its key is `key`; None: run it (again).
    A model dir a kill left aside mid-replacement is put back first (atomic.recover_dir)."""
    recover_dir(model_dir)
    path = record_path(model_dir)
    if not model_dir_complete(model_dir) or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if data.get("format") != FORMAT or data.get("key") != json.loads(json.dumps(key)):
        return None
    return data


def completed_runs(out_dir: str | Path) -> list[str]:
    """Run names (`models/frozen-seed0`, `model`) whose model dir and record are both complete."""
    out_dir = Path(out_dir)
    found = []
    for rec in sorted([*out_dir.glob(f"models/*{RECORD_SUFFIX}"), *out_dir.glob(f"model{RECORD_SUFFIX}")]):
        mdir = rec.with_name(rec.name[: -len(RECORD_SUFFIX)])
        if model_dir_complete(mdir):
            found.append(str(mdir.relative_to(out_dir)))
    return found


def checkpoints_path(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    return model_dir.with_name(model_dir.name + CHECKPOINTS_SUFFIX)


def _key_matches(ckpt_dir: Path, key: dict) -> bool:
    try:
        return json.loads((ckpt_dir / "key.json").read_text(encoding="utf-8")) == json.loads(json.dumps(key))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def prepare_checkpoints(ckpt_dir: str | Path, key: dict, resume: bool) -> None:
    """Make `ckpt_dir` the checkpoint folder of the run `key`: kept when resuming that same run, else emptied."""
    ckpt_dir = Path(ckpt_dir)
    if not (resume and _key_matches(ckpt_dir, key)):
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(ckpt_dir / "key.json", json.dumps(key) + "\n")


def discard_checkpoints(ckpt_dir: str | Path) -> None:
    """The run is recorded: its checkpoints can only cost disk from now on."""
    shutil.rmtree(ckpt_dir, ignore_errors=True)


def forget_runs(out_dir: str | Path) -> None:
    """A fit that does not resume starts over: the records and checkpoints of earlier runs in `out_dir` stop counting
    (their model dirs stay, whole, until the new runs replace them)."""
    out_dir = Path(out_dir)
    for rec in [*out_dir.glob(f"models/*{RECORD_SUFFIX}"), *out_dir.glob(f"model{RECORD_SUFFIX}")]:
        with contextlib.suppress(OSError):
            rec.unlink()
    for ckpts in [*out_dir.glob(f"models/*{CHECKPOINTS_SUFFIX}"), *out_dir.glob(f"model{CHECKPOINTS_SUFFIX}")]:
        discard_checkpoints(ckpts)

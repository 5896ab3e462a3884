"""kill -9 where a fit writes (a feature shard, an epoch checkpoint, a model dir on both sides of its first rename,
the study's copy of the best model), then `resume=true`: the metrics of the uninterrupted run, and in between nothing
on disk that claims more than it holds.

The kills are real SIGKILLs from inside the process at a named point (transfer.atomic.crash_point, set through
TRANSFER_CRASH_AT), so no cleanup handler runs. Fast tests at the end check the leftovers' recovery on its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transfer.atomic import CRASH_ENV, recover_dir

REPO = Path(__file__).resolve().parents[1]

# a two-run study (the probe on cached features, then a fine-tune whose epochs select the kept one on an inner split:
# 25 images per class), without the extra evidence (stage probes, cross-validation) that writes nothing new
ARGS = (
    "trainer.accelerator=cpu",
    "study.regimes=[frozen,partial]",
    "study.seeds=[0]",
    "data.shots=25",
    "trainer.max_epochs=2",
    "source=null",
    "study.probe_stages=null",
    "report.cv_folds=0",
    "features.progress=false",
)


def _fit(run: Path, cache: Path, *extra: str, crash: str | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.run(
        [sys.executable, "-m", "transfer", *ARGS, f"features.cache_dir={cache}", *extra, f"hydra.run.dir={run}"],
        cwd=run.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _numbers(run: Path) -> dict:
    """What must not change: every regime's accuracies, the chosen model's, the headline."""
    report = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    keep = ("accuracy_mean", "accuracy_std", "f1_macro_mean", "accuracy_runs", "seeds")
    return {
        "table": {name: {k: row[k] for k in keep} for name, row in report["table"].items()},
        "best": {k: report["best"][k] for k in ("regime", "seed", "accuracy", "f1_macro")},
        "headline": report["headline"]["value"],
    }


def _complete(model_dir: Path) -> bool:
    return (model_dir / "card.json").is_file() and (model_dir / "model.safetensors").is_file()


def _assert_nothing_claims_too_much(run: Path) -> None:
    """After a kill: no report of a finished study; every model dir in place is whole; a record only beside one."""
    assert not (run / "metrics.json").exists()
    for mdir in [run / "model", *(run / "models").glob("*")]:
        if mdir.is_dir() and not mdir.name.startswith(".") and not mdir.name.endswith(".checkpoints"):
            assert _complete(mdir), f"{mdir} is in place but not whole"
    for rec in (run / "models").glob("*.run.json"):
        assert _complete(rec.with_name(rec.name.removesuffix(".run.json"))), f"{rec} describes a missing model dir"


def _resume_and_compare(run: Path, cache: Path, reference: dict) -> subprocess.CompletedProcess:
    resumed = _fit(run, cache, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _numbers(run) == reference
    assert _complete(run / "model")
    leftovers = [p for p in run.rglob("*") if ".tmp-" in p.name or ".old-" in p.name or p.suffix == ".checkpoints"]
    assert leftovers == []
    return resumed


def _killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -9, f"not killed (rc {proc.returncode}): {proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, Path, Path]:
    """One uninterrupted run of the study: (its numbers, its run dir, its filled feature cache)."""
    root = tmp_path_factory.mktemp("reference")
    run, cache = root / "run", root / "features"
    done = _fit(run, cache)
    assert done.returncode == 0, done.stderr[-3000:]
    return _numbers(run), run, cache


@pytest.mark.slow
def test_kill_during_feature_extraction_then_resume(tmp_path, reference):
    numbers, _, _ = reference
    run, cache = tmp_path / "run", tmp_path / "features"  # an empty cache: the frozen run extracts
    _killed(_fit(run, cache, crash="features.shard:2"))  # the training images' shard and one of the test images'
    assert len(list(cache.rglob("shard-*.json"))) == 2
    _assert_nothing_claims_too_much(run)
    assert not (run / "models" / "frozen-seed0").exists()
    _resume_and_compare(run, cache, numbers)
    assert len(list(cache.rglob("shard-*.json"))) == 3  # the two committed shards served, the third one extracted


@pytest.mark.slow
def test_kill_mid_fine_tune_then_resume_continues_from_the_epoch_checkpoint(tmp_path, reference):
    numbers, _, cache = reference
    run = tmp_path / "run"
    _killed(_fit(run, cache, crash="training.epoch_checkpoint:1"))  # partial: epoch 0 saved, epoch 1 to go
    ckpts = run / "models" / "partial-seed0.checkpoints"
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == ["epoch=0-step=4.ckpt"]  # trainer.monitor=none: no best
    assert not (run / "models" / "partial-seed0.run.json").exists()
    _assert_nothing_claims_too_much(run)
    resumed = _resume_and_compare(run, cache, numbers)
    log = resumed.stdout + resumed.stderr
    assert "resume: kept the finished run models/frozen-seed0" in log
    assert "resume: models/partial-seed0 continues from its checkpoint epoch=0-step=4.ckpt" in log


@pytest.mark.slow
def test_kill_before_a_model_dir_is_renamed_into_place_then_resume(tmp_path, reference):
    numbers, _, cache = reference
    run = tmp_path / "run"
    _killed(_fit(run, cache, crash="model_dir.before_rename:2"))  # partial-seed0, whole in its temp sibling
    assert not (run / "models" / "partial-seed0").exists()
    assert len(list((run / "models").glob(".partial-seed0.tmp-*"))) == 1
    _assert_nothing_claims_too_much(run)
    _resume_and_compare(run, cache, numbers)


@pytest.mark.slow
def test_kill_between_the_renames_of_a_replaced_model_dir_then_resume(tmp_path, reference):
    """A fit started over in a finished run dir is killed as it replaces the first model dir: the previous one waits
    aside, whole; nothing of the finished study is claimed any more; resume puts it back and redoes the runs."""
    numbers, finished, cache = reference
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    _killed(_fit(run, cache, crash="model_dir.between_renames:1"))
    models = run / "models"
    assert not (models / "frozen-seed0").exists()
    aside = list(models.glob(".frozen-seed0.old-*"))
    assert len(aside) == 1 and _complete(aside[0])
    assert list(models.glob("*.run.json")) == []  # a fit that does not resume forgets the earlier records
    _assert_nothing_claims_too_much(run)
    _resume_and_compare(run, cache, numbers)


@pytest.mark.slow
def test_kill_while_copying_the_best_model_then_resume(tmp_path, reference):
    numbers, _, cache = reference
    run = tmp_path / "run"
    _killed(_fit(run, cache, crash="model_dir.copy:1"))  # one file of the chosen run's model dir copied
    assert not (run / "model").exists()
    assert len(list(run.glob(".model.tmp-*"))) == 1
    assert sorted(p.name for p in (run / "models").glob("*.run.json")) == [
        "frozen-seed0.run.json",
        "partial-seed0.run.json",
    ]
    _assert_nothing_claims_too_much(run)
    resumed = _resume_and_compare(run, cache, numbers)
    assert (resumed.stdout + resumed.stderr).count("resume: kept the finished run") == 2


# the recovery on its own (fast)


def _model_dir(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "card.json").write_text(text)
    (path / "model.safetensors").write_bytes(b"w")
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


def test_recover_puts_the_previous_dir_back_when_a_kill_left_it_aside(tmp_path):
    pid = _dead_pid()
    _model_dir(tmp_path / f".model.old-{pid}-aaaa", "previous")
    _model_dir(tmp_path / f".model.tmp-{pid}-bbbb", "new, never renamed in")
    recover_dir(tmp_path / "model")
    assert (tmp_path / "model" / "card.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_recover_removes_dead_leftovers_beside_a_complete_dir_and_spares_live_ones(tmp_path):
    pid = _dead_pid()
    _model_dir(tmp_path / "model", "current")
    _model_dir(tmp_path / f".model.old-{pid}-aaaa", "stale")
    _model_dir(tmp_path / f".model.tmp-{pid}-bbbb", "half")
    live = _model_dir(tmp_path / f".model.tmp-{os.getppid()}-cccc", "another process, still writing")
    recover_dir(tmp_path / "model")
    assert (tmp_path / "model" / "card.json").read_text() == "current"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", live.name])


def test_recover_takes_the_newest_previous_dir_when_there_are_several(tmp_path):
    pid = _dead_pid()
    older = _model_dir(tmp_path / f".model.old-{pid}-aaaa", "older")
    os.utime(older, (time.time() - 100, time.time() - 100))
    _model_dir(tmp_path / f".model.old-{pid}-bbbb", "newer")
    recover_dir(tmp_path / "model")
    assert (tmp_path / "model" / "card.json").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_next_install_of_a_path_recovers_it_first(tmp_path):
    import torch

    from transfer.backbones.factory import create_backbone
    from transfer.model.classifier import Classifier
    from transfer.model.model_dir import read_card, save_model_dir

    pid = _dead_pid()
    _model_dir(tmp_path / f".model.tmp-{pid}-bbbb", "half")
    torch.manual_seed(0)
    backbone = create_backbone("lenet5", pretrained=False)
    classifier = Classifier(backbone, torch.nn.Linear(backbone.num_features, 2))
    save_model_dir(tmp_path / "model", classifier, "lenet5", ["a", "b"], {"name": "softmax"})
    assert read_card(tmp_path / "model")["classes"] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_resume_reads_a_record_whose_model_dir_a_kill_left_aside(tmp_path):
    from transfer.studies.resume import read_run_record, write_run_record

    pid = _dead_pid()
    mdir = tmp_path / "models" / "frozen-seed0"
    key = {"regime": {"name": "frozen"}, "seed": 0}
    _model_dir(mdir, "{}")
    write_run_record(mdir, key, {"metrics": {"accuracy": 0.5}, "seconds": 1.0, "trainable_params": 3, "probs": None})
    mdir.rename(mdir.with_name(f".frozen-seed0.old-{pid}-aaaa"))  # killed between the renames of a replacement
    assert read_run_record(mdir, key)["metrics"] == {"accuracy": 0.5}
    assert _complete(mdir)


def test_crash_point_kills_only_at_its_name_and_count(tmp_path):
    code = (
        "from transfer.atomic import crash_point\n"
        "crash_point('other')\n"
        "for i in range(3):\n"
        "    print(i, flush=True)\n"
        "    crash_point('here')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for want, rc, out in (
        ("here:2", -9, "0\n1\n"),
        ("here", -9, "0\n"),
        ("here:9", 0, "0\n1\n2\n"),
        ("", 0, "0\n1\n2\n"),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", code], env={**env, CRASH_ENV: want}, capture_output=True, text=True, timeout=60
        )
        assert (proc.returncode, proc.stdout) == (rc, out), want


# every epoch's draws from (seed, epoch): what makes a resumed fine-tune end where the uninterrupted one does


def _images(n: int = 12):
    import torch

    from transfer.data.labelled import LabelledImages

    gen = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (n, 3, 12, 12), generator=gen, dtype=torch.uint8)
    return LabelledImages(pixels, torch.arange(n) % 3, ["a", "b", "c"], [f"i{i}" for i in range(n)])


def _epoch(dm, epoch: int):
    import torch

    dm.set_epoch(epoch)
    xs, ys = zip(*dm.train_dataloader(), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_an_epochs_order_and_augmentation_depend_on_seed_and_epoch_alone(tmp_path):
    """Epoch 2 straight away, or after epochs 0 and 1, or in two workers: the same batches; the global stream is
    left as it was (dropout and mixup draw from it)."""
    import torch

    from transfer.backbones.base import Preprocessing
    from transfer.data.augment import AugmentConfig, build_eval_transform, build_train_transform
    from transfer.data.datamodule import ImageDataModule

    pre = Preprocessing(input_size=(3, 8, 8), crop_pct=1.0)
    train_tf = build_train_transform(pre, AugmentConfig(mirror=True, crop="resized", color_jitter=0.3))

    def module(workers: int = 0) -> ImageDataModule:
        return ImageDataModule(_images(), None, train_tf, build_eval_transform(pre), 4, workers, seed=3)

    history = module()
    _epoch(history, 0)
    _epoch(history, 1)
    state = torch.get_rng_state()
    x2, y2 = _epoch(history, 2)
    assert torch.equal(torch.get_rng_state(), state)
    fresh_x, fresh_y = _epoch(module(), 2)
    assert torch.equal(fresh_x, x2) and torch.equal(fresh_y, y2)
    workers_x, workers_y = _epoch(module(workers=2), 2)
    assert torch.equal(workers_x, x2) and torch.equal(workers_y, y2)
    x1, y1 = _epoch(module(), 1)
    assert not torch.equal(x1, x2)  # another epoch: other crops (and another order)


def test_device_batches_restart_from_seed_and_epoch():
    import torch

    from transfer.backbones.base import Preprocessing
    from transfer.data.config import AugmentConfig
    from transfer.data.device_batches import DeviceBatches

    pre = Preprocessing(input_size=(3, 8, 8), crop_pct=1.0)
    aug = AugmentConfig(mirror=True, crop="resized")

    def epoch(batches: DeviceBatches, e: int) -> torch.Tensor:
        batches.set_epoch(e)
        return torch.cat([x for x, _ in batches])

    ran = DeviceBatches(_images(), pre, aug, 4, "cpu", seed=5)
    epoch(ran, 0)
    assert torch.equal(epoch(ran, 1), epoch(DeviceBatches(_images(), pre, aug, 4, "cpu", seed=5), 1))


@pytest.mark.slow
def test_single_run_stopped_after_an_epoch_resumes_to_the_same_model_and_curves(tmp_path, monkeypatch):
    """A single fine-tune (standard augmentation: crops and flips) stopped dead after its second epoch's checkpoint:
    resume=true continues from it to the uninterrupted numbers, and the curves keep the epochs before the stop."""
    import csv

    import transfer.training.resumable as resumable
    from tests.requests import fit_request
    from transfer.studies.fit import run_fit

    args = ("regime=partial", "data.shots=25", "trainer.max_epochs=3", "report.cv_folds=0")
    full = run_fit(fit_request(tmp_path / "full", *args))

    class Killed(BaseException):
        pass

    reached: list[str] = []

    def stop(name: str) -> None:
        reached.append(name)
        if len(reached) == 2:
            raise Killed

    monkeypatch.setattr(resumable, "crash_point", stop)
    monkeypatch.setattr(resumable.EpochCheckpoint, "MIN_INTERVAL_S", 0.0)  # a checkpoint every epoch: tiny epochs
    monkeypatch.setattr(resumable.EpochCheckpoint, "COST_RATIO", 0.0)
    run = tmp_path / "run"
    with pytest.raises(Killed):
        run_fit(fit_request(run, *args))
    monkeypatch.undo()
    assert [p.name for p in (run / "model.checkpoints").glob("epoch=*.ckpt")] == ["epoch=1-step=8.ckpt"]
    resumed = run_fit(fit_request(run, *args, "resume=true"))
    assert _numbers(run) == _numbers(tmp_path / "full")
    assert resumed["best"]["accuracy"] == full["best"]["accuracy"]
    with (run / "logs" / "metrics.csv").open(newline="") as f:
        val_epochs = [int(r["epoch"]) for r in csv.DictReader(f) if r.get("val/acc")]
    assert val_epochs == [0, 1, 2]
    assert not (run / "model.checkpoints").exists()

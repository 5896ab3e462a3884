"""Train one classifier per (regime, seed), evaluate each, and keep a table: the `fit` command's engine."""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from transfer.atomic import write_text_atomic
from transfer.backbones.base import Backbone
from transfer.data.labelled import LabelledImages
from transfer.data.splits import Splitter
from transfer.distributed import is_rank_zero
from transfer.eval.metrics import classification_metrics
from transfer.eval.plots import plot_confusion, plot_curves, plot_regimes
from transfer.eval.stats import paired_table, wilson_interval
from transfer.features.cache import FeatureCache
from transfer.model.heads import create_head
from transfer.model.model_dir import copy_model_dir, save_model_dir
from transfer.studies.config import FitConfig
from transfer.studies.resume import (
    checkpoints_path,
    discard_checkpoints,
    forget_runs,
    prepare_checkpoints,
    read_run_record,
    record_path,
    write_run_record,
)
from transfer.training.config import HeadConfig, Regime
from transfer.training.fit import RunOptions, fit_classifier
from transfer.training.resumable import resume_checkpoint

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    regime: str
    seed: int
    metrics: dict
    seconds: float
    trainable_params: int
    model_dir: str
    train_idx: list[int] = field(default_factory=list, repr=False)  # the split this run trained on
    eval_idx: list[int] = field(default_factory=list, repr=False)  # ... and was scored on (indices into the images)
    probs: torch.Tensor | None = field(default=None, repr=False)  # N_eval x num_classes softmax on eval_idx
    weights: dict | None = None  # where the body's weights came from (backbones/provenance.py)
    feature_cache: dict | None = None  # frozen runs: FeatureCache.key_record of the features the head trained on
    norm: str = ""  # fine-tunes: the BatchNorm statistics used and why (training/norm_policy.py)

    def summary(self) -> dict:
        """What metrics.json keeps of a run (no indices, no probabilities)."""
        keep = ("regime", "seed", "metrics", "seconds", "trainable_params", "model_dir", "weights", "feature_cache")
        keep += ("norm",)
        return {k: getattr(self, k) for k in keep}


@dataclass
class StudyResult:
    runs: list[RunResult] = field(default_factory=list)
    best: RunResult | None = None  # the run whose model dir is out_dir/model
    best_model_dir: str = ""

    def table(self) -> dict[str, dict]:
        """Per regime: accuracy / macro-F1 mean and std over seeds, trainable parameters, seconds per run."""
        out: dict[str, dict] = {}
        for name in dict.fromkeys(r.regime for r in self.runs):
            rs = [r for r in self.runs if r.regime == name]
            acc = [r.metrics["accuracy"] for r in rs]
            f1 = [r.metrics["f1_macro"] for r in rs]
            out[name] = {
                "accuracy_mean": statistics.fmean(acc),
                "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "f1_macro_mean": statistics.fmean(f1),
                "seeds": [r.seed for r in rs],
                "accuracy_runs": acc,
                "trainable_params": rs[0].trainable_params,
                "seconds_per_run": statistics.fmean(r.seconds for r in rs),
            }
        return out


def seeded_start(
    make_backbone, regime: Regime, head_cfg: HeadConfig, num_classes: int, seed: int
) -> tuple[Backbone, nn.Module]:
    """The body and the initial head of one run, both drawn from `seed`: the same run starts the same whether its body
    was built at start-up or now, in a study, a cross-validation fold, a learning-curve point or regime=auto's
    candidate (so auto's final model is the chosen regime's own run)."""
    torch.manual_seed(seed)  # a body from scratch draws its weights here
    backbone = make_backbone(regime)
    torch.manual_seed(seed)  # the head's draws do not depend on what building the body drew
    head = create_head(head_cfg.name, backbone.num_features, num_classes, **head_cfg.params)
    return backbone, head


def run_study(
    make_backbone: Callable[[Regime], Backbone],
    regimes: list[Regime],
    seeds: list[int],
    images: LabelledImages,
    split: Splitter,
    cfg: FitConfig,
    out_dir: Path,
    quiet: bool = False,
    on_run: Callable[[RunResult], None] | None = None,
) -> StudyResult:
    """Every regime x seed; models saved under out_dir/models/ (or out_dir/model for a single run).

    With `cfg.resume`, a run whose model dir and record (training/resume.py) are complete is read back, not retrained,
    and a fine-tune killed mid-way continues from its newest epoch checkpoint; without, earlier records are forgotten.
    """
    single = len(regimes) * len(seeds) == 1
    result = StudyResult()
    resume, head_spec = cfg.resume, cfg.head.spec()
    backbone_name, backbone_kwargs = cfg.backbone.name, cfg.backbone.kwargs
    if not resume and is_rank_zero():
        forget_runs(out_dir)
    with quiet_per_run_logs(quiet and not single):
        for regime in regimes:
            for seed in seeds:
                train_idx, eval_idx = split(seed)
                run_name = "model" if single else f"models/{regime.name}-seed{seed}"
                mdir = out_dir / run_name
                key = run_key(regime, seed, backbone_name, head_spec, images.classes, train_idx, eval_idx)
                record = read_run_record(mdir, key) if resume else None
                first = not result.runs and regime is regimes[0] and seed == seeds[0]
                if record is not None:
                    if first:  # the first run takes the backbone built to read the preprocessing: release it
                        make_backbone(regime)
                    run = run_from_record(record, regime.name, seed, mdir, train_idx, eval_idx)
                    log.info("resume: kept the finished run %s", run_name)
                    result.runs.append(run)
                    if on_run and is_rank_zero():
                        on_run(run)
                    continue
                train, evaluation = images.subset(train_idx), images.subset(eval_idx)
                backbone, head = seeded_start(make_backbone, regime, cfg.head, len(images.classes), seed)
                log_dir = out_dir if single else None
                ckpt_dir = checkpoints_path(mdir)
                if is_rank_zero():
                    record_path(mdir).unlink(missing_ok=True)  # a record stands only beside the model dir it describes
                    prepare_checkpoints(ckpt_dir, key, resume)  # a killed fine-tune of this very run: kept
                if resume and (ckpt := resume_checkpoint(ckpt_dir)):
                    log.info("resume: %s continues from its checkpoint %s", run_name, Path(ckpt).name)
                options = RunOptions(validate_each_epoch=single, checkpoint_dir=str(ckpt_dir))
                weights = backbone.weights_source
                fitted = fit_classifier(
                    backbone, head, regime, train, evaluation, replace(cfg, seed=seed), log_dir, quiet, options
                )
                metrics = classification_metrics(fitted.val_probs, evaluation.labels, images.classes)
                features = feature_key(fitted.classifier.backbone, cfg) if regime.body_frozen else None
                if is_rank_zero():
                    save_model_dir(
                        mdir,
                        fitted.classifier,
                        backbone_name,
                        images.classes,
                        head_spec,
                        backbone_kwargs,
                        extra={
                            "regime": regime.to_dict(),
                            "seed": seed,
                            "eval_accuracy": metrics["accuracy"],
                            "epoch": fitted.best_epoch,  # 0-based, the epoch whose weights these are; None: the last
                            "selected_by": fitted.selected_by,  # why: e.g. "val/acc on 20% of train (inner split) ..."
                            "feature_cache": features,  # frozen: where the features the head trained on are
                            "norm": fitted.norm,  # fine-tunes: which BatchNorm statistics, and why
                        },
                    )
                    probs = fitted.val_probs
                    write_run_record(  # after the model dir: a record means the run finished
                        mdir,
                        key,
                        {
                            "metrics": metrics,
                            "seconds": fitted.seconds,
                            "trainable_params": fitted.trainable_params,
                            "probs": probs.tolist() if probs is not None else None,
                            "probs_dtype": str(probs.dtype).removeprefix("torch.") if probs is not None else None,
                            "weights": weights,
                            "feature_cache": features,
                            "norm": fitted.norm,
                        },
                    )
                    discard_checkpoints(ckpt_dir)
                run = RunResult(
                    regime.name,
                    seed,
                    metrics,
                    fitted.seconds,
                    fitted.trainable_params,
                    str(mdir),
                    list(train_idx),
                    list(eval_idx),
                    fitted.val_probs,
                    weights,
                    features,
                    fitted.norm,
                )
                result.runs.append(run)
                if on_run and is_rank_zero():
                    on_run(run)
    table = result.table()
    best_regime = max(table, key=lambda k: table[k]["accuracy_mean"])
    result.best = max((r for r in result.runs if r.regime == best_regime), key=lambda r: r.metrics["accuracy"])
    if not single and is_rank_zero():  # the best regime's best seed becomes the run's model
        copy_model_dir(result.best.model_dir, out_dir / "model")
    result.best_model_dir = str(out_dir / "model")
    return result


def run_key(regime: Regime, seed: int, backbone: str, head: dict, classes, train_idx, eval_idx) -> dict:
    """What must match for a finished run to stand in for a rerun under `resume=true`."""
    return {
        "regime": regime.to_dict(),
        "seed": seed,
        "backbone": backbone,
        "head": dict(head),
        "classes": list(classes),
        "train_idx": [int(i) for i in train_idx],
        "eval_idx": [int(i) for i in eval_idx],
    }


def run_from_record(record: dict, regime: str, seed: int, mdir: Path, train_idx, eval_idx) -> RunResult:
    probs = record.get("probs")
    if probs is not None:
        probs = torch.tensor(probs, dtype=getattr(torch, record.get("probs_dtype") or "float32"))
    return RunResult(
        regime,
        seed,
        record["metrics"],
        float(record["seconds"]),
        int(record["trainable_params"]),
        str(mdir),
        list(train_idx),
        list(eval_idx),
        probs,
        record.get("weights"),
        record.get("feature_cache"),
        record.get("norm", ""),
    )


def feature_key(body: Backbone, cfg: FitConfig) -> dict:
    """The feature cache's address for a frozen run's body (the same key `training/fit.py` extracted under)."""
    return FeatureCache(body, cfg.features, "cpu", cfg.augment).key_record()


def paired_runs(result: StudyResult) -> tuple[list[RunResult], str]:
    """One run per regime, all scored on the same images: each regime's best seed when their held-out sets are
    identical, else every regime at the chosen model's seed (one split for all), and a line saying which."""
    table = result.table()
    best_of = {
        name: max((r for r in result.runs if r.regime == name), key=lambda r: r.metrics["accuracy"]) for name in table
    }
    runs = list(best_of.values())
    if all(r.eval_idx == runs[0].eval_idx for r in runs):
        return runs, "each regime's best seed, on the same held-out images"
    seed = result.best.seed
    runs = [next(r for r in result.runs if r.regime == name and r.seed == seed) for name in table]
    return runs, f"every regime at seed {seed} (the chosen model's split: seeds split the images differently)"


def paired_comparison(result: StudyResult, labels: torch.Tensor, eval_name: str = "val") -> dict | None:
    """McNemar verdicts between the regimes on per-image correctness (stats.paired_table); None for one regime."""
    runs, basis = paired_runs(result)
    if len(runs) < 2 or any(r.probs is None for r in runs):
        return None
    corrects = [(r.probs.argmax(1) == labels[torch.as_tensor(r.eval_idx)]).numpy() for r in runs]
    rows = paired_table([r.regime for r in runs], corrects)
    return {
        "split": eval_name,
        "n": len(runs[0].eval_idx),
        "basis": basis,
        "models": {r.regime: r.seed for r in runs},
        "rows": rows,
        "verdicts": [row["verdict"] for row in rows],
    }


@contextlib.contextmanager
def quiet_per_run_logs(enabled: bool) -> Iterator[None]:
    """In a study each run prints one line; the per-run cache and training INFO lines would drown the table."""
    names = ("transfer.features", "transfer.training.fit", "transfer.data.device_batches")
    saved = {n: logging.getLogger(n).level for n in names}
    if enabled:
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def write_study_report(result: StudyResult, out_dir: Path, classes: list[str], extra: dict) -> dict:
    """metrics.json + confusion.png (best model) + curves.png (single runs) in out_dir."""
    table = result.table()
    best = result.best
    report = {
        "table": table,
        "best": {
            "regime": best.regime,
            "seed": best.seed,
            "model_dir": result.best_model_dir,
            "norm": best.norm,
            **best.metrics,
        },
        "runs": [r.summary() for r in result.runs],
        **extra,
    }
    write_text_atomic(out_dir / "metrics.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    plot_confusion(
        best.metrics["confusion"],
        classes,
        out_dir / "confusion.png",
        f"{best.regime} seed {best.seed}: accuracy {best.metrics['accuracy']:.3f}",
    )
    plot_curves(out_dir / "logs" / "metrics.csv", out_dir / "curves.png")
    if len(result.runs) > 1:
        plot_regimes(table, out_dir / "regimes.png", f"{extra.get('eval_split', 'val')} accuracy")
        write_text_atomic(out_dir / "summary.md", study_markdown(result, extra.get("eval_split", "val")))
    return report


def study_markdown(result: StudyResult, eval_name: str) -> str:
    """One row per (regime, seed) run: its settings, its held-out accuracy with a 95% Wilson interval, wall time."""
    lines = [
        f"| regime | seed | {eval_name} accuracy | 95% CI | images | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in result.runs:
        n = int(r.metrics["n"])
        lo, hi = wilson_interval(round(r.metrics["accuracy"] * n), n)
        mark = " (chosen)" if r is result.best else ""
        lines.append(
            f"| {r.regime}{mark} | {r.seed} | {r.metrics['accuracy']:.3f} | {lo:.3f}-{hi:.3f} | {n} | {r.seconds:.1f} |"
        )
    return "\n".join(lines) + "\n"

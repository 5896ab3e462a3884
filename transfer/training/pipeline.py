"""The fit command: (source pretraining) -> backbone -> task data -> regimes x seeds -> model dir + report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from transfer.backbones.base import Preprocessing
from transfer.backbones.factory import create_backbone
from transfer.data.augment import AugmentConfig, build_eval_transform
from transfer.data.datamodule import TransformDataset
from transfer.data.labelled import LabelledImages
from transfer.data.splits import stratified_split
from transfer.data.task import TaskData, load_digits_task, load_folder_task
from transfer.distributed import is_rank_zero
from transfer.errors import UserError
from transfer.eval.metrics import classification_metrics
from transfer.features.config import FeatureConfig
from transfer.model.heads import create_head
from transfer.model.model_dir import load_model_dir, save_model_dir
from transfer.training.fit import TrainConfig, fit_classifier, predict_probs
from transfer.training.regimes import Regime
from transfer.training.stage_probe import check_stages, probe_stages
from transfer.training.study import StudyResult, quiet_per_run_logs, run_study, write_study_report

log = logging.getLogger("transfer")


@dataclass
class FitRequest:
    """Everything `fit` needs, as plain values (the library can be driven without Hydra)."""

    backbone: dict  # name, pretrained, weights, kwargs
    data: dict  # kind (folder | digits) and its fields
    head: dict  # name, lr, weight_decay, label_smoothing, params
    trainer: dict  # max_epochs + pytorch_lightning.Trainer arguments
    augment: dict
    regimes: list[dict]
    seeds: list[int]
    source: dict | None
    out_dir: Path
    quiet: bool = False
    features: dict | None = None  # the feature cache (conf/config.yaml `features:`); None: its defaults
    probe_stages: list[str] | None = None  # frozen features of these stages scored by a linear probe (stage_probe.py)


def _typed(cls, values: dict, key: str):
    try:
        return cls(**values)
    except TypeError as e:
        raise UserError(f"{key}: {e}; see conf/{key}/ for the accepted keys.") from None


def train_config(req: FitRequest) -> TrainConfig:
    trainer = dict(req.trainer)
    return TrainConfig(
        max_epochs=int(trainer.pop("max_epochs", 10)),
        lr=float(req.head.get("lr", 1e-3)),
        weight_decay=float(req.head.get("weight_decay", 1e-4)),
        label_smoothing=float(req.head.get("label_smoothing", 0.0)),
        batch_size=int(req.data.get("batch_size", 32)),
        num_workers=int(req.data.get("num_workers", 0)),
        trainer=trainer,
        features=FeatureConfig.from_dict(req.features) if req.features is not None else None,
    )


def pretrain_digits_source(req: FitRequest, train_cfg: TrainConfig) -> tuple[Path, float]:
    """Train the body from scratch on the source digits; returns (model dir, held-out source accuracy)."""
    src = req.source
    name, kwargs = req.backbone["name"], req.backbone.get("kwargs") or {}
    torch.manual_seed(train_cfg.seed)
    backbone = create_backbone(name, pretrained=False, **kwargs)
    task = load_digits_task(list(src["classes"]), 1, backbone.preprocessing)
    train_idx, val_idx = stratified_split(task.images.labels, 0.1, 0)
    head = create_head("softmax", backbone.num_features, len(task.images.classes))
    cfg = TrainConfig(
        **{
            **train_cfg.__dict__,
            "max_epochs": int(src.get("max_epochs", 15)),
            "lr": float(src.get("lr", 3e-3)),
            "batch_size": int(src.get("batch_size", 64)),
        }
    )
    scratch = Regime("scratch", frozen_stages=0, body_lr_factor=1.0, norm="train", pretrained=False)
    fitted = fit_classifier(
        backbone,
        head,
        scratch,
        task.images.subset(train_idx),
        task.images.subset(val_idx),
        AugmentConfig(**req.augment),
        cfg,
        None,
        quiet=True,
    )
    acc = classification_metrics(fitted.val_probs, task.images.labels[val_idx], task.images.classes)["accuracy"]
    path = save_model_dir(
        req.out_dir / "source_model",
        fitted.classifier,
        name,
        task.images.classes,
        {"name": "softmax"},
        kwargs,
        extra={"source_accuracy": acc},
    )
    return path, acc


def run_fit(req: FitRequest, started: float | None = None) -> dict:
    started = started or time.perf_counter()
    regimes = [_typed(Regime, r, "regime") for r in req.regimes]
    augment = _typed(
        AugmentConfig, {**req.augment, "crop_scale": tuple(req.augment.get("crop_scale", (0.35, 1.0)))}, "augment"
    )
    train_cfg = train_config(req)
    name, kwargs = req.backbone["name"], req.backbone.get("kwargs") or {}
    weights, pretrained = req.backbone.get("weights"), bool(req.backbone.get("pretrained", False))
    extra: dict = {"backbone": name}
    if req.source:
        if req.data.get("kind") != "digits":
            raise UserError(
                "source: pretraining a source model is implemented for data=digits only; the digits recipe sets it: "
                "add source=null, or start from recipe=cat_detector for an image folder."
            )
        t = time.perf_counter()
        weights, acc = pretrain_digits_source(req, train_cfg)
        extra["source"] = {
            "classes": list(req.source["classes"]),
            "accuracy": acc,
            "model_dir": str(weights),
            "seconds": time.perf_counter() - t,
        }
        print(
            f"source model: {name} trained on digits {list(req.source['classes'])}, held-out accuracy {acc:.3f}"
            f" -> {weights}"
        )

    built: dict[str, object] = {}

    def make_backbone(regime: Regime):
        if regime is regimes[0] and "probe" in built:  # the backbone built to read preprocessing, used once
            return built.pop("probe")
        if not regime.pretrained:
            return create_backbone(name, pretrained=False, **kwargs)
        if not weights and not pretrained:
            log.warning(
                "regime %s uses backbone %s with random weights (backbone.pretrained=false, no weights)",
                regime.name,
                name,
            )
        return create_backbone(name, pretrained=pretrained, weights=weights, **kwargs)

    torch.manual_seed(req.seeds[0])  # random bodies: the same config builds the same weights (sweeps compare heads)
    probe = make_backbone(regimes[0])  # resolves weights first: no network is reported before any decoding
    built["probe"] = probe
    if req.probe_stages:
        check_stages(probe, list(req.probe_stages))
    task = _load_task(req, probe.preprocessing)
    if req.data["kind"] != "folder":  # a folder's scan has printed its own summary
        print(f"data: {task.description}")
    head_spec = {"name": req.head["name"], **(req.head.get("params") or {})}
    result = run_study(
        make_backbone,
        name,
        head_spec,
        regimes,
        req.seeds,
        task.images,
        task.split,
        augment,
        train_cfg,
        req.out_dir,
        kwargs,
        quiet=req.quiet or len(regimes) * len(req.seeds) > 1,
        on_run=lambda r: print(
            f"  {r.regime:<8} seed {r.seed}: {task.eval_name} accuracy {r.metrics['accuracy']:.3f}  ({r.seconds:.1f}s)"
        ),
    )
    if req.probe_stages and is_rank_zero():
        with quiet_per_run_logs(True):
            extra["stage_probe"] = probe_stages(
                make_backbone, list(req.probe_stages), task.images, task.split, req.seeds, train_cfg
            )
    if task.test_idx and is_rank_zero():
        extra["test"] = score_model_dir(result.best.model_dir, task.images.subset(task.test_idx))
    extra |= {"data": task.description, "eval_split": task.eval_name, "wall_seconds": time.perf_counter() - started}
    if not is_rank_zero():  # DDP: rank 0 alone writes and reports (every rank evaluated the whole eval set)
        return {}
    report = write_study_report(result, req.out_dir, task.images.classes, extra)
    print_summary(result, report, req.out_dir, task)
    return report


def score_model_dir(model_dir: str | Path, images: LabelledImages) -> dict:
    """Metrics of a saved model on in-memory images (already at its store size): the held-out test/ folder."""
    classifier, card = load_model_dir(model_dir)
    tf = build_eval_transform(Preprocessing.from_dict(card["preprocessing"]))
    loader = DataLoader(TransformDataset(images, tf), batch_size=64)
    probs = predict_probs(classifier, loader, torch.device("cpu"))
    return {"model_dir": str(model_dir), **classification_metrics(probs, images.labels, images.classes)}


def _load_task(req: FitRequest, pre) -> TaskData:
    d = req.data
    if d["kind"] == "digits":
        return load_digits_task(list(d["classes"]), int(d["shots"]), pre)
    return load_folder_task(
        str(Path(str(d["root"])).expanduser()),
        float(d.get("val_fraction", 0.2)),
        bool(d.get("strict", False)),
        pre,
        req.out_dir,
        ram_budget_mb=d.get("ram_budget_mb"),
    )


def print_summary(result: StudyResult, report: dict, out_dir: Path, task: TaskData) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{task.eval_name} accuracy ({len(task.images.classes)} classes)")
    for col in ("regime", "accuracy ± std", "macro F1", "seeds", "trainable", "s/run"):
        table.add_column(col, justify="left" if col == "regime" else "right")
    for regime, row in report["table"].items():
        table.add_row(
            regime,
            f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}",
            f"{row['f1_macro_mean']:.3f}",
            str(len(row["seeds"])),
            f"{row['trainable_params']:,}",
            f"{row['seconds_per_run']:.1f}",
        )
    console = Console()
    console.print(table)
    best = report["best"]
    console.print(
        f"best: {best['regime']} (seed {best['seed']}), {task.eval_name} accuracy {best['accuracy']:.3f}, "
        f"macro F1 {best['f1_macro']:.3f}"
    )
    if "stage_probe" in report:
        rows = ", ".join(
            f"{stage} ({r['width']} wide) {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}"
            for stage, r in report["stage_probe"].items()
        )
        print(f"frozen features by stage, linear probe: {rows}")
    if "test" in report:
        t = report["test"]
        print(
            f"test:    accuracy {t['accuracy']:.3f}, macro F1 {t['f1_macro']:.3f} on the {t['n']} images of test/ "
            "(the best model, scored once)"
        )
    print(f"model:   {result.best_model_dir}")
    plots = ", ".join(p for p in ("confusion.png", "regimes.png", "curves.png") if (out_dir / p).is_file())
    print(f"report:  {out_dir / 'metrics.json'}  (plots beside it: {plots})")
    print(f"predict: python -m transfer command=predict model={result.best_model_dir} images=<file or folder>")
    print(f"wall time: {report['wall_seconds']:.1f}s")

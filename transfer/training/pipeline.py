"""The fit command: (source pretraining) -> backbone -> task data -> regimes x seeds -> model dir + report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
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
from transfer.eval.scoring import scored_metrics
from transfer.features import FeatureCache, FeatureConfig
from transfer.features.key import pixel_digests
from transfer.model.heads import create_head
from transfer.model.model_dir import load_model_dir, save_model_dir
from transfer.training.crossval import crossvalidate_choice, selection_score
from transfer.training.fit import TrainConfig, fit_classifier, predict_probs
from transfer.training.probe_baseline import probe_baseline
from transfer.training.regimes import Regime, apply_regime
from transfer.training.report_data import FitEvidence, make_headline, write_fit_report
from transfer.training.stage_probe import check_stages, probe_stages
from transfer.training.study import paired_comparison, quiet_per_run_logs, run_study, write_study_report

log = logging.getLogger("transfer")


@dataclass(frozen=True)
class BackboneChoice:
    """Which body to build: a registered or timm name, hub weights or a weights source, builder arguments."""

    name: str
    pretrained: bool = False
    weights: str | None = None
    kwargs: dict = field(default_factory=dict)


@dataclass
class FitRequest:
    """Everything `fit` needs, as plain values and dataclasses (the library can be driven without Hydra)."""

    backbone: BackboneChoice
    data: dict  # kind (folder | digits) and its fields, as conf/data/*.yaml
    head: dict  # {"name": ..., **params}: what create_head receives and the model dir records
    train: TrainConfig
    augment: AugmentConfig
    regimes: list[Regime]
    presets: dict[str, Regime]  # every regime of conf/regime/ (the source pretraining and probes use these)
    seeds: list[int]
    out_dir: Path
    source: dict | None = None  # pretrain a source model first (data=digits): classes, max_epochs, lr, batch_size
    quiet: bool = False
    probe_stages: list[str] | None = None  # frozen features of these stages scored by a linear probe (stage_probe.py)
    auto_budget_s: float | None = None  # regime=auto: seconds for the evidence (None: a default per device)
    cv_folds: int = 5  # no test/: the headline cross-validates the chosen regime over all images (0: off)
    resume: bool = False  # keep the finished (regime, seed) runs of a killed fit in out_dir (training/resume.py)
    probe_baseline: bool = True  # the frozen linear probe on the headline's images, beside it (probe_baseline.py)


def pretrain_digits_source(req: FitRequest) -> tuple[Path, float]:
    """Train the body from scratch on the source digits; returns (model dir, held-out source accuracy)."""
    src, train_cfg = req.source, req.train
    name, kwargs = req.backbone.name, req.backbone.kwargs
    torch.manual_seed(train_cfg.seed)
    backbone = create_backbone(name, pretrained=False, **kwargs)
    task = load_digits_task(list(src["classes"]), 1, backbone.preprocessing)
    train_idx, val_idx = stratified_split(task.images.labels, 0.1, 0)
    head = create_head("softmax", backbone.num_features, len(task.images.classes))
    cfg = replace(
        train_cfg,
        max_epochs=int(src.get("max_epochs", 15)),
        lr=float(src.get("lr", 3e-3)),
        batch_size=int(src.get("batch_size", 64)),
    )
    fitted = fit_classifier(
        backbone,
        head,
        req.presets["scratch"],
        task.images.subset(train_idx),
        task.images.subset(val_idx),
        req.augment,
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
    if is_rank_zero():  # until this fit is reported, the run dir claims no finished fit (a resume rewrites it)
        (req.out_dir / "metrics.json").unlink(missing_ok=True)
    regimes, augment, train_cfg = req.regimes, req.augment, req.train
    name, kwargs = req.backbone.name, req.backbone.kwargs
    weights, pretrained = req.backbone.weights, req.backbone.pretrained
    extra: dict = {"backbone": name}
    if req.source:
        if req.data.get("kind") != "digits":
            raise UserError(
                "source: pretraining a source model is implemented for data=digits only; the digits recipe sets it: "
                "add source=null, or start from recipe=cat_detector for an image folder."
            )
        t = time.perf_counter()
        weights, acc = pretrain_digits_source(req)
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
    task = load_task(req.data, probe.preprocessing, req.out_dir)
    if req.data["kind"] != "folder":  # a folder's scan has printed its own summary
        print(f"data: {task.description}")
    head_spec = dict(req.head)
    if regimes[0].name == "auto":  # measure on the training images only, then run the chosen regime
        from transfer.training.auto import choose_regime

        train_idx, _ = task.split(req.seeds[0])
        with quiet_per_run_logs(True):
            auto = choose_regime(
                make_backbone,
                req.presets,
                task.images.subset(train_idx),
                head_spec,
                augment,
                train_cfg,
                req.auto_budget_s,
                req.seeds[0],
            )
        extra["auto"] = auto.to_dict()
        print(f"auto: {auto.chosen} ({auto.reason}; {auto.seconds:.0f} s of {auto.budget_s:.0f})")
        regimes = [req.presets[auto.chosen]]
    extra["random_body"] = not weights and not pretrained
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
        resume=req.resume,
    )
    if req.probe_stages and is_rank_zero():
        with quiet_per_run_logs(True):
            frozen, stages = req.presets["frozen"], list(req.probe_stages)
            extra["stage_probe"] = probe_stages(
                make_backbone, frozen, stages, task.images, task.split, req.seeds, train_cfg
            )
    extra |= {"data": task.description, "eval_split": task.eval_name}
    if not is_rank_zero():  # DDP: rank 0 alone writes and reports (every rank evaluated the whole eval set)
        return {}
    return report_fit(req, task, result, extra, make_backbone, started)


def report_fit(req: FitRequest, task: TaskData, result, extra: dict, make_backbone, started: float) -> dict:
    """Honest numbers for the chosen model (intervals, majority and linear-probe baselines, test/ scored once, paired
    tests between regimes), then metrics.json, predictions.csv and report.html in the run dir."""
    labels, classes = task.images.labels, list(task.images.classes)
    best = result.best
    train_labels = labels[torch.as_tensor(best.train_idx, dtype=torch.long)]
    if best.probs is not None:  # only after the choice: the selection numbers stay as they were
        best.metrics = scored_metrics(best.probs, labels[torch.as_tensor(best.eval_idx)], classes, train_labels)
    test_probs = None
    if task.test_idx:
        test = task.images.subset(task.test_idx)
        test_probs = predict_model_dir(best.model_dir, test)
        extra["test"] = {
            "model_dir": str(best.model_dir),
            **scored_metrics(test_probs, test.labels, classes, train_labels),
        }
    paired = paired_comparison(result, labels, task.eval_name)
    if paired:
        extra["paired"] = paired
    cv = crossvalidate_choice(req, task, best, make_backbone)  # None with test/ (test is the headline)
    if cv is not None:
        extra["crossval"] = cv.to_dict()
        extra["selection"] = selection_score(best.metrics, task.eval_name)
    best_summary = {"regime": best.regime, "seed": best.seed, **best.metrics}
    scored = extra.get("test") or (cv.metrics if cv is not None else best.metrics)
    probe = probe_baseline(req, task, best, cv, make_backbone, scored).to_dict()  # after the choice: a reference
    extra["probe_baseline"] = probe
    extra["headline"] = make_headline(
        best_summary, extra.get("test"), task.eval_name, len(result.runs), extra.get("crossval"), probe
    )
    extra["classes"] = classes
    extra["wall_seconds"] = time.perf_counter() - started
    report = write_study_report(result, req.out_dir, classes, extra)
    evidence = FitEvidence(
        task.images,
        best.train_idx,
        best.eval_idx,
        best.probs,
        task.eval_name,
        task.test_idx,
        test_probs,
        frozen_centre_features(req, make_backbone, task.images, [best.train_idx, best.eval_idx], best.seed),
        cv.index if cv is not None else None,
        cv.probs if cv is not None else None,
    )
    write_fit_report(report, req.out_dir, evidence)
    return report


def frozen_centre_features(
    req: FitRequest, make_backbone, images: LabelledImages, parts: list[list[int]], seed: int
) -> list[torch.Tensor] | None:
    """Centre-view features (each N_part x D) of images[part] for each part, when the frozen regime already cached
    them all; None otherwise (nothing is extracted for the report: near-duplicates are then skipped)."""
    frozen = next((r for r in req.regimes if r.body_frozen), None)
    features = req.train.features or FeatureConfig()
    if frozen is None or not features.enabled or len(images) == 0:
        return None
    torch.manual_seed(seed)  # a random body is rebuilt as the study built it
    backbone = make_backbone(frozen)
    apply_regime(backbone, frozen)
    cache = FeatureCache(backbone, replace(features, progress=False), "cpu", req.augment)
    index = cache.store("center").index()
    out = []
    for part in parts:
        subset = images.subset(part)
        digests = pixel_digests(subset.pixels)
        if any(d not in index for d in digests):
            return None
        out.append(cache.features(subset, ["center"], digests, rank=0, world_size=1)[:, 0])
    return out


def predict_model_dir(model_dir: str | Path, images: LabelledImages) -> torch.Tensor:
    """Softmax (N x K) of a saved model on in-memory images (already at its store size)."""
    classifier, card = load_model_dir(model_dir)
    tf = build_eval_transform(Preprocessing.from_dict(card["preprocessing"]))
    loader = DataLoader(TransformDataset(images, tf), batch_size=64)
    return predict_probs(classifier, loader, torch.device("cpu"))


def score_model_dir(model_dir: str | Path, images: LabelledImages) -> dict:
    """Metrics of a saved model on in-memory images (already at its store size): the held-out test/ folder."""
    probs = predict_model_dir(model_dir, images)
    return {"model_dir": str(model_dir), **classification_metrics(probs, images.labels, images.classes)}


def load_task(data: dict, pre: Preprocessing, out_dir: Path) -> TaskData:
    """The task's images at the backbone's store size, and how each seed splits them (conf/data/*.yaml values)."""
    if data["kind"] == "digits":
        return load_digits_task(list(data["classes"]), int(data["shots"]), pre)
    return load_folder_task(
        str(Path(str(data["root"])).expanduser()),
        float(data.get("val_fraction", 0.2)),
        bool(data.get("strict", False)),
        pre,
        out_dir,
        ram_budget_mb=data.get("ram_budget_mb"),
    )

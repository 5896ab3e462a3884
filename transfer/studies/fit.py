"""The fit command: the start-up sequence -> (regime=auto's choice) -> regimes x seeds -> model dir + report."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from transfer.backbones.base import Preprocessing
from transfer.backbones.provenance import is_random
from transfer.data.augment import build_eval_transform
from transfer.data.datamodule import EvalBatches
from transfer.data.labelled import LabelledImages
from transfer.data.task import TaskData
from transfer.distributed import is_rank_zero
from transfer.eval.evidence_tables import budget_text
from transfer.eval.scoring import scored_metrics
from transfer.model.model_dir import load_model_dir
from transfer.studies.config import AUTO_BACKBONE
from transfer.studies.crossval import crossvalidate_choice, selection_score
from transfer.studies.label_issues import fit_label_issues
from transfer.studies.probe_baseline import probe_baseline
from transfer.studies.report_data import FitEvidence, make_headline, write_fit_report
from transfer.studies.stage_probe import check_stages, probe_stages
from transfer.studies.startup import FitRequest, start
from transfer.studies.study import paired_comparison, quiet_per_run_logs, run_study, write_study_report
from transfer.training.fit import predict_probs


def run_fit(req: FitRequest, started: float | None = None) -> dict:
    started = started or time.perf_counter()
    if is_rank_zero():  # until this fit is reported, the run dir claims no finished fit (a resume rewrites it)
        (req.out_dir / "metrics.json").unlink(missing_ok=True)
    chosen_backbone = None
    if req.cfg.backbone.name == AUTO_BACKBONE:  # rank `backbones` on the training images, fit the winner
        from transfer.studies.rank_backbones import choose_backbone

        req, chosen_backbone = choose_backbone(req)
    cfg, regimes = req.cfg, req.regimes
    setup = start(req, regimes[0])
    if cfg.study.probe_stages:
        check_stages(setup.first, list(cfg.study.probe_stages))
    task, make_backbone = setup.task, setup.make_backbone
    extra: dict = {"backbone": cfg.backbone.name}
    if chosen_backbone is not None:
        extra["backbone_auto"] = chosen_backbone
    if setup.source:
        extra["source"] = setup.source
    if regimes[0].name == "auto":  # measure on the training images only, then run the chosen regime
        from transfer.studies.auto import choose_regime

        train_idx, _ = task.split(req.seeds[0])
        with quiet_per_run_logs(True):
            auto = choose_regime(
                make_backbone, req.presets, task.images.subset(train_idx), cfg, cfg.auto.budget_s, req.seeds[0]
            )
        extra["auto"] = auto.to_dict()
        print(f"auto: {auto.chosen} ({auto.reason}; {budget_text(auto.to_dict())})")
        regimes = [req.presets[auto.chosen]]
        req = replace(req, regimes=regimes)
    result = run_study(
        make_backbone,
        regimes,
        req.seeds,
        task.images,
        task.split,
        cfg,
        req.out_dir,
        quiet=req.quiet or len(regimes) * len(req.seeds) > 1,
        on_run=lambda r: print(
            f"  {r.regime:<8} seed {r.seed}: {task.eval_name} accuracy {r.metrics['accuracy']:.3f}  ({r.seconds:.1f}s)"
        ),
    )
    extra |= weights_facts(result)
    if cfg.study.probe_stages and is_rank_zero():
        with quiet_per_run_logs(True):
            frozen, stages = req.presets["frozen"], list(cfg.study.probe_stages)
            extra["stage_probe"] = probe_stages(make_backbone, frozen, stages, task.images, task.split, req.seeds, cfg)
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
    issues = None
    if cv is not None:
        extra["crossval"] = cv.to_dict()
        extra["selection"] = selection_score(best.metrics, task.eval_name)
        issues = fit_label_issues(task.images, cv.index, cv.probs, req.out_dir)  # label_issues.csv
        if issues is not None:
            extra["label_issues"] = issues.to_dict()
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
        cv.index if cv is not None else None,
        cv.probs if cv is not None else None,
        label_issues=issues,
        duplicates_cache=req.cfg.features.beside("duplicates"),
    )
    write_fit_report(report, req.out_dir, evidence)
    return report


def weights_facts(result) -> dict:
    """metrics.json's provenance: where the chosen model's body weights came from, the feature cache a frozen run
    trained on (the chosen run's, else the study's first frozen run's), and whether a regime meant to start from
    pretrained weights got random ones (`random_body`)."""
    best = result.best
    frozen = best if best.feature_cache else next((r for r in result.runs if r.feature_cache), None)
    random = any(is_random(r.weights) and not r.weights.get("by_design") for r in result.runs)
    out: dict = {"weights": best.weights, "random_body": random}
    others = next((r.weights for r in result.runs if r.weights != best.weights and not is_random(r.weights)), None)
    if others is not None:  # scratch chosen: the pretrained regimes' start is a fact of the study too
        out["other_weights"] = others
    if frozen is not None:
        out["feature_cache"] = {**frozen.feature_cache, "regime": frozen.regime, "seed": frozen.seed}
    return out


def predict_model_dir(model_dir: str | Path, images: LabelledImages) -> torch.Tensor:
    """Softmax (N x K) of a saved model on in-memory images (already at its store size)."""
    classifier, card = load_model_dir(model_dir)
    return classifier_probs(classifier, Preprocessing.from_dict(card["preprocessing"]), images)


def classifier_probs(
    classifier: torch.nn.Module, pre: Preprocessing, images: LabelledImages, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Softmax (N x K) of a classifier on in-memory images at its store size, through the eval transform."""
    return predict_probs(classifier, EvalBatches(images, build_eval_transform(pre), 64), torch.device(device))

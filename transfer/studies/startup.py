"""What every study starts from, written once: the request (config, regimes, presets, run dir), then the start-up
sequence fit, learning-curve, lr-find and features all run: (source pretraining) -> the first body (resolving its
weights, so no network is reported before any decoding) -> the task's images at the body's store size."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from transfer.backbones.base import Backbone
from transfer.backbones.factory import create_backbone
from transfer.backbones.provenance import RANDOM, file_sha256
from transfer.data.splits import stratified_split
from transfer.data.task import TaskData, load_digits_task, load_task
from transfer.errors import UserError
from transfer.eval.metrics import classification_metrics
from transfer.model.heads import create_head
from transfer.model.model_dir import save_model_dir
from transfer.studies.config import FitConfig
from transfer.studies.study import quiet_per_run_logs
from transfer.training.config import Regime
from transfer.training.fit import RunOptions, fit_classifier

log = logging.getLogger("transfer")


@dataclass
class FitRequest:
    """A study's whole input: the config, the regimes it runs, every preset (auto, probes and the source use them),
    where it writes. Plain dataclasses: the library drives it without Hydra."""

    cfg: FitConfig
    regimes: list[Regime]
    presets: dict[str, Regime]
    out_dir: Path
    quiet: bool = False

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.cfg.study.seeds] if self.cfg.study.seeds else [int(self.cfg.seed)]


def study_regimes(cfg: FitConfig, presets: dict[str, Regime]) -> list[Regime]:
    """`study.regimes` by name (the configured `regime` when it has that name, with its overrides), else `regime`."""
    if not cfg.study.regimes:
        return [cfg.regime]
    out = []
    for name in cfg.study.regimes:
        if name == cfg.regime.name:
            out.append(cfg.regime)
        elif name in presets:
            out.append(presets[name])
        else:
            raise UserError(f"study.regimes: unknown regime {name!r}; choose from {', '.join(presets)}.")
    return out


@dataclass
class Started:
    make_backbone: Callable[[Regime], Backbone]  # a body for a regime: pretrained (or the source model) or random
    task: TaskData
    weights: str | None  # what the pretrained bodies load: backbone.weights, or the source model's dir
    source: dict | None = None  # the source model: classes, accuracy, model_dir, seconds
    first: Backbone | None = field(default=None, repr=False)  # the body built to read the preprocessing


def start(req: FitRequest, first: Regime) -> Started:
    """Source pretraining when configured, the first body (seeded by the first seed: the same config builds the same
    random weights), then the task's images. `make_backbone(first)` returns that first body once, then new ones."""
    cfg, bb = req.cfg, req.cfg.backbone
    weights, source = bb.weights, None
    if cfg.source is not None and any(r.pretrained for r in [first, *req.regimes]):
        if cfg.data.kind != "digits":
            raise UserError(
                "source: pretraining a source model is implemented for data=digits only; the digits recipe sets it: "
                "add source=null, or start from recipe=cat_detector for an image folder."
            )
        t = time.perf_counter()
        path, acc, reused = pretrain_digits_source(req)
        weights = str(path)
        source = {
            "classes": list(cfg.source.classes),
            "accuracy": acc,
            "model_dir": weights,
            "seconds": time.perf_counter() - t,
            "reused": reused,
        }
        how = f"reused from {reused} (an earlier run, same settings)" if reused else "trained now"
        print(
            f"source model: {bb.name} on digits {list(cfg.source.classes)} ({how}), held-out accuracy {acc:.3f}"
            f" -> {path}"
        )
    built: dict[str, Backbone] = {}
    source_weights = source_provenance(source, cfg.source) if source else None

    def make_backbone(regime: Regime) -> Backbone:
        if regime is first and "first" in built:  # the body built to read the preprocessing, used once
            return built.pop("first")
        if not regime.pretrained:
            body = create_backbone(bb.name, pretrained=False, **bb.kwargs)
            if body.weights_source and body.weights_source.get("kind") == RANDOM:
                reason = f"regime={regime.name} trains the body from scratch"
                body.weights_source = {**body.weights_source, "reason": reason, "by_design": True}
            return body
        if not weights and not bb.pretrained:
            log.warning(
                "regime %s uses backbone %s with random weights (backbone.pretrained=false, no weights)",
                regime.name,
                bb.name,
            )
        body = create_backbone(bb.name, pretrained=bb.pretrained, weights=weights, **bb.kwargs)
        if source_weights:  # the model dir loaded is this run's own source model: say so, not "an earlier run"
            body.weights_source = dict(source_weights)
        return body

    torch.manual_seed(req.seeds[0])
    body = make_backbone(first)  # resolves weights first: no network is reported before any decoding
    built["first"] = body
    task = load_task(cfg.data, body.preprocessing, req.out_dir)
    if cfg.data.kind != "folder":  # a folder's scan has printed its own summary
        print(f"data: {task.description}")
    return Started(make_backbone, task, weights, source, body)


def source_provenance(source: dict, src) -> dict:
    """The provenance (backbones/provenance.py) of bodies that start from the source model trained in this run."""
    path = Path(source["model_dir"])
    return {
        "kind": "source_model",
        "path": str(path.absolute()),
        "sha256": file_sha256(path / "model.safetensors"),
        "data": "digits",
        "classes": list(src.classes),
        "accuracy": source["accuracy"],
        "reused": source.get("reused"),
    }


def source_key(cfg: FitConfig) -> str:
    """What makes the source model what it is: its body, task, seed and every training setting it reads (the
    package and torch versions too). Equal keys train bitwise-equal models on the CPU, so the second run takes the
    cached one."""
    import hashlib
    import json
    from dataclasses import asdict

    import transfer

    parts = {
        "backbone": [cfg.backbone.name, cfg.backbone.kwargs],
        "source": asdict(cfg.source) if cfg.source else None,
        "seed": cfg.seed,
        "train": {k: asdict(getattr(cfg, k)) for k in ("head", "optimizer", "scheduler", "trainer", "augment")},
        "versions": [transfer.__version__, torch.__version__],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pretrain_digits_source(req: FitRequest) -> tuple[Path, float, str | None]:
    """The body trained from scratch on the source digits, in the run dir; returns (model dir, held-out source
    accuracy, the cached model it was copied from or None when trained now). A source model trained by an earlier
    run with the same key (`source_key`) is reused from the cache next to the feature cache: the digits study's
    second run skips its pretraining."""
    from transfer.model.model_dir import load_model_dir
    from transfer.studies.resume import model_dir_complete

    cfg = req.cfg
    beside = cfg.features.beside("sources")
    cache = beside / source_key(cfg) if beside is not None else None
    if cache is not None and model_dir_complete(cache):
        classifier, card = load_model_dir(cache)
        if "source_accuracy" in card:
            acc, bb = float(card["source_accuracy"]), cfg.backbone
            extra = {"source_accuracy": acc}
            path = save_model_dir(
                req.out_dir / "source_model", classifier, bb.name, list(card["classes"]), {"name": "softmax"},
                bb.kwargs, extra,
            )  # fmt: skip
            return path, acc, str(cache)
    path, acc = _train_digits_source(req)
    if cache is not None:
        _store(path, cache)
    return path, acc, None


def _store(model_dir: Path, cache: Path) -> None:
    """Copy a model dir into the cache whole (a temp sibling, then one rename); a failure only costs the reuse."""
    import os
    import shutil
    import uuid

    tmp = cache.with_name(f".{cache.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(model_dir, tmp)
        os.replace(tmp, cache)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("source model: not cached (%s)", e)


def _train_digits_source(req: FitRequest) -> tuple[Path, float]:
    cfg, src, bb = req.cfg, req.cfg.source, req.cfg.backbone
    assert src is not None
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(bb.name, pretrained=False, **bb.kwargs)
    task = load_digits_task(list(src.classes), 1, backbone.preprocessing)
    train_idx, val_idx = stratified_split(task.images.labels, 0.1, 0)
    head = create_head("softmax", backbone.num_features, len(task.images.classes))
    source_cfg = replace(
        cfg,
        trainer=replace(cfg.trainer, max_epochs=src.max_epochs),
        head=replace(cfg.head, lr=src.lr),
        data=replace(cfg.data, batch_size=src.batch_size),
    )
    with quiet_per_run_logs(True):  # one line says what it made (`source model: ...`)
        fitted = fit_classifier(
            backbone,
            head,
            req.presets["scratch"],
            task.images.subset(train_idx),
            task.images.subset(val_idx),
            source_cfg,
            None,
            quiet=True,
            run=RunOptions(validate_each_epoch=False),  # the held-out accuracy is read once, at the end
        )
    acc = classification_metrics(fitted.val_probs, task.images.labels[val_idx], task.images.classes)["accuracy"]
    path = save_model_dir(
        req.out_dir / "source_model",
        fitted.classifier,
        bb.name,
        task.images.classes,
        {"name": "softmax"},
        bb.kwargs,
        extra={"source_accuracy": acc},
    )
    return path, acc

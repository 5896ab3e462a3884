"""`python -m transfer command=features`: extract (or find) the task's features, write the set manifest, optionally
train the configured head on them (`features.probe=true`) to compare stages or views in seconds."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from transfer.app.dispatch import output_dir, quiet_lightning
from transfer.atomic import write_text_atomic
from transfer.distributed import dist_info
from transfer.features.cache import FeatureCache
from transfer.features.config import FeatureConfig
from transfer.features.key import set_digest
from transfer.features.store import atomic_write, cache_error

log = logging.getLogger("transfer.features")


def features_command(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the command on the composed config; returns what it printed as a dict."""
    from transfer.app.commands.fit import build_request
    from transfer.backbones.factory import create_backbone
    from transfer.training.pipeline import load_task, pretrain_digits_source
    from transfer.training.regimes import apply_regime

    req = build_request(cfg, out_dir, quiet=True)
    fcfg, train_cfg, augment = req.train.features, req.train, req.augment
    weights = req.backbone.weights
    if req.source and not weights and req.data.get("kind") == "digits":
        weights, acc = pretrain_digits_source(req)  # seeded: the same weights, so the same cache key
        print(f"source model: held-out accuracy {acc:.3f} -> {weights}")
    torch.manual_seed(req.seeds[0])  # random (un-pretrained) weights: the same seed, the same weights, a cache hit
    bb = req.backbone
    backbone = create_backbone(bb.name, pretrained=bb.pretrained, weights=weights, **bb.kwargs)
    apply_regime(backbone, req.presets["frozen"])
    task = load_task(req.data, backbone.preprocessing, out_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache = FeatureCache(backbone, fcfg, device, augment)
    views = list(dict.fromkeys(["center", *cache.views()]))  # evaluation always uses the centre view
    start = time.perf_counter()
    feats = cache.features(task.images, views)  # N x K x D
    stats = cache.last
    result = {
        "images": len(task.images),
        "views": views,
        "dim": int(feats.shape[-1]),
        "stage": cache.tap.stage,
        "extracted": stats.extracted,
        "hits": stats.hits,
        "images_per_second": round(stats.images_per_second, 1),
        "seconds": round(time.perf_counter() - start, 2),
        "cache_dir": str(fcfg.directory()) if fcfg.enabled else None,
    }
    print(f"data: {task.description}")
    print(
        f"features: {len(task.images)} images x {len(views)} views ({', '.join(views)}) x {result['dim']} "
        f"from {backbone.name} at stage {cache.tap.stage}; {stats.describe()}"
    )
    if fcfg.enabled and dist_info()[0] == 0:
        result["manifest"] = str(write_set_manifest(fcfg, cache, task.images, views))
        print(f"cache:    {result['manifest']}")
    if fcfg.probe:
        result["probe_accuracy"] = probe(cache, feats, task, views, req, train_cfg)
        print(f"probe:    {req.head['name']} head on {task.eval_name}: accuracy {result['probe_accuracy']:.3f}")
    if fcfg.probe_lrs:
        result["probe_grid"] = probe_grid(cache, feats, task, views, req, train_cfg, [float(x) for x in fcfg.probe_lrs])
        cells = ", ".join(f"lr={lr:g}: {acc:.3f}" for lr, acc in result["probe_grid"].items())
        print(f"probe grid ({len(fcfg.probe_lrs)} linear heads, one pass over the features): {cells}")
    write_text_atomic(out_dir / "features.json", json.dumps(result, indent=2) + "\n")
    return result


def write_set_manifest(fcfg: FeatureConfig, cache: FeatureCache, images, views: list[str]) -> Path:
    """The set's manifest (files by content + class map -> namespaces), written last, by rank 0 only."""
    from transfer.features.key import pixel_digests

    digests = pixel_digests(images.pixels)
    labels = images.labels.tolist()
    name = set_digest(digests, labels, list(images.classes))
    path = fcfg.directory() / "sets" / f"{name}.json"
    body = {
        "classes": list(images.classes),
        "names": list(images.names),
        "labels": labels,
        "digests": digests,
        "namespaces": {v: cache.namespace(v)[0] for v in views},
        "model": cache.model_key,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(json.dumps(body, indent=1).encode()))
    except OSError as e:
        raise cache_error(fcfg.directory(), f"write {path}", e) from None
    return path


def probe(cache: FeatureCache, feats: torch.Tensor, task, views: list[str], req, train_cfg) -> float:
    """Train the configured head on the cached features of the seed's split; accuracy on the held-out part."""
    from dataclasses import replace

    from transfer.model.heads import create_head
    from transfer.training.head_engine import fit_heads

    train_views = [views.index(v) for v in cache.views()]
    train_idx, eval_idx = task.split(req.seeds[0])
    labels = task.images.labels
    params = {k: v for k, v in req.head.items() if k != "name"}
    torch.manual_seed(req.seeds[0])
    head = create_head(req.head["name"], int(feats.shape[-1]), len(task.images.classes), **params)
    how = replace(train_cfg.head_training(), seed=req.seeds[0])
    fit = fit_heads(
        [head],
        [train_cfg.lr],
        feats[train_idx][:, train_views],
        labels[train_idx],
        how,
        feats[eval_idx][:, 0],
        labels[eval_idx],
    )
    return float((fit.val_probs[0].argmax(1) == labels[eval_idx]).float().mean())


def probe_grid(cache: FeatureCache, feats: torch.Tensor, task, views, req, train_cfg, lrs: list[float]) -> dict:
    """Held-out accuracy per learning rate of linear heads trained together (see `grid.py`)."""
    from transfer.training.head_engine import train_head_grid

    train_views = [views.index(v) for v in cache.views()]
    train_idx, eval_idx = task.split(req.seeds[0])
    labels = task.images.labels
    from dataclasses import replace

    how = replace(train_cfg.head_training(), seed=req.seeds[0])
    accs = train_head_grid(
        feats[train_idx][:, train_views], labels[train_idx], feats[eval_idx][:, 0], labels[eval_idx], lrs, how
    )
    return dict(zip(lrs, accs, strict=True))


def run(cfg: DictConfig) -> None:
    quiet_lightning()
    features_command(cfg, output_dir())

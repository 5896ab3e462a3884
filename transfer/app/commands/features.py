"""`python -m transfer command=features`: extract (or find) the task's features, write the set manifest, optionally
train the configured head on them (`features.probe=true`) to compare stages or views in seconds."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from transfer.app.dispatch import output_dir, quiet_lightning
from transfer.app.schema import Config
from transfer.atomic import write_text_atomic
from transfer.distributed import dist_info
from transfer.features.cache import FeatureCache
from transfer.features.config import FeatureConfig
from transfer.features.key import set_digest
from transfer.features.store import atomic_write, cache_error

if TYPE_CHECKING:
    from transfer.studies.startup import FitRequest

log = logging.getLogger("transfer.features")


def features_command(cfg: Config, out_dir: Path) -> dict:
    """Run the command on the typed config; returns what it printed as a dict."""
    from transfer.app.commands.fit import fit_request
    from transfer.studies.startup import start
    from transfer.training.regimes import apply_regime

    req = fit_request(cfg, out_dir, quiet=True)
    frozen = req.presets["frozen"]
    setup = start(replace(req, regimes=[frozen]), frozen)  # seeded: the same weights, so the same cache key
    backbone, task = setup.make_backbone(frozen), setup.task
    apply_regime(backbone, frozen)
    fcfg, augment = cfg.features, cfg.augment
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
    if cfg.data.kind == "folder":
        print(f"data: {task.description}")
    print(
        f"features: {len(task.images)} images x {len(views)} views ({', '.join(views)}) x {result['dim']} "
        f"from {backbone.name} at stage {cache.tap.stage}; {stats.describe()}"
    )
    if fcfg.enabled and dist_info()[0] == 0:
        result["manifest"] = str(write_set_manifest(fcfg, cache, task.images, views))
        print(f"cache:    {result['manifest']}")
    if fcfg.probe:
        result["probe_accuracy"] = probe(cache, feats, task, views, req)
        print(f"probe:    {cfg.head.name} head on {task.eval_name}: accuracy {result['probe_accuracy']:.3f}")
    if fcfg.probe_lrs:
        result["probe_grid"] = probe_grid(cache, feats, task, views, req, [float(x) for x in fcfg.probe_lrs])
        cells = ", ".join(f"lr={lr:g}: {acc:.3f}" for lr, acc in result["probe_grid"].items())
        print(f"probe grid ({len(fcfg.probe_lrs)} linear heads, one pass over the features): {cells}")
    write_text_atomic(out_dir / "features.json", json.dumps(result, indent=2) + "\n")
    return result


def write_set_manifest(fcfg: FeatureConfig, cache: FeatureCache, images, views: list[str]) -> Path:
    """The set's manifest (files by content + class map -> namespaces), written last, by rank 0 only."""

    digests = images.digests()
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


def probe(cache: FeatureCache, feats: torch.Tensor, task, views: list[str], req: FitRequest) -> float:
    """Train the configured head (the head engine) on the cached features of the seed's split; held-out accuracy."""
    from transfer.model.heads import create_head
    from transfer.training.head_engine import predict_head, train_head

    train_views = [views.index(v) for v in cache.views()]
    seed = req.seeds[0]
    train_idx, eval_idx = task.split(seed)
    labels, head_cfg = task.images.labels, req.cfg.head
    torch.manual_seed(seed)
    head = create_head(head_cfg.name, int(feats.shape[-1]), len(task.images.classes), **head_cfg.params)
    train_head(head, feats[train_idx][:, train_views], labels[train_idx], replace(req.cfg, seed=seed))
    return float((predict_head(head, feats[eval_idx][:, 0]).argmax(1) == labels[eval_idx]).float().mean())


def probe_grid(cache: FeatureCache, feats: torch.Tensor, task, views, req: FitRequest, lrs: list[float]) -> dict:
    """Held-out accuracy per learning rate of linear heads trained together in one pass (head_sgd.train_head_grid)."""
    from transfer.training.head_sgd import train_head_grid

    train_views = [views.index(v) for v in cache.views()]
    seed = req.seeds[0]
    train_idx, eval_idx = task.split(seed)
    labels = task.images.labels
    accs = train_head_grid(
        feats[train_idx][:, train_views],
        labels[train_idx],
        feats[eval_idx][:, 0],
        labels[eval_idx],
        lrs,
        replace(req.cfg, seed=seed),
    )
    return dict(zip(lrs, accs, strict=True))


def run(cfg: Config) -> None:
    quiet_lightning()
    features_command(cfg, output_dir())

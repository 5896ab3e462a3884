"""Quality bench (issue 11): the toolkit's choices against the baselines a careful user would try, same data, one run.

(a) The frozen head: `fit_classifier` in the frozen regime with the default config (whatever head it trains today),
    and `fit_linear_probe` directly, each vs scikit-learn's LogisticRegressionCV (lbfgs, multinomial, default Cs,
    5-fold; standardised features) on the SAME cached features and train/held-out split. Goal: ours >= sklearn - 0.5.
(b) `regime=auto` vs frozen, partial and full run singly through `run_fit` (metrics.json's `best`, held-out), each
    with a 95% bootstrap interval; auto's wall time vs the sum of theirs. Goal: auto >= best single regime - 1 point.

Prints one line per comparison, then ONE JSON line.

    python bench/quality.py                                       # digits recipe (source-pretrained LeNet-5)
    python bench/quality.py --quick                               # a few minutes on 2 CPU cores
    python bench/quality.py --data DIR --backbone resnet18 --weights resnet18.safetensors
    python bench/quality.py --override trainer.accelerator=cpu    # any config override, repeatable
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's transfer, not an installed one

REGIMES = ("frozen", "partial", "full")
QUICK = ["trainer.max_epochs=8", "auto.budget_s=15"]  # a few optimiser steps per run; auto's evidence in 15 s
QUICK_DIGITS = ["source.max_epochs=4"]  # the source model: 4 epochs over ~900 images (about 95% held-out)


def base_overrides(args: argparse.Namespace, cache_dir: Path) -> tuple[list[str], str]:
    """Overrides every run shares (data, backbone, study of one run, --quick), and a line describing the set-up."""
    common = ["study.regimes=null", f"study.seeds=[{args.seed}]", "study.probe_stages=null", f"seed={args.seed}"]
    common += ["features.progress=false", f"features.cache_dir={cache_dir}"]
    if args.data == "digits":
        data = ["recipe=digits"] + (QUICK_DIGITS if args.quick else [])
        what = "digits recipe: LeNet-5 pretrained on digits 0-4, transferred to 5-9 (10 images per class)"
    else:
        data = ["~recipe", "data=folder", f"data.root={Path(args.data).expanduser().resolve()}"]
        data += [f"backbone={args.backbone}"]
        if args.weights:
            data += [f"backbone.weights={Path(args.weights).expanduser().resolve()}"]
            what = f"folder {args.data}, {args.backbone} with weights {args.weights}"
        else:
            data += ["backbone.pretrained=false"]
            what = f"folder {args.data}, {args.backbone} with RANDOM weights (pretrained=false: no --weights given)"
    return [*data, *common, *(QUICK if args.quick else []), *args.override], what


def request(overrides: list[str], out_dir: Path):
    """A FitRequest built the way the CLI builds one: compose the typed config, then the fit command's request."""
    from transfer.app.commands.fit import fit_request
    from transfer.app.compose import compose

    return fit_request(compose(overrides), out_dir, quiet=True)


def held_out_correct(run_dir: Path, eval_split: str) -> np.ndarray:
    """Per-image correctness on the held-out split, from the run's predictions.csv (rows in the split's order)."""
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == eval_split]
    return np.array([r["label"] == r["prediction"] for r in rows], dtype=float)


def run_regime(base: list[str], regime: str, out_dir: Path) -> dict:
    """One run_fit under `regime`; its held-out accuracy, interval, wall time (and source pretraining's share)."""
    from transfer.eval.stats import bootstrap_ci
    from transfer.studies.fit import run_fit

    req = request([*base, f"regime={regime}"], out_dir)
    start = time.perf_counter()
    with open(out_dir.with_suffix(".log"), "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        report = run_fit(req)
    wall = time.perf_counter() - start
    correct = held_out_correct(out_dir, report["eval_split"])
    source_s = float((report.get("source") or {}).get("seconds", 0.0))
    row = {
        "regime": report["best"]["regime"],
        "accuracy": float(report["best"]["accuracy"]),
        "ci95": [float(v) for v in bootstrap_ci(correct)],
        "n": int(correct.size),
        "wall_s": wall,
        "source_s": source_s,
        "target_wall_s": wall - source_s,
        "correct": correct,
    }
    if "auto" in report:
        row["chosen"] = report["auto"]["chosen"]
        row["reason"] = report["auto"]["reason"]
        row["auto_evidence_s"] = float(report["auto"]["seconds"])
    if "source" in report:
        row["source_accuracy"] = float(report["source"]["accuracy"])
        row["source_model"] = report["source"]["model_dir"]
    return row


def compare_regimes(base: list[str], work: Path) -> dict:
    """(b): each single regime, then auto, on the same data and split; wall times exclude source pretraining."""
    from transfer.eval.stats import mcnemar_exact

    runs = {"frozen": run_regime(base, "frozen", work / "frozen")}
    source = runs["frozen"].get("source_model")
    if source:  # digits: the others start from this run's source model (same seed: the same model, pretrained once)
        base = [*base, "source=null", f"backbone.weights={source}"]
    runs |= {name: run_regime(base, name, work / name) for name in REGIMES if name != "frozen"}
    for name, r in runs.items():
        print(f"(b) {name:<7} held-out accuracy {r['accuracy']:.3f} {_ci(r)}  {r['target_wall_s']:.1f} s")
    auto = run_regime(base, "auto", work / "auto")
    best_name = max(REGIMES, key=lambda k: runs[k]["accuracy"])
    best = runs[best_name]
    single_sum = sum(r["target_wall_s"] for r in runs.values())
    diff = 100 * (auto["accuracy"] - best["accuracy"])
    paired = mcnemar_exact(auto["correct"], best["correct"])
    print(
        f"(b) auto -> {auto['chosen']}: held-out accuracy {auto['accuracy']:.3f} {_ci(auto)} vs best single "
        f"{best_name} {best['accuracy']:.3f}: {diff:+.2f} points (goal >= -1; McNemar p={paired['p_value']:.3g}); "
        f"{auto['target_wall_s']:.1f} s vs {single_sum:.1f} s for all three ({auto['reason']})"
    )
    clean = {k: {f: v for f, v in r.items() if f not in ("correct", "source_model")} for k, r in runs.items()}
    return {
        "regimes": clean,
        "auto": {f: v for f, v in auto.items() if f not in ("correct", "source_model")},
        "best_single": best_name,
        "auto_minus_best_points": diff,
        "auto_vs_best_mcnemar_p": paired["p_value"],
        "auto_wall_s": auto["target_wall_s"],
        "singles_wall_sum_s": single_sum,
        "auto_over_singles_time": auto["target_wall_s"] / single_sum if single_sum > 0 else None,
        "auto_goal_met": diff >= -1.0,
        "source_accuracy": runs["frozen"].get("source_accuracy"),
        "_source_model": source,
    }


def _ci(r: dict) -> str:
    return f"(95% CI {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}, n={r['n']})"


def frozen_setup(base: list[str], out_dir: Path, source_model: str | None):
    """The frozen regime's request, its backbone (source weights for digits), the task and the held-out split."""
    from dataclasses import replace

    from transfer.backbones.factory import create_backbone
    from transfer.data.task import load_task
    from transfer.training.regimes import apply_regime

    req = request([*base, "regime=frozen"], out_dir)
    seed = req.seeds[0]
    bb = req.cfg.backbone
    if source_model:  # digits: the source model the frozen run_fit pretrained (a model dir is a weights source)
        bb = replace(bb, pretrained=False, weights=source_model)
    torch.manual_seed(seed)  # a random body is built as run_fit builds it
    backbone = create_backbone(bb.name, pretrained=bb.pretrained, weights=bb.weights, **bb.kwargs)
    apply_regime(backbone, req.presets["frozen"])
    with open(out_dir / "task.log", "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        task = load_task(req.cfg.data, backbone.preprocessing, out_dir)
    train_idx, eval_idx = task.split(seed)
    req = replace(req, cfg=replace(req.cfg, seed=seed, source=None, backbone=bb))
    return req, backbone, task.images.subset(train_idx), task.images.subset(eval_idx)


def compare_heads(base: list[str], work: Path, source_model: str | None) -> dict:
    """(a): fit_classifier's frozen head and fit_linear_probe vs LogisticRegressionCV on the same cached features."""
    from transfer.features import FeatureCache
    from transfer.model.heads import create_head
    from transfer.training.fit import fit_classifier
    from transfer.training.probe import fit_linear_probe, probe_predict_proba

    out_dir = work / "heads"
    out_dir.mkdir(parents=True, exist_ok=True)
    req, backbone, train, held = frozen_setup(base, out_dir, source_model)
    cache = FeatureCache(backbone, req.cfg.features, "cpu", req.cfg.augment)
    x_tr = cache.features(train)  # N x K x D: what fit_classifier's head trains on (same cache, same keys)
    x_te = cache.features(held, ["center"])[:, 0]  # N_held x D
    y_tr, y_te = train.labels, held.labels.numpy()
    num_classes = len(train.classes)

    torch.manual_seed(req.seeds[0])
    head = create_head(req.cfg.head.name, backbone.num_features, num_classes, **req.cfg.head.params)
    start = time.perf_counter()
    fitted = fit_classifier(backbone, head, req.presets["frozen"], train, held, req.cfg, None, True)
    ours_s = time.perf_counter() - start  # features come from the cache: this is the head's time
    ours_acc = float((fitted.val_probs.argmax(1).numpy() == y_te).mean())

    start = time.perf_counter()
    probe = fit_linear_probe(x_tr, y_tr, num_classes, seed=req.seeds[0], class_names=list(train.classes))  # the solver
    probe_s = time.perf_counter() - start
    probe_acc = float((probe_predict_proba(probe.linear, x_te).argmax(1).numpy() == y_te).mean())

    sk_acc, sk_s, sk_c, sk_folds = sklearn_baseline(x_tr, y_tr, x_te, y_te, req.seeds[0])
    rows = {"fit_classifier": (ours_acc, ours_s), "fit_linear_probe": (probe_acc, probe_s)}
    for name, (acc, secs) in rows.items():
        print(
            f"(a) {name:<16} held-out accuracy {acc:.3f} vs LogisticRegressionCV {sk_acc:.3f}: "
            f"{100 * (acc - sk_acc):+.2f} points (goal >= -0.5); {secs:.2f} s vs {sk_s:.2f} s"
        )
    return {
        "train_images": len(train),
        "held_out_images": len(held),
        "views": int(x_tr.shape[1]),
        "features": int(x_tr.shape[2]),
        "fit_classifier": _head_row(ours_acc, ours_s, sk_acc) | {"head": req.cfg.head.name},
        "fit_linear_probe": _head_row(probe_acc, probe_s, sk_acc) | {"l2": probe.l2, "folds": probe.folds},
        "sklearn": {"accuracy": sk_acc, "seconds": sk_s, "C": sk_c, "folds": sk_folds},
    }


def _head_row(acc: float, seconds: float, sk_acc: float) -> dict:
    diff = 100 * (acc - sk_acc)
    return {"accuracy": acc, "seconds": seconds, "minus_sklearn_points": diff, "goal_met": diff >= -0.5}


def sklearn_baseline(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: np.ndarray, seed: int):
    """LogisticRegressionCV (lbfgs, multinomial, default Cs, 5-fold or fewer for tiny classes) on standardised
    features; every cached view is a row and a fold keeps an image's views together. Returns (acc, s, C, folds)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.preprocessing import StandardScaler

    from transfer.training.probe import split_rows

    n, k, d = x_tr.shape
    labels = y_tr.numpy()
    folds = int(min(5, np.bincount(labels)[np.bincount(labels) > 0].min()))
    rows = x_tr.reshape(-1, d).double().numpy()
    splits = split_rows(labels, np.arange(n), k, folds, seed)
    start = time.perf_counter()
    scaler = StandardScaler().fit(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FutureWarnings about changing defaults; non-convergence shows in accuracy
        sk = LogisticRegressionCV(cv=splits, solver="lbfgs", scoring="accuracy", max_iter=5000)
        sk.fit(scaler.transform(rows), labels.repeat(k))
    seconds = time.perf_counter() - start
    pred = sk.predict(scaler.transform(x_te.double().numpy()))
    return float((pred == y_te).mean()), seconds, float(np.ravel(sk.C_)[0]), folds


def _finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="'digits' (the digits recipe) or an image folder DIR/<class>/*")
    ap.add_argument("--backbone", default="resnet18", help="--data DIR only: a registered backbone name")
    ap.add_argument("--weights", help="--data DIR only: a local weights file (none: random weights, said so)")
    ap.add_argument("--quick", action="store_true", help="few epochs, auto.budget_s=15: minutes on 2 CPU cores")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="work folder (default: a temporary one, removed at the end)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    ap.add_argument("--override", action="append", default=[], help="an extra config override, e.g. head.lr=0.01")
    args = ap.parse_args(argv)

    from transfer.app.dispatch import quiet_lightning

    quiet_lightning()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        base, what = base_overrides(args, work / "features")
        print(f"data: {what}{' (--quick)' if args.quick else ''}")
        regimes = compare_regimes(base, work)
        heads = compare_heads(base, work, regimes.pop("_source_model"))
    result = {
        "data": what,
        "quick": args.quick,
        "seed": args.seed,
        "overrides": base,
        "heads": heads,
        "regimes": regimes,
        "torch_threads": torch.get_num_threads(),
        "wall_s": time.perf_counter() - started,
    }
    result["finite"] = _finite(result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

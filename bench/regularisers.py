"""Regulariser bench (issue 11): mixup, cutmix, label smoothing and scheduler=hyperrule, each with and without, on
the digits recipe, side by side in one run.

Every variant runs the same study: the fine-tuning regimes (partial, full, scratch) x seeds 0-2 on the digits
recipe's split (10 labelled images per class of digits 5-9; the ~850 others are the test split), from ONE source
model pretrained on digits 0-4 by the first run and reused by all. Only the named override differs. The numbers are
test-split accuracies: no variant is chosen on them inside a run (report.cv_folds=0, one regime per table row), and
this bench only reports them. Per regime: mean +- std over the seeds, and the mean paired difference to the
recipe's default (same seed, same split) with its range over seeds.

    python bench/regularisers.py                 # about 10 minutes on 2 CPU cores
    python bench/regularisers.py --seeds 0       # one seed: a smoke run

Prints one line per variant, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's transfer, not an installed one

REGIMES = ("partial", "full", "scratch")
VARIANTS = {
    "recipe default": [],
    "mixup 0.2": ["augment.mixup=0.2"],
    "cutmix 1.0": ["augment.cutmix=1.0"],
    "label smoothing 0.1": ["head.label_smoothing=0.1"],
    "scheduler=hyperrule": ["scheduler=hyperrule"],
}


def study(overrides: list[str], out_dir: Path) -> tuple[dict, float]:
    """One digits study; its report and wall time."""
    from transfer.app.commands.fit import fit_request
    from transfer.app.compose import compose
    from transfer.studies.fit import run_fit

    req = fit_request(compose(overrides), out_dir, quiet=True)
    start = time.perf_counter()
    with open(out_dir.with_suffix(".log"), "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        report = run_fit(req)
    return report, time.perf_counter() - start


def per_seed(report: dict) -> dict[str, list[float]]:
    """regime -> test accuracy of each seed, in the study's seed order."""
    return {regime: [float(a) for a in row["accuracy_runs"]] for regime, row in report["table"].items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--out", help="work folder (default: a temporary one, removed at the end)")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    from transfer.app.dispatch import quiet_lightning

    quiet_lightning()
    started = time.perf_counter()
    results: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        work = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        base = [
            "recipe=digits",
            "trainer.accelerator=cpu",
            f"study.regimes=[{','.join(REGIMES)}]",
            f"study.seeds=[{','.join(map(str, seeds))}]",
            "study.probe_stages=null",
            "report.cv_folds=0",
            "features.progress=false",
            f"features.cache_dir={work / 'features'}",
        ]
        source: str | None = None
        for i, (name, extra) in enumerate(VARIANTS.items()):
            reuse = ["source=null", f"backbone.weights={source}"] if source else []
            report, wall = study([*base, *reuse, *extra], work / f"v{i}")
            if source is None and "source" in report:
                source = report["source"]["model_dir"]  # every later variant starts from this source model
                wall -= float(report["source"]["seconds"])
            results[name] = {"overrides": extra, "accuracy": per_seed(report), "wall_s": round(wall, 1)}
    default = results["recipe default"]["accuracy"]
    for name, r in results.items():
        r["summary"] = {}
        for regime in REGIMES:
            acc = np.array(r["accuracy"][regime])
            diff = acc - np.array(default[regime])
            r["summary"][regime] = {
                "mean": round(float(acc.mean()), 4),
                "std": round(float(acc.std(ddof=1)) if acc.size > 1 else 0.0, 4),
                "paired_diff_mean": round(float(diff.mean()), 4),
                "paired_diff_range": [round(float(diff.min()), 4), round(float(diff.max()), 4)],
            }
        cells = ", ".join(
            f"{regime} {s['mean']:.3f} ± {s['std']:.3f} ({100 * s['paired_diff_mean']:+.1f} pts)"
            for regime, s in r["summary"].items()
        )
        print(f"{name:<22} {cells}  [{r['wall_s']:.0f} s]")
    out = {
        "bench": "regularisers",
        "data": "digits recipe (LeNet-5 from digits 0-4, 10 images per class of 5-9; test split ~850 images)",
        "seeds": seeds,
        "variants": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

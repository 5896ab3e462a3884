"""What-to-label-next bench (issue 23, part 2): does labelling the images `suggest_to_label` picks beat labelling the
same number of random ones?

A learning curve on real photos: weather/train (605) is the unlabelled pool, weather/test (404) scores every step.
Per seed, every arm starts from the same stratified labelled pool (--start images, equal per class), then repeats
--steps times: fit the toolkit's converged linear probe (`fit_linear_probe`, 5-fold CV for its lambda) on the labelled
images, score it on test/, and move --step images from the pool to the labelled set, chosen by the arm:

    random       uniformly at random (the baseline)
    suggest      margin uncertainty x distance to the nearest labelled-or-chosen image (the default of suggest.py)
    margin       margin uncertainty alone (diversity=0)
    k-center     core-set k-center greedy alone (measure=none)

Paired comparison, suggest vs random on the same seed and step: mean gain in test accuracy, its per-step means,
wins / ties / losses, a one-sample t-test over the seeds' mean gains (seeds are independent; steps within a seed are
not) and, for reference, a Wilcoxon signed-rank test over all (seed, step) pairs.

    python bench/suggest.py                     # 10 seeds x 4 arms x 6 sizes (40..240): ~5 minutes on 2 CPU cores
    python bench/suggest.py --seeds 0 1 2 --arms random suggest
    python bench/suggest.py --tiny              # 12 photos per class, 1 seed, 2 steps: a smoke run

Prints one line per arm and seed, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's transfer, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent))

from weather_features import SHARED, load_weather, missing_reason  # noqa: E402

from transfer.eval.suggest import suggest_to_label  # noqa: E402
from transfer.training.probe import fit_linear_probe, probe_predict_proba  # noqa: E402

ARMS = {  # name -> suggest_to_label keyword arguments (None: random)
    "random": None,
    "suggest": {"measure": "margin", "diversity": 1.0},
    "margin": {"measure": "margin", "diversity": 0.0},
    "k-center": {"measure": "none", "diversity": 1.0},
}


def stratified_start(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` images, as equal per class as possible, chosen at random: a user's first labelled batch."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = [size // len(classes) + (c < size % len(classes)) for c in range(len(classes))]
    return np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, per, strict=True)]
        )
    )


def run_arm(w, arm: str, start: np.ndarray, step: int, steps: int, seed: int) -> list[dict]:
    """The learning curve of one arm: test accuracy at each labelled-set size."""
    x_pool, y_pool = w.train.features, w.train.labels
    centre = x_pool[:, 0].numpy()  # the centre view: what the diversity term measures distances on
    k = len(w.classes)
    rng = np.random.default_rng(10_000 + seed)
    labelled = list(start)
    curve = []
    for s in range(steps + 1):
        idx = torch.as_tensor(labelled)
        probe = fit_linear_probe(x_pool[idx], y_pool[idx], k, folds=5, seed=seed)
        hits = int((probe_predict_proba(probe.linear, w.test.features).argmax(1) == w.test.labels).sum())
        acc = hits / len(w.test.labels)  # exact: equal hit counts give a gain of exactly 0 (a tie)
        curve.append({"n": len(labelled), "accuracy": acc})
        if s == steps:
            break
        pool = np.setdiff1d(np.arange(len(y_pool)), labelled)
        if ARMS[arm] is None:
            chosen = rng.choice(pool, size=min(step, len(pool)), replace=False)
        else:
            probs = probe_predict_proba(probe.linear, x_pool[torch.as_tensor(pool)]).numpy()
            picked = suggest_to_label(probs, centre[pool], step, labelled_features=centre[labelled], **ARMS[arm])
            chosen = pool[picked.order]
        labelled += [int(i) for i in chosen]
    return curve


def paired(curves: dict[str, dict[int, list[dict]]], a: str, b: str) -> dict:
    """Arm a vs arm b on the same seeds and steps (the shared start excluded): gains in accuracy points."""
    seeds = sorted(curves[a])
    gains = np.array(
        [
            [pa["accuracy"] - pb["accuracy"] for pa, pb in zip(curves[a][s][1:], curves[b][s][1:], strict=True)]
            for s in seeds
        ]
    )
    per_seed = gains.mean(1)
    flat = gains.ravel()
    t_p = float(stats.ttest_1samp(per_seed, 0.0).pvalue) if len(seeds) > 1 and per_seed.std() > 0 else float("nan")
    nonzero = flat[flat != 0]
    w_p = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else float("nan")
    return {
        "mean_gain_points": float(100 * flat.mean()),
        "per_step_gain_points": [float(100 * g) for g in gains.mean(0)],
        "per_seed_gain_points": [float(100 * g) for g in per_seed],
        "wins": int((flat > 0).sum()),
        "ties": int((flat == 0).sum()),
        "losses": int((flat < 0).sum()),
        "t_test_over_seeds_p": t_p,
        "wilcoxon_over_pairs_p": w_p,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "weather")
    ap.add_argument("--backbones", type=Path, default=SHARED / "backbones")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/transfer-bench-features"))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--start", type=int, default=40, help="labelled images to start from (stratified)")
    ap.add_argument("--step", type=int, default=40, help="images labelled per step")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="12 photos per class, 1 seed, start 8, 2 steps of 8")
    args = ap.parse_args()
    reason = missing_reason(args.data, args.backbones)
    if reason:
        sys.exit(f"bench/suggest.py: {reason}")
    arms = list(dict.fromkeys(["random", "suggest", *args.arms]))  # the paired comparison needs both
    seeds, start_n, step, steps = (
        (args.seeds[:1], 8, 8, 2) if args.tiny else (args.seeds, args.start, args.step, args.steps)
    )
    torch.set_num_threads(1)
    began = time.perf_counter()
    w = load_weather(args.data, args.backbones, args.cache_dir, per_class=12 if args.tiny else None)
    print(f"{w.describe} ({w.seconds:.1f} s); start {start_n}, +{step} x {steps}, seeds {seeds}")
    curves: dict[str, dict[int, list[dict]]] = {arm: {} for arm in arms}
    for seed in seeds:
        start = stratified_start(w.train.labels.numpy(), start_n, seed)
        for arm in arms:
            t = time.perf_counter()
            curves[arm][seed] = run_arm(w, arm, start, step, steps, seed)
            accs = " ".join(f"{p['n']}:{p['accuracy']:.3f}" for p in curves[arm][seed])
            print(f"seed {seed} {arm:<9} {accs} ({time.perf_counter() - t:.0f} s)")
    comparisons = {arm: paired(curves, arm, "random") for arm in arms if arm != "random"}
    for arm, c in comparisons.items():
        print(
            f"{arm} vs random: mean gain {c['mean_gain_points']:+.2f} points over {len(seeds)} seeds x {steps} steps "
            f"(per step {' '.join(f'{g:+.1f}' for g in c['per_step_gain_points'])}); wins/ties/losses "
            f"{c['wins']}/{c['ties']}/{c['losses']}; t-test over seeds p={c['t_test_over_seeds_p']:.3g}, "
            f"Wilcoxon over pairs p={c['wilcoxon_over_pairs_p']:.3g}"
        )
    sizes = [p["n"] for p in curves["random"][seeds[0]]]
    mean_curves = {
        arm: [float(np.mean([curves[arm][s][i]["accuracy"] for s in seeds])) for i in range(len(sizes))] for arm in arms
    }
    out = {
        "bench": "suggest",
        "data": str(args.data),
        "pool_images": len(w.train.labels),
        "test_images": len(w.test.labels),
        "seeds": seeds,
        "sizes": sizes,
        "mean_accuracy": mean_curves,
        "vs_random": comparisons,
        "curves": {arm: {str(s): c for s, c in by_seed.items()} for arm, by_seed in curves.items()},
        "seconds": time.perf_counter() - began,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

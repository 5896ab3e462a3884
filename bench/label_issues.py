"""Label-issues bench (issue 23, part 1): does confident learning find labels flipped on purpose in real photos?

weather/train (605 real photos, 4 classes) through the real ImageNet MobileNet v2; per seed, 5% of the training
labels are flipped at random to another class, out-of-fold probabilities come from the toolkit's converged linear
probe (`fit_linear_probe`, lambda chosen by its own inner 5-fold CV on each outer training part) over stratified
outer folds, and `transfer.eval.label_issues.find_label_issues` flags images. Reported per seed: precision and recall
of the flipped images among the flagged (goal: both >= 0.6) for every cleanlab filter, and the AUROC of each
ranking score for telling flipped from clean. First, on the unflipped labels, the images flagged are counted (goal:
few) and each one listed: they are this data set's own suspects, and a seed's false flags are split into those and
the rest (a photo the data set itself leaves in doubt is not a failure to find the flipped ones).

    python bench/label_issues.py                          # 5 seeds + the unflipped set: ~8 minutes on 2 CPU cores
    python bench/label_issues.py --seeds 0 1 --noise 0.1  # other seeds, 10% flipped
    python bench/label_issues.py --tiny                   # 12 photos per class, 1 seed, 3 folds: a smoke run
    python bench/label_issues.py --probs probe            # the probabilities command=label-issues reads (one CV)

Prints the unflipped set's suspects, one block per seed (a line per filter), then ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's transfer, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent))

from weather_features import SHARED, load_weather, missing_reason  # noqa: E402

from transfer.eval.label_issues import FILTERS, RANKINGS, find_label_issues, label_quality_scores  # noqa: E402
from transfer.training.probe import fit_linear_probe, probe_predict_proba  # noqa: E402

DEFAULT_FILTER = "both"  # find_label_issues' default
GOAL = 0.6


def flip_labels(labels: np.ndarray, num_classes: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with round(fraction * N) of them, chosen at random, moved to another class chosen at random; and the
    indices flipped."""
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), size=round(fraction * len(labels)), replace=False))
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, size=len(flipped))) % num_classes
    return noisy, flipped


PROBS = ("nested", "probe")  # --probs: how the out-of-fold probabilities are made (out_of_fold_probs)
VIEWS = {"both": [0, 1], "center": [0]}  # --views: the cached views the probe trains on (centre, mirrored)


def out_of_fold_probs(
    features: torch.Tensor, labels: np.ndarray, num_classes: int, folds: int, seed: int, how: str = "nested"
):
    """N x K probabilities, each row from a probe fitted on the other folds (stratified by the GIVEN labels, as the
    pipeline's cross-validation is); returns (probs, seconds). `how="nested"`: a probe per outer fold, each with its
    own inner CV for lambda (a fit's cross-validated headline); `how="probe"`: the one probe's own CV, its out-of-fold
    probabilities at the lambda chosen on those folds (`ProbeResult.oof_probs`: what command=label-issues reads)."""
    start = time.perf_counter()
    if how == "probe":
        probe = fit_linear_probe(features, torch.as_tensor(labels), num_classes, folds=folds, seed=seed)
        return probe.oof_probs.double().numpy(), time.perf_counter() - start
    probs = np.zeros((len(labels), num_classes))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(np.zeros(len(labels)), labels):
        probe = fit_linear_probe(features[train], torch.as_tensor(labels[train]), num_classes, folds=folds, seed=seed)
        probs[held] = probe_predict_proba(probe.linear, features[held]).double().numpy()
    return probs, time.perf_counter() - start


def precision_recall(found: list[int], flipped: np.ndarray) -> tuple[float, float]:
    hits = len(set(found) & set(flipped.tolist()))
    precision = hits / len(found) if found else (1.0 if len(flipped) == 0 else 0.0)
    recall = hits / len(flipped) if len(flipped) else 1.0
    return precision, recall


def score_seed(w, seed: int, noise: float, folds: int, suspects: set[int], how: str = "nested") -> dict:
    """One seed: flip, cross-validate the probe, run every filter; precision / recall / count and ranking AUROCs.
    `suspects`: images flagged on the unflipped labels; a false flag among them is the data's own doubt, not noise."""
    y = w.train.labels.numpy()
    k = len(w.classes)
    noisy, flipped = flip_labels(y, k, noise, seed)
    probs, seconds = out_of_fold_probs(w.train.features, noisy, k, folds, seed, how)
    row: dict = {"seed": seed, "flipped": len(flipped), "cv_seconds": seconds, "filters": {}, "ranking_auroc": {}}
    row["oof_accuracy_vs_true"] = float((probs.argmax(1) == y).mean())
    for filter_by in FILTERS:
        found = find_label_issues(noisy, probs, w.classes, w.train.names, filter_by=filter_by)
        flagged = [i.index for i in found.issues]
        p, r = precision_recall(flagged, flipped)
        false = set(flagged) - set(flipped.tolist())
        row["filters"][filter_by] = {"flagged": len(found), "precision": p, "recall": r}
        row["filters"][filter_by] |= {
            "false_flags": len(false),
            "false_flags_unflipped_suspects": len(false & suspects),
        }
    is_flipped = np.zeros(len(y), bool)
    is_flipped[flipped] = True
    for ranked_by in RANKINGS:
        quality = label_quality_scores(noisy, probs, ranked_by)
        row["ranking_auroc"][ranked_by] = (
            float(roc_auc_score(is_flipped, -quality)) if 0 < len(flipped) < len(y) else math.nan
        )
    d = row["filters"][DEFAULT_FILTER]
    print(
        f"seed {seed}: {len(flipped)} of {len(y)} labels flipped; {DEFAULT_FILTER} flags {d['flagged']}: "
        f"precision {d['precision']:.2f}, recall {d['recall']:.2f} (goal >= {GOAL}); {d['false_flags']} false flags, "
        f"{d['false_flags_unflipped_suspects']} of them flagged on the unflipped labels too; "
        f"out-of-fold probe accuracy vs the true labels {row['oof_accuracy_vs_true']:.3f} ({seconds:.0f} s)"
    )
    for filter_by, f in row["filters"].items():
        if filter_by != DEFAULT_FILTER:
            print(
                f"    {filter_by:<20} flags {f['flagged']:>3}: precision {f['precision']:.2f}, recall {f['recall']:.2f}"
            )
    print("    ranking AUROC (flipped vs clean): " + ", ".join(f"{k} {v:.3f}" for k, v in row["ranking_auroc"].items()))
    return row


def score_clean(w, folds: int, seed: int, how: str = "nested") -> dict:
    """The labels as given: how many images are flagged, and which."""
    y = w.train.labels.numpy()
    probs, seconds = out_of_fold_probs(w.train.features, y, len(w.classes), folds, seed, how)
    found = find_label_issues(y, probs, w.classes, w.train.names, filter_by=DEFAULT_FILTER)
    print(f"unflipped labels: {found.summary()} (out-of-fold probe accuracy {(probs.argmax(1) == y).mean():.3f})")
    for issue in found.issues:
        print(
            f"    {issue.name}: {issue.given} -> {issue.suggested} "
            f"(p_given {issue.p_given:.3f}, score {issue.score:.3f})"
        )
    others = {f: len(find_label_issues(y, probs, w.classes, w.train.names, filter_by=f)) for f in FILTERS}
    print("    flagged by each filter: " + ", ".join(f"{f} {n}" for f, n in others.items()))
    return {"flagged": len(found), "flagged_by_filter": others, "cv_seconds": seconds, "issues": found.rows()}


def summarise(rows: list[dict]) -> dict:
    """Per filter: mean precision, recall and flagged count over seeds, and whether both goals hold on the mean."""
    out = {}
    for filter_by in FILTERS:
        p = [r["filters"][filter_by]["precision"] for r in rows]
        r_ = [r["filters"][filter_by]["recall"] for r in rows]
        f = [r["filters"][filter_by]["flagged"] for r in rows]
        false = [r["filters"][filter_by]["false_flags"] for r in rows]
        theirs = [r["filters"][filter_by]["false_flags_unflipped_suspects"] for r in rows]
        out[filter_by] = {
            "precision_mean": float(np.mean(p)),
            "precision_min": float(np.min(p)),
            "recall_mean": float(np.mean(r_)),
            "recall_min": float(np.min(r_)),
            "flagged_mean": float(np.mean(f)),
            "false_flags_mean": float(np.mean(false)),
            "false_flags_unflipped_suspects_mean": float(np.mean(theirs)),
            "goal_met": bool(np.mean(p) >= GOAL and np.mean(r_) >= GOAL),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "weather")
    ap.add_argument("--backbones", type=Path, default=SHARED / "backbones")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/transfer-bench-features"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--noise", type=float, default=0.05, help="fraction of the training labels flipped")
    ap.add_argument("--folds", type=int, default=5, help="outer folds for the out-of-fold probabilities")
    ap.add_argument("--probs", choices=PROBS, default="nested", help="nested outer folds, or the probe's own CV")
    ap.add_argument("--views", choices=list(VIEWS), default="both", help="cached views the probe trains on")
    ap.add_argument("--tiny", action="store_true", help="12 photos per class, the first seed, 3 folds: a smoke run")
    args = ap.parse_args()
    reason = missing_reason(args.data, args.backbones)
    if reason:
        sys.exit(f"bench/label_issues.py: {reason}")
    torch.set_num_threads(1)
    seeds, folds = (args.seeds[:1], 3) if args.tiny else (args.seeds, args.folds)
    start = time.perf_counter()
    w = load_weather(args.data, args.backbones, args.cache_dir, per_class=12 if args.tiny else None)
    w.train.features = w.train.features[:, VIEWS[args.views]]
    print(f"{w.describe} ({w.seconds:.1f} s); {args.noise:.0%} of train labels flipped per seed; {folds}-fold probe")
    clean = score_clean(w, folds, seeds[0], args.probs)
    suspects = {row["index"] for row in clean["issues"]}
    rows = [score_seed(w, seed, args.noise, folds, suspects, args.probs) for seed in seeds]
    summary = summarise(rows)
    d = summary[DEFAULT_FILTER]
    print(
        f"mean over {len(seeds)} seeds ({DEFAULT_FILTER}): precision {d['precision_mean']:.2f} (min "
        f"{d['precision_min']:.2f}), recall {d['recall_mean']:.2f} (min {d['recall_min']:.2f}), goal "
        f"{'met' if d['goal_met'] else 'NOT met'}; {d['false_flags_mean']:.1f} false flags per seed, "
        f"{d['false_flags_unflipped_suspects_mean']:.1f} of them among the {clean['flagged']} flagged on the "
        "unflipped labels"
    )
    out = {
        "bench": "label_issues",
        "data": str(args.data),
        "train_images": len(w.train.labels),
        "views": int(w.train.features.shape[1]),
        "noise": args.noise,
        "folds": folds,
        "probs": args.probs,
        "seeds": seeds,
        "filter_by": DEFAULT_FILTER,
        "summary": summary,
        "per_seed": rows,
        "unflipped": clean,
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

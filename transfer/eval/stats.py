"""Honest numbers for small evaluation sets: bootstrap intervals, exact McNemar tests, the majority baseline.

On 153 images one image is 0.65 points, so every headline carries an interval and every comparison between two
models scored on the same images carries a paired test. All functions take numpy arrays, torch tensors or lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np
from scipy.stats import binomtest, bootstrap, norm


def _numpy(x) -> np.ndarray:
    """A numpy copy of a tensor (any device, with or without grad), an array or a list."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion: sensible at 0/n and n/n, where the bootstrap collapses to a point."""
    if n <= 0:
        raise ValueError("wilson_interval needs n > 0")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def bootstrap_ci(
    correct_or_values,
    stat: Callable = np.mean,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: str = "percentile",
) -> tuple[float, float]:
    """Bootstrap interval of `stat` over a 1-D sample (scipy.stats.bootstrap; `stat` must take `axis` like np.mean).

    Degenerate samples (every value the same) have no spread to resample: for 0/1 values with the default mean
    (all correct or all wrong) the answer is the Wilson score interval, because 20/20 correct does not prove
    100%; for any other constant sample or statistic both ends are the point value. BCa falls back to the
    percentile method when it cannot be computed (NaN).
    """
    values = _numpy(correct_or_values).astype(float).ravel()
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if np.all(values == values[0]):
        if stat is np.mean and values[0] in (0.0, 1.0):
            return wilson_interval(int(values.sum()), values.size, confidence)
        point = float(stat(values))
        return point, point

    def run(how: str) -> tuple[float, float]:
        res = bootstrap(
            (values,),
            lambda x, axis=-1: stat(x, axis=axis),
            n_resamples=n_resamples,
            vectorized=True,
            confidence_level=confidence,
            method=how,
            rng=np.random.default_rng(seed),
        )
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    low, high = run(method)
    if not (np.isfinite(low) and np.isfinite(high)) and method.lower() != "percentile":
        low, high = run("percentile")
    return low, high


def _resampled_counts(y_true, y_pred, num_classes: int, n_resamples: int, seed: int):
    """Per-resample (true count, predicted count, true positives), each n_resamples x K, resampling images.

    Each resample is a row of multinomial image weights, processed in chunks so memory stays near 16 MB.
    """
    n = y_true.size
    eye = np.eye(num_classes)
    true_hot, pred_hot = eye[y_true], eye[y_pred]  # N x K
    tp_hot = true_hot * (y_true == y_pred)[:, None]
    rng = np.random.default_rng(seed)
    chunk = max(1, int(2e6 // n))
    parts = []
    for start in range(0, n_resamples, chunk):
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_resamples - start)).astype(float)  # B x N
        parts.append((w @ true_hot, w @ pred_hot, w @ tp_hot))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (the metric is undefined there, not zero)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _interval(draws: np.ndarray, point: float | None, count: int, n: int, confidence: float) -> list[float] | None:
    """Percentile interval of defined draws; a Wilson interval on count/n when every draw is the same 0 or 1."""
    draws = draws[np.isfinite(draws)]
    if point is None or draws.size == 0:
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    if low == high and point in (0.0, 1.0) and n > 0:
        return list(wilson_interval(count, n, confidence))
    return [float(low), float(high)]


def metric_intervals(
    y_true,
    y_pred,
    num_classes: int,
    classes: Sequence[str],
    seed: int = 0,
    n_resamples: int = 2000,
    confidence: float = 0.95,
) -> dict:
    """Accuracy, balanced accuracy and per-class recall/precision, each with a bootstrap interval over images.

    Balanced accuracy is the mean recall over classes present in y_true (scikit-learn's definition). A metric that
    is undefined (recall of a class with no images, precision of a class never predicted) is None, and resamples
    where it is undefined are skipped. A proportion that is 0 or 1 in every resample gets a Wilson interval.
    """
    y_true, y_pred = _numpy(y_true).astype(int).ravel(), _numpy(y_pred).astype(int).ravel()
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and the same length, got {y_true.size}, {y_pred.size}")
    if len(classes) != num_classes:
        raise ValueError(f"classes has {len(classes)} names for num_classes={num_classes}")
    lo, hi = int(min(y_true.min(), y_pred.min())), int(max(y_true.max(), y_pred.max()))
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got values from {lo} to {hi}")
    n = y_true.size
    true_n = np.bincount(y_true, minlength=num_classes)
    pred_n = np.bincount(y_pred, minlength=num_classes)
    tp = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    recall, precision = _ratio(tp, true_n), _ratio(tp, pred_n)
    r_true, r_pred, r_tp = _resampled_counts(y_true, y_pred, num_classes, n_resamples, seed)
    r_recall, r_precision = _ratio(r_tp, r_true), _ratio(r_tp, r_pred)
    with np.errstate(invalid="ignore"):
        r_balanced = np.nanmean(r_recall, axis=1)

    def num(v: float) -> float | None:
        return None if np.isnan(v) else float(v)

    accuracy = float(tp.sum() / n)
    balanced = float(np.nanmean(recall))
    per_class = {}
    for k, name in enumerate(classes):
        r, p = num(recall[k]), num(precision[k])
        per_class[name] = {
            "support": int(true_n[k]),
            "recall": r,
            "recall_ci95": _interval(r_recall[:, k], r, int(tp[k]), int(true_n[k]), confidence),
            "precision": p,
            "precision_ci95": _interval(r_precision[:, k], p, int(tp[k]), int(pred_n[k]), confidence),
        }
    return {
        "n": n,
        "accuracy": accuracy,
        "accuracy_ci95": _interval(r_tp.sum(1) / n, accuracy, int(tp.sum()), n, confidence),
        "balanced_accuracy": balanced,
        "balanced_accuracy_ci95": _interval(r_balanced, balanced, int(tp.sum()), n, confidence),
        "per_class": per_class,
    }


def mcnemar_exact(correct_a, correct_b) -> dict:
    """Exact McNemar test on paired per-image correctness: b = only A right, c = only B right, binomial(b+c, 0.5)."""
    a, b_ = _numpy(correct_a).astype(bool).ravel(), _numpy(correct_b).astype(bool).ravel()
    if a.shape != b_.shape:
        raise ValueError(f"McNemar needs the same images for both models, got {a.size} and {b_.size} results")
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"b": b, "c": c, "n": int(a.size), "p_value": min(1.0, p)}


def format_p(p: float) -> str:
    """p to two significant digits ("0.003", "0.41", "1.0"); below 0.001 as "< 0.001"."""
    if p < 0.001:
        return "< 0.001"
    return "1.0" if p >= 0.995 else f"{p:.2g}"


def p_phrase(p: float) -> str:
    """'p = 0.042', or 'p < 0.001': a p-value as a sentence says it."""
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def compare_models(name_a: str, correct_a, name_b: str, correct_b, alpha: float = 0.05) -> str:
    """One-line verdict from an exact McNemar test, naming the winner only when p < alpha."""
    test = mcnemar_exact(correct_a, correct_b)
    p, n = test["p_value"], test["n"]
    if p < alpha and test["b"] != test["c"]:
        winner, loser = (name_a, name_b) if test["b"] > test["c"] else (name_b, name_a)
        return f"{winner} beats {loser}, {p_phrase(p)} (McNemar, {n} images)"
    return f"no detectable difference between {name_a} and {name_b} on {n} images ({p_phrase(p)})"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), for many pairwise tests on one set."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


def paired_table(names: Sequence[str], corrects: Sequence, alpha: float = 0.05) -> list[dict]:
    """McNemar for every pair of models: accuracies, discordant counts, p, Holm-adjusted p and the verdict line."""
    if len(names) != len(corrects):
        raise ValueError(f"{len(names)} names for {len(corrects)} result arrays")
    rows = []
    for i, j in combinations(range(len(names)), 2):
        test = mcnemar_exact(corrects[i], corrects[j])
        rows.append(
            {
                "model_a": names[i],
                "model_b": names[j],
                "accuracy_a": float(np.mean(_numpy(corrects[i]).astype(bool))),
                "accuracy_b": float(np.mean(_numpy(corrects[j]).astype(bool))),
                "only_a_right": test["b"],
                "only_b_right": test["c"],
                "n": test["n"],
                "p_value": test["p_value"],
                "verdict": compare_models(names[i], corrects[i], names[j], corrects[j], alpha),
            }
        )
    for row, adjusted in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
    return rows


def majority_baseline(y_train, y_eval) -> float:
    """Accuracy on y_eval of always predicting y_train's most common class (ties: the lowest class index)."""
    train, evaluated = _numpy(y_train).astype(int).ravel(), _numpy(y_eval).astype(int).ravel()
    if train.size == 0 or evaluated.size == 0:
        raise ValueError("majority_baseline needs non-empty training and evaluation labels")
    return float(np.mean(evaluated == np.bincount(train).argmax()))

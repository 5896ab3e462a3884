"""Would more images help? Fit accuracy against training-set size and say what doubling the data would likely gain.

Score the same recipe on nested, stratified subsets of train/ (learning_curve_subsets), fit acc(n) = a - b n^-c
(saturating at a <= 1), and read off acc(2n) - acc(n). With fewer than three sizes, or when the power law does
not converge, a straight line in log n stands in, and the sentence says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from transfer.atomic import save_figure_atomic
from transfer.errors import UserError

FLAT = 0.005  # a predicted gain under half a point reads as "the curve has flattened"


def _power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


def _fit_power_law(n: np.ndarray, acc: np.ndarray) -> tuple[float, float, float] | None:
    """Least squares for (a, b, c) within 0 <= a <= 1, b >= 0, 0.001 <= c <= 5, from a few starts; None if none fit."""
    a0 = min(1.0, float(acc.max()) + 0.02)
    best, best_sse = None, np.inf
    for c0 in (0.25, 0.5, 1.0):
        b0 = max((a0 - float(acc.min())) * float(n.min()) ** c0, 1e-3)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                params, _ = curve_fit(
                    _power_law, n, acc, p0=(a0, b0, c0), bounds=([0, 0, 1e-3], [1, np.inf, 5]), maxfev=5000
                )
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((_power_law(n, *params) - acc) ** 2))
        if np.all(np.isfinite(params)) and sse < best_sse:
            best, best_sse = tuple(float(p) for p in params), sse
    return best


def fit_learning_curve(sizes: Sequence[float], accuracies: Sequence[float]) -> dict:
    """Fit accuracy (a fraction in [0, 1]) against training-set size; repeated sizes (several seeds) are fine.

    Returns {"model": "power_law" | "log_linear" | "single_size", its parameters, "rmse" (of the fit on the
    points), "n_sizes" (distinct sizes), "sizes", "accuracies", "note"}.
    """
    n, acc = np.asarray(sizes, dtype=float).ravel(), np.asarray(accuracies, dtype=float).ravel()
    if n.size == 0 or n.size != acc.size:
        raise ValueError(f"need as many accuracies as sizes (and at least one), got {n.size} and {acc.size}")
    if np.any(n <= 0) or np.any(acc < 0) or np.any(acc > 1):
        raise ValueError("sizes must be > 0 and accuracies fractions in [0, 1] (not percentages)")
    fit = {"sizes": n.tolist(), "accuracies": acc.tolist(), "n_sizes": int(np.unique(n).size), "note": ""}
    if fit["n_sizes"] == 1:
        return {**fit, "model": "single_size", "mean": float(acc.mean()), "rmse": float(acc.std())}
    if fit["n_sizes"] >= 3:
        params = _fit_power_law(n, acc)
        if params is not None:
            a, b, c = params
            fit.update(model="power_law", a=a, b=b, c=c)
            fit["rmse"] = float(np.sqrt(np.mean((_power_law(n, a, b, c) - acc) ** 2)))
            return fit
        fit["note"] = "the power law did not converge"
    slope, intercept = np.polyfit(np.log(n), acc, 1)
    fit.update(model="log_linear", intercept=float(intercept), slope=float(slope))
    fit["rmse"] = float(np.sqrt(np.mean((intercept + slope * np.log(n) - acc) ** 2)))
    return fit


def predict_accuracy(fit: dict, n: float) -> float:
    """The fitted accuracy at n training images, clipped to [0, 1]; NaN when one size cannot predict."""
    if fit["model"] == "power_law":
        value = float(_power_law(np.asarray(float(n)), fit["a"], fit["b"], fit["c"]))
    elif fit["model"] == "log_linear":
        value = fit["intercept"] + fit["slope"] * math.log(n)
    else:
        return math.nan
    return min(1.0, max(0.0, value))


def predict_gain(fit: dict, n_now: float) -> float:
    """Expected accuracy gain (a fraction: 0.021 = 2.1 points) from doubling the training set from n_now."""
    return predict_accuracy(fit, 2 * n_now) - predict_accuracy(fit, n_now)


def _method(fit: dict) -> str:
    sizes = f"{fit['n_sizes']} subset sizes"
    if fit["model"] == "power_law":
        return f"fitted power law on {sizes}"
    note = f"; {fit['note']}" if fit["note"] else ""
    return f"log-linear fit on {sizes}{note}"


def doubling_sentence(fit: dict, n_now: int) -> str:
    """One honest sentence on what doubling the training images would give, or why the curve cannot say."""
    span = f"(from {n_now} to {2 * n_now})"
    if fit["model"] == "single_size":
        return (
            "One training-set size cannot predict what more images would give: score nested subsets "
            "(learning_curve_subsets) at three sizes or more."
        )
    gain, noise = predict_gain(fit, n_now), fit["rmse"]
    if noise > max(gain, FLAT):
        return (
            f"The learning curve is too noisy to say what doubling the training images {span} would give: the fit "
            f"misses the measured accuracies by {100 * noise:.1f} points (RMS), more than the {100 * max(gain, 0):.1f} "
            f"points it predicts ({_method(fit)})."
        )
    if gain < 0:
        return (
            f"Accuracy did not rise with more images, so the curve cannot promise a gain from doubling the training "
            f"images {span}; the differences are likely noise ({_method(fit)})."
        )
    if gain < FLAT:
        return (
            f"Doubling the training images {span} would likely gain less than half a point: the learning curve has "
            f"flattened ({_method(fit)})."
        )
    return f"Doubling the training images {span} would likely gain about {100 * gain:.1f} points ({_method(fit)})."


def learning_curve_subsets(
    labels, fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0), seed: int = 0
) -> list[list[int]]:
    """Nested, stratified subsets of training indices, one per fraction, every class keeping at least one image.

    Each class is shuffled once (seeded) and each subset takes the first round(fraction * class size) of it, so a
    smaller fraction's subset always lies inside a larger one's and class proportions stay as in the full set.
    """
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).ravel()
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise UserError(f"learning curve fractions must each be in (0, 1], got {bad[0]}: e.g. [0.1, 0.25, 0.5, 1.0]")
    if y.size == 0:
        raise ValueError("learning_curve_subsets needs at least one label")
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    subsets = []
    for f in fractions:
        take = [order[: max(1, math.floor(f * order.size + 0.5))] for order in orders]
        subsets.append(sorted(int(i) for i in np.concatenate(take)))
    return subsets


def plot_learning_curve(points: Sequence[tuple[float, float]], fit: dict, path: str | Path, title: str = "") -> Path:
    """Measured (size, accuracy) points and the fitted curve out to twice the largest size (PNG, log x axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = np.array([p[0] for p in points], dtype=float)
    accs = np.array([p[1] for p in points], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(sizes, 100 * accs, color="black", zorder=3, label="measured")
    if fit["model"] != "single_size" and sizes.size:
        grid = np.geomspace(sizes.min(), 2 * sizes.max(), 100)
        curve = 100 * np.array([predict_accuracy(fit, n) for n in grid])
        seen = grid <= sizes.max()
        ax.plot(grid[seen], curve[seen], label=_method(fit))
        ax.plot(grid[~seen], curve[~seen], "--", color=ax.lines[-1].get_color(), label="extrapolated")
    ax.set_xscale("log")
    ax.set(xlabel="training images", ylabel="accuracy (%)", title=title or "learning curve")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)
    return path

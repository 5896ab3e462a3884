"""Are the predicted probabilities honest? Expected calibration error, reliability bins and temperature scaling.

A fine-tuned network on a few hundred images is usually over-confident; one temperature fitted on held-out logits
(Guo et al. 2017) fixes most of that without changing a single prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from transfer.atomic import save_figure_atomic


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _confidence_and_hits(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """Top-class probability and whether the top class is right, per image."""
    p, y = _numpy(probs).astype(float), _numpy(labels).astype(int).ravel()
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"probs must be N x K with N = len(labels) = {y.size}, got shape {p.shape}")
    if p.size and (p.min() < -1e-6 or p.max() > 1 + 1e-6):
        raise ValueError("probs must be probabilities in [0, 1]: pass logits.softmax(1), not logits")
    return p.max(1), p.argmax(1) == y


def reliability_bins(probs, labels, n_bins: int = 15) -> list[dict]:
    """Equal-width confidence bins (lower, upper]: mean confidence, accuracy and count (None when empty)."""
    conf, hits = _confidence_and_hits(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.digitize(conf, edges[1:-1], right=True)  # bin i holds (edges[i], edges[i+1]]; 0 goes to bin 0
    bins = []
    for i in range(n_bins):
        inside = which == i
        count = int(inside.sum())
        bins.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "count": count,
                "confidence": float(conf[inside].mean()) if count else None,
                "accuracy": float(hits[inside].mean()) if count else None,
            }
        )
    return bins


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean gap |accuracy - confidence| over equal-width bins (0 = calibrated)."""
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        raise ValueError("expected_calibration_error needs at least one image")
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / total)


def _logits_and_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z, y = _numpy(logits).astype(np.float64), _numpy(labels).astype(int).ravel()
    if z.ndim != 2 or z.shape[0] != y.size or y.size == 0:
        raise ValueError(f"logits must be N x K with N = len(labels) = {y.size} > 0, got shape {z.shape}")
    return z, y


def _mean_nll(z: np.ndarray, y: np.ndarray, inverse_temperature: float) -> float:
    scaled = inverse_temperature * z
    return float(np.mean(logsumexp(scaled, axis=1) - scaled[np.arange(y.size), y]))


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of labels under softmax(logits / temperature)."""
    return _mean_nll(*_logits_and_labels(logits, labels), 1.0 / temperature)


def fit_temperature(logits, labels) -> float:
    """The T > 0 minimising NLL of softmax(logits / T); T > 1 softens over-confident logits.

    NLL is convex in 1/T, so a bounded scalar search on log(1/T) in [-7, 7] finds the optimum (T from 0.001 to
    1100; perfectly separable logits run to the lower bound). Fit on logits the model did not train on (val/ or
    cross-validation folds), never on test/.
    """
    z, y = _logits_and_labels(logits, labels)
    res = minimize_scalar(
        lambda s: _mean_nll(z, y, float(np.exp(s))), bounds=(-7.0, 7.0), method="bounded", options={"xatol": 1e-6}
    )
    return float(np.exp(-res.x))


def plot_reliability(bins: list[dict], path: str | Path, title: str = "") -> Path:
    """Reliability diagram (PNG): accuracy per confidence bin against the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = [b for b in bins if b["count"]]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    lefts = [b["lower"] for b in full]
    widths = [b["upper"] - b["lower"] for b in full]
    ax.bar(lefts, [b["accuracy"] for b in full], width=widths, align="edge", edgecolor="black", label="accuracy")
    gaps = [b["confidence"] - b["accuracy"] for b in full]
    ax.bar(
        lefts,
        gaps,
        bottom=[b["accuracy"] for b in full],
        width=widths,
        align="edge",
        color="red",
        alpha=0.3,
        label="gap to mean confidence",  # the legend names every colour drawn
    )
    total = sum(b["count"] for b in full)
    if total:
        ece = sum(b["count"] * abs(g) for b, g in zip(full, gaps, strict=True)) / total
        ax.text(0.04, 0.92, f"ECE = {100 * ece:.1f} points, {total} images", transform=ax.transAxes)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title or "reliability")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)
    return path

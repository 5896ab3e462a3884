"""LogME: how well a body's frozen features suit a labelled task, from the features alone, in a fraction of a second.

You, Liu, Wang & Long (2021), "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML. For
each class k, a Bayesian linear model y_k = F w + noise with priors w ~ N(0, 1/alpha), noise ~ N(0, 1/beta) on the
one-hot targets; alpha and beta are set by maximising the model evidence p(y_k | F, alpha, beta) with MacKay's
fixed-point updates (closed form after one SVD of F), and the score is the maximised log evidence per image, averaged
over the classes. No head is trained and nothing is cross-validated, so it ranks many bodies cheaply; the paper shows
it correlates with fine-tuned accuracy, and this toolkit uses it only as a pre-filter before the cross-validated probe
(studies/rank_backbones.py) scores the survivors. The features are used as given (the paper's protocol); their
scale is absorbed by alpha.
"""

from __future__ import annotations

import numpy as np

# The reference code stops after 11 updates; with fewer images than feature dimensions (605 photos x 1280 MobileNet
# features) the updates creep and 11 stop short of the maximum (tests/test_rank_backbones.py: ~1.5 nats on 50 x 120).
# Each update costs O(min(N, D)), so they run to convergence here.
MAX_ITER = 10_000
TOLERANCE = 1e-7  # relative change of alpha and beta that stops the updates
EPSILON = 1e-5  # keeps the updates finite when a residual or the weights vanish (as in the reference code): where the
# features explain nothing the evidence keeps rising as alpha grows, and alpha stops near gamma / EPSILON


def class_evidence(u: np.ndarray, s: np.ndarray, y: np.ndarray, d: int) -> tuple[float, float, float]:
    """Maximised log evidence / N of one target `y` (N) given the thin SVD F = U diag(s) V^T (u: N x r, s: r) of the
    N x D features; returns (evidence per image, alpha, beta)."""
    n = len(y)
    sigma = s**2  # the nonzero eigenvalues of F^T F; the other d - r are 0
    z = u.T @ y  # y in the left singular basis: r
    outside = max(float(y @ y - z @ z), 0.0)  # the part of y no linear model of F can fit
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_ITER):
        m = beta * s * z / (alpha + beta * sigma)  # posterior mean of w in the right singular basis: r
        gamma = float((beta * sigma / (alpha + beta * sigma)).sum())  # effective number of parameters
        m2 = float(m @ m)
        residual = float(((z - s * m) ** 2).sum()) + outside  # ||y - F m||^2
        new_alpha, new_beta = gamma / (m2 + EPSILON), (n - gamma) / (residual + EPSILON)
        done = abs(new_alpha - alpha) / alpha < TOLERANCE and abs(new_beta - beta) / beta < TOLERANCE
        alpha, beta = new_alpha, new_beta
        if done:
            break
    m = beta * s * z / (alpha + beta * sigma)
    m2 = float(m @ m)
    residual = float(((z - s * m) ** 2).sum()) + outside
    log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(s)) * np.log(
        alpha
    )  # log |A|, A = alpha + beta F^T F
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - log_det / 2
        - beta / 2 * residual
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    return float(evidence) / n, alpha, beta


def logme(features: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
    """LogME of N x D features for integer labels (N): the mean over classes of the maximised log evidence per image
    of a Bayesian linear model of that class's one-hot target. Higher = features better suited; compare bodies on
    the same images only."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).ravel()
    if f.ndim != 2 or f.shape[0] != len(y) or len(y) < 2:
        raise ValueError(f"features must be N x D with N = {len(y)} >= 2 labels, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features hold NaN or infinite values")
    k = int(num_classes if num_classes is not None else y.max() + 1)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(f.shape) * np.finfo(np.float64).eps  # numerical rank
    u, s = u[:, keep], s[keep]
    scores = [class_evidence(u, s, (y == c).astype(np.float64), f.shape[1])[0] for c in range(k)]
    return float(np.mean(scores))

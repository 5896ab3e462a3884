"""Multinomial logistic regression with an L2 penalty, solved to convergence by full-batch L-BFGS in torch.

The pieces under `probe.py`: standardise features, shrink a wide problem to its row space, minimise
    mean cross-entropy + lambda / 2 * ||W||^2      (bias not penalised; scikit-learn's C = 1 / (lambda * n))
with `torch.optim.LBFGS` (strong Wolfe line search; a small CPU problem with SciPy's L-BFGS-B on NumPy arrays, where
torch's per-op dispatch was nearly all of the time), and fold the standardisation back into one `nn.Linear`.

Why the row-space shrink is exact: with an L2 penalty the optimal W lies in the span of the training rows, so for
X = R^T Q^T (QR of X^T, Q: D x n orthonormal) the problem in Z = X Q = R^T (n x n) with W = A Q^T has the same loss,
the same penalty (||A|| = ||W||) and the same gradient norm. 400 images x 2048 features train as 320 x 320.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

DEGENERATE_REL = 1e-6  # a column whose std is below this fraction of |mean| (or exactly 0) carries no signal
SMALL_PROBLEM = 1_000_000  # B x n x r x C at or below which a CPU problem is solved by SciPy on NumPy arrays
SMALL_CPU_WORK = 4_000_000  # rows x width below which one CPU thread beats several (tiny matmuls only spin)


def column_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-column mean, std (population, as StandardScaler) and a mask of columns that vary."""
    mean = x.mean(0)
    std = x.std(0, unbiased=False) if len(x) > 1 else torch.zeros_like(mean)
    varies = (std > 0) & (std > DEGENERATE_REL * mean.abs())
    return mean, std, varies


@dataclass
class Standardiser:
    """(x - mean) / scale with scale 1 where a column does not vary (scikit-learn's StandardScaler rule)."""

    mean: torch.Tensor  # D
    scale: torch.Tensor  # D

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardiser:
        mean, std, varies = column_stats(x)
        return cls(mean, torch.where(varies, std, torch.ones_like(std)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


@dataclass
class RowSpace:
    """Coordinates of a wide problem in the span of its training rows (identity when rows >= width)."""

    basis: torch.Tensor | None  # D x r orthonormal, or None: the problem keeps its D columns

    @classmethod
    def fit(cls, x: torch.Tensor) -> tuple[RowSpace, torch.Tensor]:
        """The row space of `x` (n x D) and `x` in it (n x r)."""
        n, d = x.shape
        if n >= d:
            return cls(None), x
        q, r = torch.linalg.qr(x.T)  # D x n, n x n: x = r^T q^T
        return cls(q), r.T

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.basis is None else x @ self.basis  # n x r

    def lift(self, weight: torch.Tensor) -> torch.Tensor:
        return weight if self.basis is None else weight @ self.basis.T  # C x D


@dataclass
class LogisticFit:
    weight: torch.Tensor  # B x C x r, in the space the problems were solved in
    bias: torch.Tensor  # B x C
    grad_norm: float  # L2 norm of the objective's full gradient at the solution (all B problems together)
    iterations: int


def prior_bias(onehot: torch.Tensor, row_weight: torch.Tensor) -> torch.Tensor:
    """B x C log class frequencies (absent classes: a quarter of the rarest possible): the optimum when W = 0."""
    freq = (onehot * row_weight[..., None]).sum(1)  # B x C
    floor = 0.25 * row_weight.max(1, keepdim=True).values
    return torch.log(torch.maximum(freq, floor))


def stack_problems(
    zs: list[torch.Tensor], labels: list[torch.Tensor], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B problems of n_b x r_b rows as one zero-padded B x n x r batch, with one-hot labels and mean-loss row weights
    (padding rows weigh 0; padding columns are 0, so their weights feel only the penalty and stay 0)."""
    n, r = max(len(z) for z in zs), max(z.shape[1] for z in zs)
    ref = zs[0]
    z_all = ref.new_zeros(len(zs), n, r)
    onehot = ref.new_zeros(len(zs), n, num_classes)
    row_weight = ref.new_zeros(len(zs), n)
    for b, (z, y) in enumerate(zip(zs, labels, strict=True)):
        z_all[b, : len(z), : z.shape[1]] = z
        onehot[b, : len(z)] = nn.functional.one_hot(y, num_classes).to(ref.dtype)
        row_weight[b, : len(z)] = 1.0 / len(z)
    return z_all, onehot, row_weight


def fit_logistic(
    z: torch.Tensor,
    onehot: torch.Tensor,
    row_weight: torch.Tensor,
    l2: float,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_iter: int = 1000,
    tolerance_grad: float = 1e-7,
) -> LogisticFit:
    """Minimise, for B independent problems at once, sum_i w_i CE_i + l2 / 2 * ||W||^2 over (W, b) by L-BFGS.

    z: B x n x r, onehot: B x n x C, row_weight: B x n (1 / n_b per real row, 0 for padding: the mean loss).
    Cross-validation folds solve as one problem with a block-diagonal Hessian: one L-BFGS run, one batched matmul
    per evaluation instead of five. The closure writes the analytic gradient (no autograd graph per evaluation).
    `init` is (B x C x r, B x C); by default W = 0 and b = the log prior.
    """
    nb, _, r = z.shape
    c = onehot.shape[2]
    size = nb * c * r
    theta = torch.zeros(size + nb * c, dtype=z.dtype, device=z.device)
    if init is None:
        theta[size:] = prior_bias(onehot, row_weight).reshape(-1)
    else:
        theta[:size] = init[0].reshape(-1)
        theta[size:] = init[1].reshape(-1)
    if z.device.type == "cpu" and z.numel() * c <= SMALL_PROBLEM:
        return _fit_logistic_scipy(z, onehot, row_weight, l2, theta, max_iter, tolerance_grad)
    theta.requires_grad_(True)
    weight, bias = theta[:size].view(nb, c, r), theta[size:].view(nb, 1, c)  # updated in place by the optimiser
    w = row_weight[..., None]  # B x n x 1

    def closure() -> torch.Tensor:
        with torch.no_grad():
            logits = torch.baddbmm(bias, z, weight.transpose(1, 2))  # B x n x C
            lse = torch.logsumexp(logits, dim=2, keepdim=True)  # B x n x 1
            nll = lse.squeeze(2) - (logits * onehot).sum(2)  # B x n
            loss = (row_weight * nll).sum() + 0.5 * l2 * weight.pow(2).sum()
            resid = (torch.exp(logits - lse) - onehot) * w  # B x n x C
            grad = torch.empty_like(theta)
            grad[:size] = (torch.bmm(resid.transpose(1, 2), z) + l2 * weight).reshape(-1)
            grad[size:] = resid.sum(1).reshape(-1)
            theta.grad = grad
        return loss

    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        max_eval=max_iter * 2,
        tolerance_grad=tolerance_grad,
        tolerance_change=1e-12,
        history_size=10,
        line_search_fn="strong_wolfe",
    )
    opt.step(closure)
    iterations = int(opt.state[theta].get("n_iter", 0))
    closure()
    grad_norm = float(theta.grad.norm())
    theta = theta.detach()
    return LogisticFit(theta[:size].view(nb, c, r).clone(), theta[size:].view(nb, c).clone(), grad_norm, iterations)


def _fit_logistic_scipy(
    z: torch.Tensor,
    onehot: torch.Tensor,
    row_weight: torch.Tensor,
    l2: float,
    theta: torch.Tensor,
    max_iter: int,
    tolerance_grad: float,
) -> LogisticFit:
    """`fit_logistic` for a small CPU problem: the same objective and gradient on NumPy arrays, minimised by SciPy's
    L-BFGS-B (the solver behind scikit-learn's lbfgs) with the same stopping rules. On a 50-image probe an iteration
    of torch's LBFGS is ~100 small tensor ops (0.35 ms, nearly all dispatch); here it is ~25 us."""
    import scipy.optimize  # on the first small problem only

    nb, _, r = z.shape
    c = onehot.shape[2]
    size = nb * c * r
    x, y, rw = z.numpy(), onehot.numpy(), row_weight.numpy()

    def loss_and_grad(t: np.ndarray) -> tuple[float, np.ndarray]:
        weight, bias = t[:size].reshape(nb, c, r), t[size:].reshape(nb, 1, c)
        logits = x @ weight.transpose(0, 2, 1) + bias  # B x n x C
        top = logits.max(2, keepdims=True)
        e = np.exp(logits - top)
        total = e.sum(2, keepdims=True)
        nll = (np.log(total) + top)[..., 0] - (logits * y).sum(2)  # B x n
        resid = (e / total - y) * rw[..., None]  # B x n x C
        grad = np.concatenate([(resid.transpose(0, 2, 1) @ x + l2 * weight).ravel(), resid.sum(1).ravel()])
        return float((rw * nll).sum() + 0.5 * l2 * (weight * weight).sum()), grad

    res = scipy.optimize.minimize(
        loss_and_grad,
        theta.numpy(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxfun": max_iter * 2, "gtol": tolerance_grad, "ftol": 1e-12, "maxcor": 10},
    )
    out = torch.from_numpy(res.x)
    grad_norm = float(np.linalg.norm(loss_and_grad(res.x)[1]))
    return LogisticFit(out[:size].view(nb, c, r).clone(), out[size:].view(nb, c).clone(), grad_norm, int(res.nit))


def fold_into_linear(weight: torch.Tensor, bias: torch.Tensor, std: Standardiser) -> nn.Linear:
    """An nn.Linear on RAW features giving standardise-then-(weight, bias) logits: W' = W / s, b' = b - W' @ mean."""
    w = weight.double() / std.scale.double()  # C x D
    b = bias.double() - w @ std.mean.double()  # C
    linear = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        linear.weight.copy_(w.float())
        linear.bias.copy_(b.float())
    return linear


@contextlib.contextmanager
def cpu_threads_for(device: torch.device, rows: int, width: int) -> Iterator[None]:
    """One CPU thread for small problems (on a busy machine more threads only spin); leave big ones alone."""
    before = torch.get_num_threads()
    if device.type == "cpu" and rows * width <= SMALL_CPU_WORK:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mean_log_loss(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean -log p(true class), clamped at 1e-15 as scikit-learn's log_loss."""
    p = probs[torch.arange(len(labels), device=probs.device), labels].clamp_min(1e-15)
    return float(-p.log().mean()) if len(labels) else math.nan

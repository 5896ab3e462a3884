"""The converged linear probe: convergence, agreement with scikit-learn, the folded layer, folds, and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from transfer.errors import UserError
from transfer.training.logistic_lbfgs import Standardiser, fold_into_linear
from transfer.training.probe import fit_linear_probe, probe_predict_proba, split_rows

GRAD_BOUND = 1e-4  # L2 norm; the refit stops at max |gradient| <= 1e-7, i.e. at most sqrt(#params) * 1e-7


def blobs(n: int = 120, d: int = 16, c: int = 3, views: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU features with a class signal; views are noisy copies of one image's features."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    base = torch.randn(n, d, generator=g) + 1.5 * torch.randn(c, d, generator=g)[y]
    x = base[:, None] + 0.3 * torch.randn(n, views, d, generator=g)
    return torch.relu(x).squeeze(1) if views == 1 else torch.relu(x), y


def digits_split(n: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return train_test_split(x[:n], y[:n], test_size=0.25, stratify=y[:n], random_state=0)


def test_refit_converges_to_a_small_gradient() -> None:
    x, y = blobs()
    result = fit_linear_probe(x, y, 3, l2_grid=[1e-1, 1e-2, 1e-3], folds=3)
    assert result.grad_norm < GRAD_BOUND
    assert 0 < result.iterations < 1000
    assert result.linear.weight.shape == (3, 16) and result.linear.bias.shape == (3,)
    assert [row["l2"] for row in result.grid] == [1e-1, 1e-2, 1e-3]
    assert result.l2 in (1e-1, 1e-2, 1e-3) and result.folds == 3 and len(result.cv_accuracy_per_fold) == 3
    assert result.cv_accuracy == pytest.approx(float(np.mean(result.cv_accuracy_per_fold)))


def probe_vs_sklearn_cv(x_tr, x_te, y_tr, y_te, grid: list[float], folds: int) -> tuple[float, float]:
    """Held-out accuracy of the probe and of LogisticRegressionCV over the same lambdas (C = 1 / (lambda * n))."""
    probe = fit_linear_probe(torch.tensor(x_tr, dtype=torch.float32), torch.tensor(y_tr), 10, l2_grid=grid, folds=folds)
    probe_acc = float((probe_predict_proba(probe.linear, torch.tensor(x_te)).argmax(1).numpy() == y_te).mean())
    scaler = StandardScaler().fit(x_tr)
    n_fold = len(x_tr) * (folds - 1) / folds  # rows each CV fit sees
    sk = LogisticRegressionCV(Cs=[1 / (lam * n_fold) for lam in grid], cv=folds, max_iter=2000, scoring="accuracy")
    sk.fit(scaler.transform(x_tr), y_tr)
    return probe_acc, float(sk.score(scaler.transform(x_te), y_te))


def test_accuracy_matches_logistic_regression_cv_on_digits() -> None:
    probe_acc, sk_acc = probe_vs_sklearn_cv(*digits_split(600), [1e-1, 1e-2, 1e-3, 1e-4], folds=3)
    assert probe_acc > 0.9
    assert abs(probe_acc - sk_acc) <= 0.01


@pytest.mark.slow
def test_accuracy_matches_logistic_regression_cv_on_all_digits() -> None:
    probe_acc, sk_acc = probe_vs_sklearn_cv(*digits_split(), [float(v) for v in np.logspace(-6, 1, 10)], folds=5)
    assert probe_acc > 0.95
    assert abs(probe_acc - sk_acc) <= 0.01


def test_fixed_lambda_agrees_with_sklearn_at_c_equal_one_over_lambda_n() -> None:
    # sklearn minimises 1/2 ||W||^2 + C * sum of losses = C n (mean loss + 1 / (2 C n) ||W||^2): lambda = 1 / (C n)
    x_tr, x_te, y_tr, _ = digits_split(600)
    lam = 1e-2
    probe = fit_linear_probe(torch.tensor(x_tr), torch.tensor(y_tr), 10, l2_grid=[lam], folds=2)
    scaler = StandardScaler().fit(x_tr)
    sk = LogisticRegression(C=1 / (lam * len(x_tr)), tol=1e-10, max_iter=10_000).fit(scaler.transform(x_tr), y_tr)
    ours = probe_predict_proba(probe.linear, torch.tensor(x_te)).double().numpy()
    theirs = sk.predict_proba(scaler.transform(x_te))
    assert np.abs(ours - theirs).max() < 1e-4
    raw_coef = sk.coef_ / scaler.scale_  # their weights on raw features
    assert np.abs(probe.linear.weight.detach().double().numpy() - raw_coef).max() < 1e-3 * np.abs(raw_coef).max()


def test_folded_layer_on_raw_features_gives_the_standardised_logits() -> None:
    g = torch.Generator().manual_seed(1)
    raw = torch.relu(torch.randn(50, 32, generator=g) * 2 + 1)
    raw[:, 5] = 3.0  # a constant column: scale 1, as StandardScaler
    std = Standardiser.fit(raw.double())
    weight, bias = (
        torch.randn(4, 32, generator=g, dtype=torch.float64),
        torch.randn(4, generator=g, dtype=torch.float64),
    )
    expected = std(raw.double()) @ weight.T + bias
    linear = fold_into_linear(weight, bias, std)
    with torch.no_grad():
        got = linear(raw).double()
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert std.scale[5] == 1.0


def test_views_of_one_image_never_straddle_folds() -> None:
    n, k = 30, 4
    labels = np.arange(n) % 3
    groups = np.arange(n) // 2  # pairs of images belong together too
    for tr, va in split_rows(labels, groups, k, 3, seed=0):
        assert len(np.intersect1d(tr // k, va // k)) == 0  # no image with views on both sides
        assert len(np.intersect1d(groups[tr // k], groups[va // k])) == 0  # no group on both sides
        assert sorted(np.concatenate([tr, va]).tolist()) == list(range(n * k))
        assert (np.bincount(va // k)[np.unique(va // k)] == k).all()  # every view of a validation image
    x, y = blobs(n=n, d=8, views=k)
    result = fit_linear_probe(x, y, 3, groups=groups, l2_grid=[1e-2], folds=3)
    fold_of = np.array(result.fold_of_image)
    assert sorted(set(fold_of.tolist())) == [0, 1, 2]
    assert all(len(set(fold_of[groups == gid])) == 1 for gid in np.unique(groups))


def test_a_small_class_gets_fewer_folds_with_a_note() -> None:
    x, y = blobs(n=63, d=8)
    y = torch.where(torch.arange(63) < 60, y, 2)
    y[torch.nonzero(y == 2).flatten()[:-3]] = 0  # class 2 ('misty') keeps 3 images
    result = fit_linear_probe(x, y, 3, l2_grid=[1e-1, 1e-2], class_names=["tigger", "neither", "misty"])
    assert int((y == 2).sum()) == 3
    assert result.folds == 3 and len(result.cv_accuracy_per_fold) == 3
    assert "class 'misty' has 3 images: 3-fold cross-validation instead of 5" in result.notes


def test_a_class_with_one_image_skips_cross_validation() -> None:
    x, y = blobs(n=40, d=8, c=2)
    y[0] = 2
    result = fit_linear_probe(x, y, 3, class_names=["a", "b", "solo"])
    assert result.folds == 0 and result.grid == [] and math.isnan(result.cv_accuracy)
    assert result.l2 == pytest.approx(1 / 40)
    assert result.notes == [
        "class 'solo' has 1 image: no cross-validation; l2 = 1 / rows = 0.025 (scikit-learn's default C=1)"
    ]
    assert result.grad_norm < GRAD_BOUND


def test_identical_features_are_refused() -> None:
    x = torch.full((20, 3, 8), 0.25)
    with pytest.raises(UserError, match=r"^the frozen features are identical for every image: the backbone"):
        fit_linear_probe(x, torch.arange(20) % 2, 2)


def test_non_finite_features_are_refused() -> None:
    x, y = blobs(n=20, d=8)
    x[3, 2] = float("nan")
    with pytest.raises(UserError, match=r"^the frozen features hold 1 NaN or infinite values"):
        fit_linear_probe(x, y, 3)


def test_a_fixed_seed_reproduces_the_result() -> None:
    x, y = blobs(n=60, d=8)
    a, b = (fit_linear_probe(x, y, 3, l2_grid=[1e-1, 1e-3], folds=3, seed=7) for _ in range(2))
    assert torch.equal(a.linear.weight, b.linear.weight) and torch.equal(a.linear.bias, b.linear.bias)
    assert a.grid == b.grid and a.fold_of_image == b.fold_of_image and a.l2 == b.l2
    c = fit_linear_probe(x, y, 3, l2_grid=[1e-1, 1e-3], folds=3, seed=8)
    assert c.fold_of_image != a.fold_of_image


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_fit_matches_the_cpu_fit() -> None:
    x, y = blobs(n=90, d=12, views=2)
    cpu = fit_linear_probe(x, y, 3, l2_grid=[1e-1, 1e-2], folds=3)
    gpu = fit_linear_probe(x, y, 3, l2_grid=[1e-1, 1e-2], folds=3, device="cuda")
    assert gpu.linear.weight.device.type == "cpu" and gpu.l2 == cpu.l2
    assert torch.allclose(gpu.linear.weight, cpu.linear.weight, atol=1e-4)


def test_views_auto_keeps_the_mirror_rows_only_when_cross_validation_says_they_help():
    """features.views=auto: the head engine compares the probe on the centre view alone and on every view."""
    from dataclasses import replace

    from transfer.features.config import FeatureConfig
    from transfer.training.config import TrainConfig
    from transfer.training.head_engine import train_head

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    centre = torch.randn(40, 6, generator=gen) + labels[:, None] * 1.0
    cfg = replace(TrainConfig(), features=FeatureConfig(views="auto"))
    noise = torch.stack([centre, torch.randn(40, 6, generator=gen) * 3], 1)  # a second "view" that is pure noise
    result = train_head(torch.nn.Linear(6, 2), noise, labels, cfg)
    assert result.views.startswith("features.views=auto: the centre view alone (CV ")
    assert result.probe is not None and result.selected_by.endswith(result.views)
    helpful = torch.stack([centre, centre + torch.randn(40, 6, generator=gen) * 0.3], 1)  # another look, as a flip
    result = train_head(torch.nn.Linear(6, 2), helpful, labels, cfg)
    assert result.views.startswith("features.views=auto: ")
    one = replace(cfg, features=FeatureConfig(views="1"))
    assert train_head(torch.nn.Linear(6, 2), noise, labels, one).views == ""  # views=1: no choice made


@pytest.mark.parametrize("init", [False, True])
def test_the_small_problem_path_reaches_the_torch_solvers_optimum(monkeypatch, init: bool) -> None:
    """A small CPU problem is solved by SciPy's L-BFGS-B on NumPy arrays (torch's per-op dispatch dominated there):
    the same objective, so the same optimum as torch's LBFGS to the stopping tolerance, from a cold or a warm start."""
    import transfer.training.logistic_lbfgs as lbfgs

    x, y = blobs(n=60, d=12, c=3)
    z = Standardiser.fit(x.double())(x.double())
    problem = lbfgs.stack_problems([z[:30], z[30:]], [y[:30], y[30:]], 3)  # two folds, one batch
    f64 = torch.float64
    start = (torch.full((2, 3, 12), 0.01, dtype=f64), torch.zeros(2, 3, dtype=f64)) if init else None
    assert z.numel() * 3 <= lbfgs.SMALL_PROBLEM
    small = lbfgs.fit_logistic(*problem, 1e-3, init=start)
    monkeypatch.setattr(lbfgs, "SMALL_PROBLEM", 0)  # the torch path
    big = lbfgs.fit_logistic(*problem, 1e-3, init=start)
    assert small.grad_norm < GRAD_BOUND and big.grad_norm < GRAD_BOUND
    assert torch.allclose(small.weight, big.weight, atol=1e-4) and torch.allclose(small.bias, big.bias, atol=1e-4)
    assert small.weight.shape == (2, 3, 12) and small.bias.shape == (2, 3) and small.iterations > 0


def test_the_same_probe_on_the_same_rows_is_fitted_once_per_process(monkeypatch) -> None:
    """A study asks for one probe several times (the frozen regime, the `pooled` stage probe, the baseline): the
    answer is a pure function of its inputs, so the second ask copies the first answer, and any changed input fits."""
    import transfer.training.probe as probe

    monkeypatch.setattr(probe, "_FITTED", type(probe._FITTED)())
    solves = []
    real = probe.fit_logistic
    monkeypatch.setattr(probe, "fit_logistic", lambda *a, **k: solves.append(1) or real(*a, **k))
    x, y = blobs(n=60, d=8, c=3)
    first = fit_linear_probe(x, y, 3, l2_grid=[1e-1, 1e-2], folds=3)
    n = len(solves)
    with torch.no_grad():
        first.linear.weight.zero_()  # the caller's copy: the kept answer is not touched
    again = fit_linear_probe(x.clone(), y.clone(), 3, l2_grid=[1e-1, 1e-2], folds=3)
    assert len(solves) == n and again.l2 == first.l2 and again.grid == first.grid
    assert bool(again.linear.weight.abs().sum() > 0)
    fit_linear_probe(x, y, 3, l2_grid=[1e-1, 1e-2], folds=3, seed=1)  # another seed: other folds
    assert len(solves) > n

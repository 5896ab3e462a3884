"""Learning curves: the power law recovered from noiseless points, fallbacks, honest sentences, nested subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transfer.errors import UserError
from transfer.eval.learning_curve import (
    doubling_sentence,
    fit_learning_curve,
    learning_curve_subsets,
    plot_learning_curve,
    predict_accuracy,
    predict_gain,
)

SIZES = np.array([40, 80, 160, 320, 640])


def _curve(n, a=0.92, b=1.5, c=0.6):
    return a - b * np.power(n, -c)


def test_power_law_recovered_from_noiseless_points():
    fit = fit_learning_curve(SIZES, _curve(SIZES))
    assert fit["model"] == "power_law" and fit["n_sizes"] == 5
    assert (fit["a"], fit["b"], fit["c"]) == pytest.approx((0.92, 1.5, 0.6), rel=1e-3)
    assert fit["rmse"] < 1e-6
    assert predict_gain(fit, 320) == pytest.approx(_curve(640) - _curve(320), abs=1e-5)


def test_doubling_sentence_known_answer():
    sizes = np.array([40, 80, 160, 320])
    fit = fit_learning_curve(sizes, _curve(sizes))
    assert 100 * (_curve(640) - _curve(320)) == pytest.approx(1.602, abs=1e-3)  # 1.5 * (320^-0.6 - 640^-0.6)
    assert doubling_sentence(fit, 320) == (
        "Doubling the training images (from 320 to 640) would likely gain about 1.6 points "
        "(fitted power law on 4 subset sizes)."
    )


def test_two_sizes_fall_back_to_log_linear():
    fit = fit_learning_curve([100, 200], [0.70, 0.75])
    assert fit["model"] == "log_linear"
    assert fit["slope"] == pytest.approx(0.05 / np.log(2))
    assert predict_gain(fit, 200) == pytest.approx(0.05)
    assert doubling_sentence(fit, 200).endswith("gain about 5.0 points (log-linear fit on 2 subset sizes).")


def test_flat_curve_says_so():
    fit = fit_learning_curve(SIZES, _curve(SIZES, a=0.9, b=0.5, c=1.5))
    sentence = doubling_sentence(fit, 640)
    assert "less than half a point" in sentence and "flattened" in sentence


def test_noisy_curve_says_so():
    fit = fit_learning_curve([50, 50, 100, 100, 200, 200], [0.60, 0.80, 0.62, 0.81, 0.63, 0.80])
    sentence = doubling_sentence(fit, 200)
    assert sentence.startswith("The learning curve is too noisy to say what doubling the training images")
    assert "(RMS)" in sentence


def test_falling_accuracy_promises_nothing():
    fit = fit_learning_curve([100, 200], [0.80, 0.75])
    assert predict_gain(fit, 200) < 0
    assert doubling_sentence(fit, 200).startswith("Accuracy did not rise with more images")


def test_single_size_cannot_predict():
    fit = fit_learning_curve([100, 100], [0.7, 0.72])
    assert fit["model"] == "single_size" and np.isnan(predict_gain(fit, 100))
    assert doubling_sentence(fit, 100).startswith("One training-set size cannot predict")


def test_fit_rejects_percentages():
    with pytest.raises(ValueError, match="fractions"):
        fit_learning_curve([10, 20, 40], [60, 70, 75])


def test_predictions_stay_in_range():
    fit = fit_learning_curve([10, 20], [0.9, 0.99])
    assert predict_accuracy(fit, 10_000) == 1.0


def test_subsets_nested_stratified_and_keep_every_class():
    labels = np.array([0] * 100 + [1] * 40 + [2] * 3)
    subsets = learning_curve_subsets(labels, fractions=(0.1, 0.25, 0.5, 1.0), seed=0)
    assert [len(s) for s in subsets] == [10 + 4 + 1, 25 + 10 + 1, 50 + 20 + 2, 143]
    for small, large in zip(subsets, subsets[1:], strict=False):
        assert set(small) <= set(large)
    for s in subsets:
        assert set(labels[s]) == {0, 1, 2} and len(set(s)) == len(s)
    assert subsets[-1] == list(range(143))
    assert learning_curve_subsets(torch.tensor(labels), seed=0) == subsets
    assert learning_curve_subsets(labels, seed=1)[0] != subsets[0]


def test_subsets_reject_bad_fraction():
    with pytest.raises(UserError, match=r"fractions must each be in \(0, 1\], got 1.5"):
        learning_curve_subsets([0, 1], fractions=(0.5, 1.5))


def test_plot_learning_curve_writes_png(tmp_path):
    fit = fit_learning_curve(SIZES, _curve(SIZES))
    out = plot_learning_curve(list(zip(SIZES, _curve(SIZES), strict=True)), fit, tmp_path / "lc.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

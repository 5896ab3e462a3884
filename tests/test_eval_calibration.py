"""Calibration: ECE on calibrated and over-confident synthetic data, bins, temperature scaling, the PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transfer.eval.calibration import (
    expected_calibration_error,
    fit_temperature,
    nll,
    plot_reliability,
    reliability_bins,
)


def _calibrated_logits(n: int = 4000, k: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits) itself: calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, k, generator=g)
    labels = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    return logits, labels


def test_ece_near_zero_when_calibrated():
    logits, labels = _calibrated_logits(n=20000)
    assert expected_calibration_error(logits.softmax(1), labels) < 0.02


def test_ece_known_answer_for_overconfidence():
    probs = np.tile([0.9, 0.1], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)  # 90% confident, 60% right
    assert expected_calibration_error(probs, labels) == pytest.approx(0.3)


def test_reliability_bins_edges_and_counts():
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.7, 0.3], [0.72, 0.28]])
    bins = reliability_bins(probs, np.array([0, 0, 1, 0]), n_bins=10)
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 4
    assert bins[0]["lower"] == 0.0 and bins[-1]["upper"] == 1.0
    assert bins[4]["count"] == 1 and bins[4]["upper"] == pytest.approx(0.5)  # 0.5 falls in (0.4, 0.5]
    assert bins[9]["count"] == 1 and bins[9]["accuracy"] == 1.0  # confidence 1.0 in the last bin
    assert bins[6]["count"] == 1 and bins[7]["count"] == 1  # 0.7 in (0.6, 0.7]; 0.72 in (0.7, 0.8]
    assert bins[6]["accuracy"] == 0.0 and bins[7]["confidence"] == pytest.approx(0.72)
    assert bins[1] == {"lower": 0.1, "upper": 0.2, "count": 0, "confidence": None, "accuracy": None}


def test_ece_rejects_logits():
    with pytest.raises(ValueError, match="softmax"):
        expected_calibration_error(np.array([[3.0, -1.0]]), np.array([0]))


def test_temperature_softens_overconfident_logits_and_lowers_nll():
    logits, labels = _calibrated_logits()
    sharp = 3.0 * logits
    t = fit_temperature(sharp, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(sharp, labels, t) < nll(sharp, labels) - 0.1
    assert expected_calibration_error((sharp / t).softmax(1), labels) < expected_calibration_error(
        sharp.softmax(1), labels
    )


def test_temperature_below_one_for_underconfident_logits():
    logits, labels = _calibrated_logits(seed=1)
    t = fit_temperature(logits / 2, labels.numpy())  # numpy input too
    assert t == pytest.approx(0.5, rel=0.1)


def test_temperature_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="N x K"):
        fit_temperature(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


def test_plot_reliability_writes_png(tmp_path):
    logits, labels = _calibrated_logits(n=500)
    out = plot_reliability(reliability_bins(logits.softmax(1), labels), tmp_path / "plots" / "reliability.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

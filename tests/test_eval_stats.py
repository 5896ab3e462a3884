"""Known answers for the evaluation statistics: McNemar p-values, interval coverage and width, verdict lines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transfer.eval.stats import (
    bootstrap_ci,
    compare_models,
    holm,
    majority_baseline,
    mcnemar_exact,
    metric_intervals,
    paired_table,
    wilson_interval,
)


def _pair(b: int, c: int, both_right: int, both_wrong: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of models A and B with b images only A gets right and c only B gets right."""
    a = [1] * b + [0] * c + [1] * both_right + [0] * both_wrong
    bb = [0] * b + [1] * c + [1] * both_right + [0] * both_wrong
    return np.array(a, bool), np.array(bb, bool)


def test_mcnemar_known_p_value():
    a, b = _pair(1, 9, both_right=100)
    result = mcnemar_exact(a, b)
    assert (result["b"], result["c"], result["n"]) == (1, 9, 110)
    assert result["p_value"] == pytest.approx(22 / 1024, abs=1e-9)  # 0.02148: 2 * P(X <= 1), X ~ Bin(10, 1/2)


def test_mcnemar_equal_discordant_counts_and_no_discordance_give_one():
    assert mcnemar_exact(*_pair(5, 5, both_right=20))["p_value"] == pytest.approx(1.0)
    assert mcnemar_exact(*_pair(0, 0, both_right=20, both_wrong=3))["p_value"] == 1.0


def test_mcnemar_accepts_tensors_and_rejects_different_lengths():
    a, b = _pair(1, 9, both_right=5)
    assert mcnemar_exact(torch.tensor(a), torch.tensor(b))["b"] == 1
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact(a, b[:-1])


def test_compare_models_verdict_lines():
    a, b = _pair(9, 1, both_right=140, both_wrong=3)
    assert compare_models("full", a, "frozen", b) == "full beats frozen, p = 0.021 (McNemar, 153 images)"
    assert compare_models("frozen", b, "full", a) == "full beats frozen, p = 0.021 (McNemar, 153 images)"
    a, b = _pair(4, 4, both_right=145)
    assert (
        compare_models("full", a, "frozen", b)
        == "no detectable difference between full and frozen on 153 images (p = 1.0)"
    )
    a, b = _pair(30, 0, both_right=123)
    assert compare_models("full", a, "frozen", b) == "full beats frozen, p < 0.001 (McNemar, 153 images)"


def test_compare_models_not_significant_shows_p():
    a, b = _pair(6, 3, both_right=144)  # p = 0.508
    assert (
        compare_models("full", a, "frozen", b)
        == "no detectable difference between full and frozen on 153 images (p = 0.51)"
    )


def test_paired_table_all_pairs_with_holm():
    base, _ = _pair(0, 0, both_right=50, both_wrong=50)
    better = base.copy()
    better[50:70] = True
    names = ["frozen", "partial", "full"]
    rows = paired_table(names, [base, base.copy(), better])
    assert [(r["model_a"], r["model_b"]) for r in rows] == [
        ("frozen", "partial"),
        ("frozen", "full"),
        ("partial", "full"),
    ]
    assert rows[1]["only_b_right"] == 20 and rows[1]["only_a_right"] == 0
    assert rows[1]["accuracy_a"] == 0.5 and rows[1]["accuracy_b"] == 0.7
    assert rows[1]["verdict"].startswith("full beats frozen")
    assert rows[1]["p_holm"] == pytest.approx(3 * rows[1]["p_value"])  # smallest of 3 p-values: times 3
    assert rows[0]["p_holm"] == 1.0


def test_holm_known_answer():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_bootstrap_ci_contains_point_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = rng.random(60) < 0.8
    large = rng.random(2000) < 0.8
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < 0.3 * (hi_s - lo_s)  # width ~ 1/sqrt(n): sqrt(60/2000) = 0.17
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 * np.sqrt(0.8 * 0.2 / 2000), rel=0.15)


def test_bootstrap_ci_seeded_and_bca():
    values = np.random.default_rng(2).random(100) < 0.7
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    lo, hi = bootstrap_ci(values, method="BCa")
    assert lo < values.mean() < hi


def test_bootstrap_ci_degenerate_samples():
    lo, hi = bootstrap_ci(np.ones(20))
    assert (lo, hi) == pytest.approx((20 / (20 + 1.959964**2), 1.0))  # Wilson at 20/20: n / (n + z^2)
    lo, hi = bootstrap_ci(torch.zeros(20))
    assert lo == 0.0 and hi == pytest.approx(1.959964**2 / (20 + 1.959964**2))
    assert bootstrap_ci(np.full(10, 3.5)) == (3.5, 3.5)
    assert bootstrap_ci(np.ones(10), stat=np.median) == (1.0, 1.0)


def test_wilson_known_answer():
    lo, hi = wilson_interval(8, 10)  # textbook: 0.490 .. 0.943
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)


def test_metric_intervals_values_and_intervals():
    y_true = np.array([0] * 50 + [1] * 30 + [2] * 20)
    y_pred = y_true.copy()
    y_pred[:10] = 1  # 10 class-0 images called class 1
    out = metric_intervals(y_true, y_pred, 3, ["a", "b", "c"], n_resamples=500)
    assert out["n"] == 100 and out["accuracy"] == pytest.approx(0.9)
    assert out["balanced_accuracy"] == pytest.approx((0.8 + 1 + 1) / 3)
    a, b, c = out["per_class"]["a"], out["per_class"]["b"], out["per_class"]["c"]
    assert a["recall"] == pytest.approx(0.8) and a["precision"] == 1.0
    assert b["precision"] == pytest.approx(30 / 40) and b["support"] == 30
    for value, ci in [
        (out["accuracy"], out["accuracy_ci95"]),
        (out["balanced_accuracy"], out["balanced_accuracy_ci95"]),
        (a["recall"], a["recall_ci95"]),
        (b["precision"], b["precision_ci95"]),
    ]:
        assert ci[0] <= value <= ci[1] and ci[0] < ci[1]
    assert c["recall_ci95"] == pytest.approx(list(wilson_interval(20, 20)))  # always right: Wilson, not [1, 1]


def test_metric_intervals_undefined_metrics_are_none():
    y_true = torch.tensor([0, 0, 1, 1, 0, 1])
    y_pred = torch.tensor([0, 1, 1, 1, 0, 0])
    out = metric_intervals(y_true, y_pred, 3, ["a", "b", "never"], n_resamples=200)
    never = out["per_class"]["never"]
    assert never == {"support": 0, "recall": None, "recall_ci95": None, "precision": None, "precision_ci95": None}
    assert out["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_metric_intervals_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        metric_intervals([0, 1], [0], 2, ["a", "b"])
    with pytest.raises(ValueError, match="lie in"):
        metric_intervals([0, 2], [0, 1], 2, ["a", "b"])


def test_majority_baseline():
    assert majority_baseline([0, 0, 1, 2], [0, 1, 0, 0]) == 0.75
    assert majority_baseline(torch.tensor([2, 2, 1]), torch.tensor([1, 1, 1, 2])) == 0.25
    assert majority_baseline([1, 0], [0, 1, 1]) == pytest.approx(1 / 3)  # tie: lowest index

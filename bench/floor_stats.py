"""Paired tests for bench/finetune_floor.py, in plain Python (no scipy): the bench must not depend on the toolkit's
internals, which are being restructured, and these two tests fit in a few lines each."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """Exact two-sided McNemar on paired per-image correctness: b = only A right, c = only B right, Bin(b+c, 1/2)."""
    if len(correct_a) != len(correct_b):
        raise ValueError(f"McNemar needs the same images for both, got {len(correct_a)} and {len(correct_b)}")
    b = sum(1 for x, y in zip(correct_a, correct_b, strict=True) if x and not y)
    c = sum(1 for x, y in zip(correct_a, correct_b, strict=True) if y and not x)
    n = b + c
    if n == 0:
        return {"b": 0, "c": 0, "n": len(correct_a), "p_value": 1.0}
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return {"b": b, "c": c, "n": len(correct_a), "p_value": min(1.0, 2 * tail / 2**n)}  # exact big-int ratio


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (Numerical Recipes, modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def paired_t(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided paired t-test of mean(a - b) = 0 (one pair per seed). p is None with fewer than 2 pairs, or when
    every pair differs by the same amount (zero spread)."""
    if len(a) != len(b):
        raise ValueError(f"paired t needs pairs, got {len(a)} and {len(b)} values")
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n if n else float("nan")
    if n < 2:
        return {"mean_diff": mean, "t": None, "df": n - 1, "p_value": None}
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0.0:  # every seed gives the same difference (deterministic runs): no spread, no test; see McNemar
        return {"mean_diff": mean, "t": None, "df": n - 1, "p_value": 1.0 if mean == 0 else None}
    t = mean / (sd / math.sqrt(n))
    df = n - 1
    return {"mean_diff": mean, "t": t, "df": df, "p_value": betainc(df / 2.0, 0.5, df / (df + t * t))}

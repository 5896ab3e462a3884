"""Smoke tests of bench/speed.py (issue 22): every part runs in its --quick settings, prints its line and puts its
figures in the JSON line, each ratio being the quotient of the times beside it. No timing is asserted."""

from __future__ import annotations

import pytest

from tests.bench_run import run_bench
from tests.shared_data import need_shared_data


def test_the_study_and_start_up_parts_print_their_figures_and_ratios():
    lines, out = run_bench("speed.py", "--quick", "--only", "study", "--only", "startup")
    assert out["bench"] == "speed" and out["quick"] is True
    assert set(out) == {"bench", "quick", "cpus", "study", "startup"}
    study = out["study"]
    assert study["ratio"] == pytest.approx(study["cold_s"] / study["plain_s"])
    assert (study["goal_s"], study["goal_ratio"]) == (15, 1.5)
    assert all(study[k] > 0 for k in ("cold_s", "warm_s", "plain_s"))
    assert any(line.startswith("default study: ") and "plain loop doing the same work" in line for line in lines)
    start = out["startup"]
    assert start["offline_error_s"] > 0 and start["help_s"] > 0
    assert (start["goal_offline_s"], start["goal_help_s"]) == (1.0, 0.5)
    assert any(line.startswith("start-up: the offline error in ") for line in lines)


@pytest.mark.slow
def test_the_frozen_and_auto_parts_print_their_figures_and_ratios():
    need_shared_data()
    lines, out = run_bench("speed.py", "--quick", "--only", "frozen", "--only", "auto")
    frozen = out["frozen"]
    assert frozen["ratio"] == pytest.approx(frozen["first_s"] / frozen["extract_s"])
    assert frozen["again_ratio"] == pytest.approx(frozen["again_s"] / frozen["first_s"])
    assert any(line.startswith("frozen run on weather-small: ") for line in lines)
    auto = out["auto"]
    assert auto["budget_s"] == 10 and auto["goal"] == 1.1 and auto["seconds"] > 0
    assert any(line.startswith("regime=auto: ") for line in lines)

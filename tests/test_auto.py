"""regime=auto: evidence on the training images, a reproducible choice, the budget respected and said."""

from __future__ import annotations

import pytest
import torch

from tests.requests import fit_request
from tests.synthetic import write_image_folder
from transfer.studies.auto import _decide
from transfer.studies.fit import run_fit


def test_the_most_accurate_wins_ties_go_cheaper_and_the_paired_test_is_said():
    frozen = torch.tensor([True] * 8 + [False] * 2)
    full = torch.tensor([True] * 9 + [False] * 1)
    chosen, reason = _decide({"frozen": frozen, "full": full}, 10)
    assert chosen == "full" and "no detectable difference" in reason and "not significant" in reason
    chosen, _ = _decide({"frozen": frozen, "partial": frozen.clone(), "full": frozen.clone()}, 10)
    assert chosen == "frozen"
    full_big = torch.tensor([True] * 100)
    frozen_big = torch.tensor([True] * 60 + [False] * 40)
    chosen, reason = _decide({"frozen": frozen_big, "full": full_big}, 100)
    assert chosen == "full" and "full beats frozen, p" in reason and "not significant" not in reason


def test_a_budget_too_small_for_a_fine_tune_gives_frozen_and_says_so(tmp_path):
    root = write_image_folder(tmp_path / "data", n=10)
    req = fit_request(
        tmp_path / "run",
        "data=folder",
        f"data.root={root}",
        "regime=auto",
        "auto.budget_s=1",
        "augment=none",
        "trainer.max_epochs=3",
    )
    report = run_fit(req)
    auto = report["auto"]
    assert auto["chosen"] == "frozen" and "left no time for a fine-tune" in auto["reason"]
    skipped = [r for r in auto["evidence"] if r["regime"] in ("partial", "full")]
    assert len(skipped) == 2 and all(r["note"].startswith("skipped") for r in skipped)
    assert report["best"]["regime"] == "frozen"
    assert any(r["evidence"].startswith("linear probe, penultimate") for r in auto["evidence"])


@pytest.mark.slow
def test_auto_measures_every_regime_and_its_choice_is_reproducible(tmp_path):
    root = write_image_folder(tmp_path / "data", n=12)
    args = (
        "data=folder",
        f"data.root={root}",
        "regime=auto",
        "auto.budget_s=60",
        "augment=none",
        "trainer.max_epochs=4",
    )
    first = run_fit(fit_request(tmp_path / "a", *args))["auto"]
    second = run_fit(fit_request(tmp_path / "b", *args))["auto"]
    regimes = [r["regime"] for r in first["evidence"] if r["evidence"] == "candidate"]
    assert regimes == ["frozen", "partial", "full"]
    assert all("accuracy" in r for r in first["evidence"] if r["evidence"] == "candidate")
    assert first["chosen"] == second["chosen"]
    assert [r.get("accuracy") for r in first["evidence"]] == [r.get("accuracy") for r in second["evidence"]]


def test_budget_notes_add_up_no_negative_seconds_and_an_overrun_is_stated():
    from transfer.studies.auto import allowance_note, skipped_note

    assert skipped_note(-6.2, -3.1) == "skipped: the budget was spent"
    assert skipped_note(0.0, 0.0) == "skipped: the budget was spent"
    assert skipped_note(7.0, 3.5) == "skipped: 4 s of the budget for it, under the 5 s a fine-tune needs"
    assert allowance_note(18.0, 42.0) == "18 s allowed, took 42 s: 24 s over (set-up and scoring)"
    assert allowance_note(40.0, 41.0) == "40 s allowed (stopped at its share of the budget)"  # within 10%: agree
    assert allowance_note(40.0, 12.0) == "40 s allowed"

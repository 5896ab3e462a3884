"""regime=auto: k-fold evidence on the training images, a fine-tune chosen only when it beats frozen, the budget
respected and said."""

from __future__ import annotations

import pytest
import torch

from tests.requests import fit_request
from tests.synthetic import write_image_folder
from transfer.studies.auto import decide, mcnemar_exact_counts
from transfer.studies.fit import run_fit


def test_a_fine_tune_is_chosen_only_when_it_beats_frozen_and_ties_go_cheaper():
    frozen = torch.tensor([True] * 8 + [False] * 2)
    full = torch.tensor([True] * 9 + [False] * 1)
    chosen, reason = decide({"frozen": frozen, "full": full})
    assert chosen == "frozen" and reason.startswith("full and frozen cannot be told apart: 0.900 vs frozen 0.800")
    assert "McNemar p = 1" in reason and "frozen, as good and far cheaper" in reason
    chosen, _ = decide({"frozen": frozen, "partial": frozen.clone(), "full": frozen.clone()})
    assert chosen == "frozen"
    full_big, frozen_big = torch.tensor([True] * 100), torch.tensor([True] * 60 + [False] * 40)
    chosen, reason = decide({"frozen": frozen_big, "full": full_big})
    assert chosen == "full" and reason.startswith("full beats frozen: 1.000 vs frozen 0.600 over 100 training images")
    assert "40 images better, 0 worse" in reason


def test_repeats_do_not_count_the_same_images_twice_as_evidence():
    """Two repeats of 100 images: the discordant counts are averaged, so the test sees 100 images, not 200."""
    frozen = torch.tensor(([True] * 94 + [False] * 6) * 2)
    partial = torch.tensor(([True] * 100) * 2)
    chosen, reason = decide({"frozen": frozen, "partial": partial}, repeats=2)
    assert chosen == "partial" and "over 100 training images" in reason and "6 images better, 0 worse" in reason
    assert mcnemar_exact_counts(6, 0) == pytest.approx(2 / 2**6)


def test_a_budget_too_small_for_a_fine_tune_gives_frozen_and_says_why(tmp_path):
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
    assert auto["chosen"] == "frozen" and auto["reason"].startswith(
        "no fine-tune could be measured within auto.budget_s=1"
    )
    fine = [r for r in auto["evidence"] if r["regime"] in ("partial", "full")]
    assert len(fine) == 2 and all(r["note"].startswith(("not started", "skipped", "stopped: fold 1 of")) for r in fine)
    assert all("accuracy" not in r for r in fine)
    assert report["best"]["regime"] == "frozen"
    assert auto["images"] == 24 and auto["folds"] >= 2  # write_image_folder: 3 classes x 10, 20% held out as val


@pytest.mark.slow
def test_auto_cross_validates_every_regime_on_the_same_folds_and_its_choice_is_reproducible(tmp_path):
    root = write_image_folder(tmp_path / "data", n=12)
    args = (
        "data=folder",
        f"data.root={root}",
        "regime=auto",
        "auto.budget_s=120",
        "augment=none",
        "trainer.max_epochs=4",
    )
    first = run_fit(fit_request(tmp_path / "a", *args))["auto"]
    second = run_fit(fit_request(tmp_path / "b", *args))["auto"]
    rows = [r for r in first["evidence"] if r["evidence"] == "candidate"]
    assert [r["regime"] for r in rows] == ["frozen", "partial", "full"]
    assert all(r.get("n") == first["images"] * first["repeats"] for r in rows)  # every image predicted each repeat
    assert first["chosen"] == second["chosen"]
    assert [r.get("accuracy") for r in first["evidence"]] == [r.get("accuracy") for r in second["evidence"]]
    spent = [r["seconds"] / r["allowed_s"] for r in rows if r.get("allowed_s")]
    assert all(s <= 1.1 for s in spent)  # every fine-tune within 10% of its allowance


def test_a_run_starts_the_same_whether_its_body_was_built_earlier_or_now():
    """regime=auto's final model is the chosen regime's own run: the head's initial weights come from the seed, not
    from whatever building the body drew from the generator (a prebuilt body draws nothing; a fresh one draws its
    random init before its weights load). On digits this left auto 4 points away from `regime=full seed=2`."""
    from torch import nn

    from transfer.studies.study import seeded_start
    from transfer.training.config import HeadConfig, Regime

    prebuilt = nn.Linear(8, 8)

    def fresh(_regime):
        nn.Linear(8, 8)  # a constructor's random init, overwritten by loaded weights
        return prebuilt

    regime = Regime(name="full", frozen_stages=0, body_lr_factor=0.1)
    prebuilt.num_features = 8
    _, head_a = seeded_start(lambda _r: prebuilt, regime, HeadConfig(), 3, seed=2)
    _, head_b = seeded_start(fresh, regime, HeadConfig(), 3, seed=2)
    _, head_c = seeded_start(fresh, regime, HeadConfig(), 3, seed=3)
    state_a, state_b, state_c = head_a.state_dict(), head_b.state_dict(), head_c.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not all(torch.equal(state_a[k], state_c[k]) for k in state_a)


def test_a_fine_tune_that_trains_a_superset_costs_at_least_the_smaller_one():
    """regime=auto skips full's timing runs when partial's projection already exceeds full's allowance: full trains
    every stage partial trains (on weather at 224 px: 4,460 s projected for partial, 4,981 s for full; 11 s of timing
    runs saved)."""
    from transfer.studies.auto import trains_superset
    from transfer.training.config import Regime

    full = Regime(name="full", frozen_stages=0, body_lr_factor=0.1)
    partial = Regime(name="partial", frozen_stages=2, body_lr_factor=0.1)
    frozen = Regime(name="frozen", frozen_stages=None, body_lr_factor=0.0)
    assert trains_superset(full, partial) and not trains_superset(partial, full)
    assert not trains_superset(full, frozen) and trains_superset(partial, partial)


def test_a_fine_tune_whose_forward_passes_alone_exceed_the_allowance_is_not_timed():
    """Every epoch forwards each training image at least once, at no less than the frozen features' time per image:
    when that floor exceeds the allowance, auto says so without the two timing runs (at 224 px on 2 CPU cores they
    cost 25 s of a 77-s auto run)."""
    from transfer.data.labelled import LabelledImages
    from transfer.studies.auto import _Folds, _run_candidate
    from transfer.training.config import Regime, TrainConfig

    def no_body(_regime):
        raise AssertionError("the timing runs must not start")

    n = 20
    train = LabelledImages(torch.zeros(n, 3, 8, 8, dtype=torch.uint8), torch.arange(n) % 2, ["a", "b"], list("x" * n))
    folds = _Folds([i % 5 for i in range(n)], 5)
    cfg = TrainConfig()
    regime = Regime(name="full", frozen_stages=0, body_lr_factor=0.1)
    epochs = cfg.trainer.max_epochs
    allowed = 0.5 * 5 * epochs * 16 * 0.01  # half the floor: 16 images train in each fold, 4 are held out
    out, note, floor = _run_candidate(no_body, regime, train, cfg, folds, {}, allowed=allowed, forward_s=0.01)
    assert out is None and floor == pytest.approx(5 * epochs * 16 * 0.01)
    assert note.startswith(f"not started: the forward passes alone take at least 5 folds x {epochs} epochs x 16 images")

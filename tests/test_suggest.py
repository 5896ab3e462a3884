"""What to label next (transfer/eval/suggest.py): exact behaviour on small synthetic pools, and bench/suggest.py in
its tiny mode on the real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from bench_run import run_bench

from tests.shared_data import need_shared_data
from transfer.eval.suggest import diversity_space, suggest_to_label, uncertainty

ROOT = Path(__file__).resolve().parents[1]


def _pool(seed: int = 0, n: int = 30, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Random features and probabilities of a 3-class model over a pool."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    logits = rng.normal(size=(n, 3)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, feats


def test_uncertainty_values():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(uncertainty(p, "margin"), [1.0, 0.0, 0.7, 1.0])
    np.testing.assert_allclose(uncertainty(p, "entropy")[[1, 3]], [0.0, 1.0], atol=1e-9)
    assert uncertainty(p, "entropy")[0] == pytest.approx(np.log(2) / np.log(3))
    np.testing.assert_array_equal(uncertainty(p, "none"), np.ones(4))
    with pytest.raises(ValueError, match="measure='least'"):
        uncertainty(p, "least")


def test_without_diversity_the_most_uncertain_come_first():
    probs, feats = _pool()
    got = suggest_to_label(probs, feats, 10, diversity=0.0)
    u = uncertainty(probs, "margin")
    np.testing.assert_array_equal(got.order, np.argsort(-u, kind="stable")[:10])
    np.testing.assert_allclose(got.uncertainty, u[got.order])
    assert list(got.scores) == sorted(got.scores, reverse=True)


def test_diversity_does_not_pick_near_duplicates():
    probs, feats = _pool(n=20)
    probs[0] = [0.34, 0.33, 0.33]  # the most uncertain image ...
    rng = np.random.default_rng(1)
    copies = feats[0] + 1e-3 * rng.normal(size=(5, feats.shape[1]))  # ... and five near-copies of it, as uncertain
    feats_d = np.concatenate([feats, copies]).astype(np.float32)
    probs_d = np.concatenate([probs, np.repeat(probs[:1], 5, axis=0)])
    dups = {0, 20, 21, 22, 23, 24}
    plain = suggest_to_label(probs_d, feats_d, 6, diversity=0.0)
    assert set(plain.order.tolist()) == dups  # uncertainty alone takes all six copies
    diverse = suggest_to_label(probs_d, feats_d, 6)
    assert len(dups & set(diverse.order.tolist())) == 1  # one of them, then other images
    assert diverse.order[0] in dups and diverse.distance[0] == pytest.approx(2.0)  # nothing labelled: max distance


def test_images_next_to_labelled_ones_wait():
    probs, feats = _pool()
    u = uncertainty(probs, "margin")
    top = int(np.argmax(u))
    got = suggest_to_label(probs, feats, 5, labelled_features=feats[[top]] * 3.0)  # same direction: same image
    assert top not in got.order.tolist()
    first = suggest_to_label(probs, feats, 5, labelled_features=np.empty((0, feats.shape[1])))
    assert first.order[0] == top  # an empty labelled set is no labelled set


def test_measure_none_is_k_center_greedy():
    probs, feats = _pool(n=25)
    lab = np.random.default_rng(3).normal(size=(4, feats.shape[1]))
    got = suggest_to_label(probs, feats, 8, labelled_features=lab, measure="none")
    pool, centres = diversity_space(feats, lab)
    centres, expect = list(centres), []
    for _ in range(8):  # brute force: the pool point farthest from every centre so far
        d = np.array([min(np.linalg.norm(x - c) for c in centres) for x in pool])
        d[expect] = -1
        expect.append(int(np.argmax(d)))
        centres.append(pool[expect[-1]])
    assert got.order.tolist() == expect
    np.testing.assert_allclose(got.scores, got.distance)


def test_diversity_space_is_centred_and_unit():
    _, feats = _pool()
    pool, lab = diversity_space(np.abs(feats) + 5.0)  # post-ReLU-like: every raw cosine is near 1
    np.testing.assert_allclose(np.linalg.norm(pool, axis=1), 1.0, rtol=1e-5)
    assert lab.shape == (0, feats.shape[1])
    assert (pool @ pool.T)[np.triu_indices(len(pool), 1)].mean() < 0.1  # centred: no shared direction left


def test_small_pool_bad_inputs_rows_csv_and_tensors(tmp_path):
    probs, feats = _pool(n=4)
    got = suggest_to_label(torch.as_tensor(probs), torch.as_tensor(feats), 10)
    assert sorted(got.order.tolist()) == [0, 1, 2, 3] and len(got) == 4
    rows = got.rows([f"img{i}.jpg" for i in range(4)])
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and rows[0]["name"] == f"img{got.order[0]}.jpg"
    assert set(rows[0]) == {"rank", "index", "name", "score", "uncertainty", "distance"}
    lines = got.to_csv(tmp_path / "suggest.csv", [f"img{i}.jpg" for i in range(4)]).read_text().splitlines()
    assert lines[0] == "rank,index,name,score,uncertainty,distance" and len(lines) == 5
    assert lines[1].startswith(f"1,{got.order[0]},img{got.order[0]}.jpg,")
    with pytest.raises(ValueError, match="n must be >= 1"):
        suggest_to_label(probs, feats, 0)
    with pytest.raises(ValueError, match="4 probability rows for 3 feature rows"):
        suggest_to_label(probs, feats[:3], 2)
    with pytest.raises(ValueError, match="NaN"):
        suggest_to_label(probs, feats * np.nan, 2)
    with pytest.raises(ValueError, match="width"):
        suggest_to_label(probs, feats, 2, labelled_features=feats[:, :3])
    with pytest.raises(ValueError, match="diversity"):
        suggest_to_label(probs, feats, 2, diversity=-1)


@pytest.mark.slow  # decodes the 1,009 photos, extracts 96, fits 12 probes: ~45 s on 2 cores
def test_suggest_bench_tiny(tmp_path):
    need_shared_data()
    _, out = run_bench("suggest.py", "--tiny", "--cache-dir", str(tmp_path / "cache"), timeout=600)
    assert out["pool_images"] == 48 and out["test_images"] == 48 and out["sizes"] == [8, 16, 24]
    assert set(out["mean_accuracy"]) == {"random", "suggest", "margin", "k-center"}
    c = out["vs_random"]["suggest"]
    assert len(c["per_step_gain_points"]) == 2 and c["wins"] + c["ties"] + c["losses"] == 2

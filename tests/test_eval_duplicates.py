"""Near duplicates: planted pairs are found, random data has none, blocks change nothing, memory stays bounded."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from transfer.eval.duplicates import label_conflicts, leakage_pairs, near_duplicates


def _random(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_planted_pairs_found_and_nothing_else():
    emb = _random(200)
    emb[150] = emb[3] + 0.01 * _random(1, seed=1)[0]
    emb[77] = 2.5 * emb[10]  # a rescaled copy: cosine 1
    pairs = near_duplicates(emb)
    assert [(i, j) for i, j, _ in pairs] == [(10, 77), (3, 150)]
    assert pairs[0][2] == pytest.approx(1.0, abs=1e-5) and 0.99 < pairs[1][2] < 1.0


def test_random_data_has_no_pairs_above_threshold():
    assert near_duplicates(_random(500, d=64)) == []
    assert leakage_pairs(_random(300, d=64), _random(100, d=64, seed=5)) == []


def test_blocks_do_not_change_the_answer():
    emb = _random(120, d=8)  # low width: many pairs above a low threshold
    whole = near_duplicates(emb, threshold=0.8, max_pairs=None, block_mb=64)
    tiny = near_duplicates(torch.from_numpy(emb), threshold=0.8, max_pairs=None, block_mb=1e-6)  # 1 row a block
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = unit @ unit.T
    expected = {(i, j) for i in range(120) for j in range(i + 1, 120) if sims[i, j] >= 0.8}
    assert len(whole) == len(expected) > 20
    assert {(i, j) for i, j, _ in whole} == expected
    assert [(i, j) for i, j, _ in tiny] == [(i, j) for i, j, _ in whole]
    assert all(a[2] >= b[2] for a, b in zip(whole, whole[1:], strict=False))


def test_max_pairs_keeps_the_most_similar():
    emb = _random(100)
    for k in range(10):
        emb[50 + k] = emb[k] + (0.02 * (k + 1)) * _random(1, seed=10 + k)[0]  # pair k: noisier as k grows
    pairs = near_duplicates(emb, threshold=0.9, max_pairs=3, block_mb=0.001)
    assert [(i, j) for i, j, _ in pairs] == [(0, 50), (1, 51), (2, 52)]


def test_leakage_pairs_index_train_then_test():
    train, test = _random(300), _random(100, seed=3)
    test[5] = train[42]
    test[60] = train[7] * 0.5
    pairs = leakage_pairs(train, test)
    assert sorted((i, j) for i, j, _ in pairs) == [(7, 60), (42, 5)]


def test_label_conflicts_only_between_different_labels():
    emb = _random(100)
    emb[20] = emb[2]  # same label: a plain duplicate, not a conflict
    emb[30] = emb[3]  # different label: a conflict
    labels = np.zeros(100, int)
    labels[30] = 1
    assert [(i, j) for i, j, _ in label_conflicts(emb, labels, max_pairs=1)] == [(3, 30)]
    assert [(i, j) for i, j, _ in near_duplicates(emb)] == [(2, 20), (3, 30)]
    with pytest.raises(ValueError, match="99 labels for 100 embeddings"):
        label_conflicts(emb, labels[:-1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="cosine similarity in"):
        near_duplicates(_random(5), threshold=1.5)
    with pytest.raises(ValueError, match="differ in width"):
        near_duplicates(_random(5, d=4), _random(5, d=3))


def test_5000_by_5000_stays_under_100_mb():
    emb = _random(5000, d=64)
    emb[4999] = emb[0]
    tracemalloc.start()
    pairs = near_duplicates(emb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [(i, j) for i, j, _ in pairs] == [(0, 4999)]
    assert peak < 40 * 2**20  # the full float32 matrix alone would be 100 MB

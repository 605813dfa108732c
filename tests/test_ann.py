"""The approximate k-NN (similarity/ann.py): exact when it probes every cell, close to exact with
a share of them, and its recall measure says what it kept."""

from __future__ import annotations

import numpy as np

from dsaudit.similarity import ann
from dsaudit.similarity.neighbors import knn_join


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _data(n_refs=3000, n_q=300, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, 16))
    r = _unit(centres[rng.integers(0, 30, n_refs)] + 0.6 * rng.normal(size=(n_refs, 16)))
    q = np.stack([_unit(r[:n_q] + s * rng.normal(size=(n_q, 16))) for s in (0.05, 0.5)])   # 2 versions
    return q, r


def test_probing_every_cell_gives_the_exact_neighbours():
    q, r = _data()
    index = ann.IvfIndex(r)
    assert index.cells > 1
    qi, rj, sim, kept = ann.ivf_join(q, index, 5, 0.0, share=1.0)
    eq, er, es = knn_join(q, r, 5, min_sim=0.0)
    assert set(zip(qi.tolist(), rj.tolist())) == set(zip(eq.tolist(), er.tolist()))
    assert kept.share == 1.0 and kept.recall == 1.0 and kept.probed == index.cells
    # the scores are the best over the versions, as the exact join's
    exact = dict(zip(zip(eq.tolist(), er.tolist()), es.tolist()))
    assert np.allclose([exact[(a, b)] for a, b in zip(qi.tolist(), rj.tolist())], sim, atol=1e-5)


def test_a_share_of_the_cells_keeps_most_neighbours_and_says_how_many():
    q, r = _data(n_refs=20000)
    index = ann.IvfIndex(r)
    qi, rj, _, kept = ann.ivf_join(q, index, 5, 0.0, share=0.05)
    eq, er, _ = knn_join(q, r, 5, min_sim=0.0)
    truth = set(zip(eq.tolist(), er.tolist()))
    got = set(zip(qi.tolist(), rj.tolist()))
    recall = len(truth & got) / len(truth)
    assert recall > 0.5                             # not useless
    assert kept.probed == max(ann.MIN_PROBES, int(np.ceil(0.05 * index.cells))) < index.cells / 4
    assert abs(kept.recall - recall) < 0.1          # the sampled recall is the real one, about
    assert np.bincount(qi).max() <= 5               # k per query at most
    # each query's own source (its first version is near it) is found
    assert np.mean([(i, i) in got for i in range(q.shape[1])]) > 0.95
    # deterministic
    again = ann.ivf_join(q, ann.IvfIndex(r), 5, 0.0, share=0.05)
    assert np.array_equal(again[0], qi) and np.array_equal(again[1], rj)

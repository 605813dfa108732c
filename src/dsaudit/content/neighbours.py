"""Nearest neighbours in the content descriptor space, shared by the outlier and label checks.

Euclidean distance between content descriptors (dsaudit.content.analysis), found with the duplicate
search's blocked k-NN (``knn_join``, a largest-dot-product search) on augmented vectors: for query
[q, 1] and reference [r, -|r|^2 / 2] the dot product is q.r - |r|^2 / 2, largest for the nearest r.
Exact, and no (n x n) matrix in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dsaudit.similarity.neighbors import knn_join

ARTIFACT = "content.neighbours"


def knn(x: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(m, k) indices and Euclidean distances of the k nearest other rows of `x` for each of `rows`
    (default: every row), nearest first (self left out; -1 / nan pad rows with fewer than k others)."""
    n = len(x)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    m = len(rows)
    idx = np.full((m, k), -1, dtype=np.int64)
    dist = np.full((m, k), np.nan, dtype=np.float32)
    if n < 2 or k <= 0 or m == 0:
        return idx, dist
    x = np.asarray(x, dtype=np.float64)
    sq = (x * x).sum(axis=1)
    q = np.concatenate([x[rows], np.ones((m, 1))], axis=1).astype(np.float32)
    r = np.concatenate([x, -0.5 * sq[:, None]], axis=1).astype(np.float32)
    qi, rj, s = knn_join(q, r, min(k + 1, n), min_sim=-np.inf)
    keep = rows[qi] != rj
    qi, rj, s = qi[keep], rj[keep], s[keep]
    order = np.lexsort((-s, qi))
    qi, rj, s = qi[order], rj[order], s[order]
    first = np.searchsorted(qi, np.arange(m))
    rank = np.arange(len(qi)) - first[qi]
    ok = rank < k
    idx[qi[ok], rank[ok]] = rj[ok]
    src = rows[qi[ok]]
    d2 = sq[src] + sq[rj[ok]] - 2.0 * (x[src] * x[rj[ok]]).sum(axis=1)
    dist[qi[ok], rank[ok]] = np.sqrt(np.maximum(d2, 0.0))
    return idx, dist


def dataset_neighbours(ctx: Any, descriptor: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """knn over the whole dataset, computed once per scan for the largest k asked for."""
    got = ctx.artifacts.get(ARTIFACT)
    if got is None or got[0].shape[1] < k:
        got = knn(descriptor, k)
        ctx.artifacts[ARTIFACT] = got
    return got[0][:, :k], got[1][:, :k]

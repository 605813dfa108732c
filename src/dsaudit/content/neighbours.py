"""Nearest neighbours in the content descriptor space, shared by the outlier and label checks.

Euclidean distance between content descriptors (dsaudit.content.analysis). Exact k-NN is a faiss
flat (brute-force) search: blocked BLAS products and a k-best heap per query in C++, about half the
CPU of the duplicate search's numpy ``knn_join`` on these short (48-d) vectors, in one thread (its
OpenMP threads only contended with its own BLAS here: 2 threads took 2-3x the wall time of one).
Distances are recomputed in float64 for the neighbours found.

The k-NN of the whole dataset (DSA430's vote) costs n^2 distances: above ``content.label_knn_max_pairs``
it is approximate, an inverted file (faiss k-means cells of about CELL_SIZE descriptors, each
query compared only with the cells nearest to it, enough of them to compare about the budget's
number of pairs; the comparisons by matrix products cell by cell, ``probed_knn``), and the share
of the exact neighbours it kept is measured on a fixed sample of queries and reported
(``Approximation``), as the duplicate search does (similarity/ann.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from dsaudit.similarity.ann import Approximation
from dsaudit.similarity.neighbors import blas_threads, parallel_map, workers

CELL_SIZE = 256         # descriptors per k-means cell of the approximate search (about)
TRAIN_PER_CELL = 64     # training descriptors per cell
MIN_PROBES = 8          # cells each query is compared with, whatever the budget
RECALL_SAMPLE = 256     # queries whose exact neighbours measure the approximation


@contextmanager
def faiss_threads(n: int):
    """faiss' OpenMP threads (its BLAS is OpenMP too) set to n inside the block, restored after."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def knn(x: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(m, k) indices and Euclidean distances of the k nearest other rows of `x` for each of `rows`
    (default: every row), nearest first (self left out; -1 / nan pad rows with fewer than k others).
    Exact: a faiss flat search (ties: lower index first), distances recomputed in float64."""
    import faiss

    n = len(x)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    m = len(rows)
    idx = np.full((m, k), -1, dtype=np.int64)
    dist = np.full((m, k), np.nan, dtype=np.float32)
    if n < 2 or k <= 0 or m == 0:
        return idx, dist
    x = np.asarray(x, dtype=np.float64)
    xf = np.ascontiguousarray(x, dtype=np.float32)
    with faiss_threads(1):
        flat = faiss.IndexFlatL2(x.shape[1])
        flat.add(xf)
        _, cand = flat.search(np.ascontiguousarray(xf[rows]), min(k + 1, n))
    bad = (cand == rows[:, None]) | (cand < 0)   # itself, or no row (fewer than k others)
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]   # stable: the others keep their order
    nb = np.take_along_axis(cand, order, 1).astype(np.int64)
    ok = ~np.take_along_axis(bad, order, 1)
    qi, rank = np.nonzero(ok)
    src, dst = rows[qi], nb[qi, rank]
    sq = (x * x).sum(axis=1)
    d2 = sq[src] + sq[dst] - 2.0 * (x[src] * x[dst]).sum(axis=1)
    idx[qi, rank] = dst
    dist[qi, rank] = np.sqrt(np.maximum(d2, 0.0))
    return idx, dist


def _without_self(cand: np.ndarray, dist2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k first of each row's nearest-first candidates that are not the row itself (a row
    whose own index is not among them loses its last), as (idx, Euclidean distance)."""
    is_self = cand == np.arange(len(cand))[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]   # stable: the others keep their order
    idx = np.take_along_axis(cand, order, 1).astype(np.int64)
    dist = np.sqrt(np.maximum(np.take_along_axis(dist2, order, 1), 0.0)).astype(np.float32)
    dist[idx < 0] = np.nan
    return idx, dist


BLOCK = 2048           # rows x rows of one distance block of the probed search (16 MB of float32)
CELL_BATCH = 64        # cells searched between two looks at the pairs kept so far
MERGE_AT = 1 << 23     # kept pairs (about 20 bytes each) at which they are reduced to each row's k best


def probed_knn(xf: np.ndarray, lists: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """What a faiss IndexIVFFlat over the rows of `xf`, searched with the rows themselves, returns:
    each row's k nearest (itself included) among the rows whose cell is one of its probed cells
    (`lists[i]`, nearest cell first; a row's cell is the first of its own list), as (n, k) indices
    and squared distances, nearest first (-1 / inf pad).

    Computed cell by cell with matrix products instead of faiss' scan of the lists vector by
    vector (which cost about 7x the CPU per compared pair here): every row probing a cell is
    compared with all its members in one block, as the dot product of [q, 1] and [r, -|r|^2 / 2]
    (q.r - |r|^2 / 2: the distance is |q|^2 minus twice it). A row's k-th distance within its own
    cell bounds its final one, so a block keeps only the entries within that bound (about 45 of the
    6,900 compared per row at 60,000 CIFAR images), and the k best of what is kept are the answer."""
    n, probe = lists.shape
    cells = int(lists.max()) + 1
    sq = (xf * xf).sum(axis=1)
    queries = np.concatenate([xf, np.ones((n, 1), np.float32)], axis=1)
    refs = np.concatenate([xf, -0.5 * sq[:, None]], axis=1)
    own = lists[:, 0]
    order = np.argsort(own, kind="stable")
    members = np.split(order, np.searchsorted(own[order], np.arange(1, cells)))
    by_cell = np.argsort(lists.ravel(), kind="stable")
    probers = np.split(by_cell // probe, np.searchsorted(lists.ravel()[by_cell], np.arange(1, cells)))
    bound = np.full(n, np.inf, dtype=np.float32)

    def own_bound(c: int) -> None:
        m = members[c]
        if len(m) > k:
            rt = refs[m].T.copy()
            for s in range(0, len(m), BLOCK):
                q = m[s:s + BLOCK]
                sim = queries[q] @ rt
                bound[q] = sq[q] - 2.0 * np.partition(sim, len(m) - k, axis=1)[:, len(m) - k]

    def kept(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = []
        rt = refs[members[c]].T.copy()
        for s in range(0, len(probers[c]), BLOCK):
            q = probers[c][s:s + BLOCK]
            limit = bound[q] * (1 + 1e-4) + 1e-4               # float32 rounding of the products
            floor = (0.5 * (sq[q] - limit))[:, None]           # distance <= limit: similarity >= floor
            qb = queries[q]
            for t in range(0, rt.shape[1], BLOCK):
                sim = qb @ rt[:, t:t + BLOCK]
                flat = np.flatnonzero(sim >= floor)
                i, j = np.divmod(flat, sim.shape[1])
                found.append((q[i], members[c][t + j], sq[q[i]] - 2.0 * sim.ravel()[flat]))
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return tuple(np.concatenate(part) for part in zip(*found))

    idx = np.full((n, k), -1, dtype=np.int64)
    dist2 = np.full((n, k), np.inf, dtype=np.float32)
    scale = bound.astype(np.float64) * (1 + 1e-4) + 1e-4

    def merge(parts: list) -> None:
        """Each row's k smallest of its best so far and the kept pairs in `parts`: one sort on row +
        distance scaled into [0, 1) under the row's bound (a row with no bound, a cell of k rows
        or fewer, keeps everything; its scale is the largest distance in this merge). The best so
        far come first, so ties keep the cell order of a single merge."""
        have = idx >= 0
        qi = np.concatenate([np.nonzero(have)[0]] + [p[0] for p in parts])
        rj = np.concatenate([idx[have]] + [p[1] for p in parts])
        d2 = np.concatenate([dist2[have]] + [p[2] for p in parts])
        row_scale = scale
        unbounded = ~np.isfinite(scale[qi])
        if unbounded.any():
            top = np.zeros(n)
            np.maximum.at(top, qi[unbounded], d2[unbounded].astype(np.float64))
            row_scale = np.where(np.isfinite(scale), scale, top + 1.0)
        key = qi + np.clip(d2 / row_scale[qi] * 0.999, 0.0, 0.999)
        srt = np.argsort(key, kind="stable")
        qi, rj, d2 = qi[srt], rj[srt], d2[srt]
        rank = np.arange(len(qi)) - np.searchsorted(qi, qi, side="left")
        sel = rank < k
        idx[qi[sel], rank[sel]] = rj[sel]
        dist2[qi[sel], rank[sel]] = np.maximum(d2[sel], 0.0)

    pending: list = []
    waiting = 0
    with blas_threads(1):
        parallel_map(own_bound, range(cells), workers())
        for s in range(0, cells, CELL_BATCH):
            for part in parallel_map(kept, range(s, min(s + CELL_BATCH, cells)), workers()):
                pending.append(part)
                waiting += len(part[0])
            if waiting > MERGE_AT:   # memory: a million images keep about 45 million pairs
                merge(pending)
                pending, waiting = [], 0
    merge(pending)
    return idx, dist2


def knn_approximate(x: np.ndarray, k: int, max_pairs: float, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, Approximation]:
    """``knn`` of every row through an inverted file (faiss k-means cells, L2) that compares each
    query with the rows of the cells nearest to it, about max_pairs / n references (probed_knn),
    and what that kept of the exact neighbours (on a fixed sample)."""
    import faiss

    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    xf = np.ascontiguousarray(x, dtype=np.float32)
    cells = int(np.clip(round(n / CELL_SIZE), 1, 65536))
    probe = int(np.clip(np.ceil(max_pairs / n / n * cells), MIN_PROBES, cells))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_L2)   # trained for its cells only
    index.cp.seed = seed
    rng = np.random.default_rng(seed)
    n_train = min(n, TRAIN_PER_CELL * cells)
    with faiss_threads(1):   # the same cells as with more threads, 10x faster (0.06 against 0.63 s)
        index.train(xf if n_train == n else xf[np.sort(rng.choice(n, n_train, replace=False))])
        _, lists = quantizer.search(xf, probe)          # the cells each row is compared with
    cand, dist2 = probed_knn(xf, lists, min(k + 1, n))
    idx, dist = _without_self(cand, dist2, k)
    sample = np.sort(rng.choice(n, min(RECALL_SAMPLE, n), replace=False))
    exact, _ = knn(x, k, rows=sample)
    valid = exact >= 0
    kept = sum(len(set(e[v].tolist()) & set(a.tolist())) for e, v, a in zip(exact, valid, idx[sample]))
    recall = kept / max(int(valid.sum()), 1)
    return idx, dist, Approximation(cells, probe, probe / cells, recall, len(sample))


def dataset_neighbours(descriptor: np.ndarray, k: int, budget: float,
                       seed: int) -> tuple[np.ndarray, np.ndarray, Approximation | None]:
    """(neighbours, distances, approximation) of every row over the whole dataset: exact up to
    `budget` (n^2 pairs, content.label_knn_max_pairs), above it approximate (knn_approximate), and
    then what the approximate search kept (else None)."""
    n = len(descriptor)
    if n >= 2 and float(n) * n > budget:
        return knn_approximate(descriptor, k, budget, seed)
    idx, dist = knn(descriptor, k)
    return idx, dist, None

"""Approximate k-NN for searches too large for the exact blocked products (neighbors.knn_join).

An inverted-file index (faiss ``IndexIVFFlat``, inner product on unit vectors): the references are
split into k-means cells, and each query version is compared only with the references in the
``probe`` cells whose centres are nearest to it. The searched share of the references is what the
budget pays for; what it costs in neighbours is measured on each search by ``sampled_recall`` (the
exact k nearest of a fixed sample of queries against what the index returned), and the report
says both (DSA204's evidence, the leakage section).

Multi-version queries (the k-NN's shifted and squeezed versions) are searched version by version
and merged: every reference of a query's k best by the best of its versions is among the k best
of that version, so the union of the per-version results, rescored exactly over all versions,
holds the k best (exactly so when each per-version search is exact).

faiss is deterministic for a fixed training sample and seed; the sample is drawn with a fixed
seed, so a scan gives the same neighbours every time on the same machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsaudit.similarity.neighbors import workers

# references per k-means cell (about): fewer, larger cells make the centre search cheap and the
# probes coarse; more, smaller cells the other way round
CELL_SIZE = 256
TRAIN_PER_CELL = 64      # training vectors per cell (faiss warns under 39)
RECALL_SAMPLE = 256      # queries whose exact neighbours are computed to measure the recall
MIN_PROBES = 8           # cells probed per query version whatever the budget: never an empty search


@dataclass
class Approximation:
    """What an approximate search did: cells, cells probed per query version, the share of the
    references compared, and the measured recall of the exact k nearest on a sample of queries."""
    cells: int
    probed: int
    share: float
    recall: float
    sample: int

    def as_dict(self) -> dict[str, float]:
        return {"cells": self.cells, "probed": self.probed, "share": round(self.share, 4),
                "neighbour_recall": round(self.recall, 4), "recall_sample": self.sample}


class IvfIndex:
    """faiss IndexIVFFlat over the (unit) reference vectors r, built once and searched many times."""

    def __init__(self, r: np.ndarray, seed: int = 0):
        import faiss

        self.r = np.ascontiguousarray(r, dtype=np.float32)
        nr, d = self.r.shape
        self.cells = int(np.clip(round(nr / CELL_SIZE), 1, 65536))
        faiss.omp_set_num_threads(workers())
        quantizer = faiss.IndexFlatIP(d)
        self._quantizer = quantizer
        if self.cells == 1:   # a small reference set: one cell is the exact search
            self.index = quantizer
            quantizer.add(self.r)
            return
        self.index = faiss.IndexIVFFlat(quantizer, d, self.cells, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        rng = np.random.default_rng(seed)
        n_train = min(nr, TRAIN_PER_CELL * self.cells)
        sample = self.r if n_train == nr else self.r[np.sort(rng.choice(nr, n_train, replace=False))]
        self.index.train(sample)
        self.index.add(self.r)

    def probes_for(self, share: float) -> int:
        return int(np.clip(np.ceil(share * self.cells), MIN_PROBES, self.cells))

    def search(self, q: np.ndarray, k: int, probe: int, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """(query, reference) candidates: the k best of each version of each query among the
        references of its `probe` nearest cells. q is (V, nq, d)."""
        import faiss

        faiss.omp_set_num_threads(workers())
        if self.cells > 1:
            self.index.nprobe = probe
        qs, rs = [], []
        nq = q.shape[1]
        for v in range(len(q)):
            for s in range(0, nq, block):
                _, idx = self.index.search(np.ascontiguousarray(q[v, s:s + block]), k)
                ok = idx >= 0
                qs.append(np.nonzero(ok)[0] + s)
                rs.append(idx[ok])
        return np.concatenate(qs), np.concatenate(rs).astype(np.int64)


def best_over_versions(q: np.ndarray, r: np.ndarray, qi: np.ndarray, rj: np.ndarray, chunk: int = 1 << 18):
    """Exact cosine of each (query, reference) pair at the best of the query's versions."""
    out = np.empty(len(qi), np.float32)
    for s in range(0, len(qi), chunk):
        a, b = qi[s:s + chunk], rj[s:s + chunk]
        rb = r[b]
        out[s:s + chunk] = np.max([(q[v, a] * rb).sum(axis=1) for v in range(len(q))], axis=0)
    return out


def top_k(qi: np.ndarray, rj: np.ndarray, sim: np.ndarray, k: int, min_sim: float):
    """Each query's k best distinct references (ties: lower reference first), at least min_sim."""
    if not len(qi):
        return qi, rj, sim
    order = np.lexsort((rj, qi))
    qi, rj, sim = qi[order], rj[order], sim[order]
    first = np.ones(len(qi), bool)
    first[1:] = (qi[1:] != qi[:-1]) | (rj[1:] != rj[:-1])
    qi, rj, sim = qi[first], rj[first], sim[first]
    order = np.lexsort((rj, -sim, qi))
    qi, rj, sim = qi[order], rj[order], sim[order]
    rank = np.arange(len(qi)) - np.searchsorted(qi, qi, side="left")
    keep = (rank < k) & (sim >= min_sim)
    return qi[keep], rj[keep], sim[keep]


def ivf_join(q: np.ndarray, index: IvfIndex, k: int, min_sim: float, share: float,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, Approximation]:
    """knn_join's answer (qi, rj, sim) through the index, probing `share` of its cells, plus what
    that approximation kept (`Approximation`). q is (V, nq, d) or (nq, d)."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    if q.ndim == 2:
        q = q[None]
    r = index.r
    k = min(k, len(r))
    probe = index.probes_for(share)
    qi, rj = index.search(q, k, probe)
    qi, rj, sim = top_k(qi, rj, best_over_versions(q, r, qi, rj), k, min_sim)
    recall, sample = sampled_recall(q, r, k, min_sim, qi, rj, seed)
    return qi, rj, sim, Approximation(index.cells, probe, probe / index.cells, recall, sample)


def sampled_recall(q: np.ndarray, r: np.ndarray, k: int, min_sim: float, qi: np.ndarray, rj: np.ndarray,
                   seed: int = 0) -> tuple[float, int]:
    """Share of the exact k nearest (at least min_sim) of RECALL_SAMPLE queries (a fixed sample)
    that (qi, rj) holds."""
    from dsaudit.similarity.neighbors import knn_join

    nq = q.shape[1]
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(nq, min(nq, RECALL_SAMPLE), replace=False))
    eq, er, _ = knn_join(q[:, sample], r, k, min_sim=min_sim)
    if not len(eq):
        return 1.0, len(sample)
    got = set(zip(qi.tolist(), rj.tolist()))
    hit = sum((int(sample[a]), int(b)) in got for a, b in zip(eq, er))
    return hit / len(eq), len(sample)

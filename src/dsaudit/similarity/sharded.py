"""The near-duplicate search on a Dask cluster (``engine = "dask"``): the same pairs as the local
search, with its bulk work on the workers.

``matching.near_matches`` calls its bulk steps through ``ops.search_ops()``; under ``on_cluster``
they are the methods of ``ClusterSearch``, which cut each step into tasks:

* **pHash join** (``hash_join``): a grid of (query block x reference shard) tasks, each one
  ``neighbors.dihedral_join`` of a block of the 8 dihedral hashes against a shard of the identity
  hashes. The join is exact (every pair within the radius), so the union of the tasks' pairs is the
  whole join; ``neighbors.best_per_pair`` puts it in the local order.
* **k-NN join** (``knn_join``): the same grid of ``neighbors.knn_join`` tasks (each query's k best
  references of one shard), then one merge task per query block on the workers: the k best of the
  shards' k best (``ann.top_k``, ties to the lower reference as knn_join breaks them) are the k
  best of all references. Only the merged candidates come back to the client.
* **verification** (``verify``): the candidate pairs in chunks, each query's pairs in one chunk (as
  verify_pairs batches them, so that a query's side of the cascade is computed once); each task
  gets its chunk's pairs and only the thumbnails they name (renumbered), runs
  ``verify.verify_pairs`` with the same settings and returns its fields; the client puts the
  results back in the pairs' order. A pair's result does
  not depend on the other pairs of its batch (tests/test_sharded.py checks this on real files).

The approximate k-NN (``ann``, for searches over their budget) still runs in the client process:
its inverted-file index is trained and searched there (docs/scale-out.md says what sharding it
needs). Reference shards and query blocks are scattered to the workers once per join; each task
holds one query block and one shard. Tasks run with as many threads as their worker has
(``threads.thread_limit``), so a cluster of single-threaded workers does not oversubscribe cores,
and with glibc reusing large blocks (``index.heap.large_blocks_reused``: Dask's worker setting
MALLOC_TRIM_THRESHOLD_=65536 made verification 2.2x slower per core).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Iterator

import numpy as np

from dsaudit.index.heap import large_blocks_reused
from dsaudit.similarity.ann import top_k
from dsaudit.similarity.neighbors import best_per_pair, dihedral_join, knn_join, thread_limit
from dsaudit.similarity.ops import SearchOps, using_ops
from dsaudit.similarity.verify import Verified, verify_pairs

# Sizes of the pieces a join is cut into: a reference shard of at most REF_SHARD rows (64 MB of
# k-NN descriptors), query blocks of at most QUERY_BLOCK rows, at least SPREAD tasks per worker
# thread where the inputs allow it; VERIFY_CHUNK candidate pairs per verification task (up to 2 x
# 4,096 thumbnails, 8 MB, shipped with it; tens of milliseconds to seconds of work).
REF_SHARD = 262_144
QUERY_BLOCK = 65_536
SPREAD = 2
VERIFY_CHUNK = 4096
# verification chunks per worker thread at least: its pairs' costs differ a hundredfold (a fit or
# none), so more, smaller chunks even out the workers' loads
VERIFY_SPREAD = 4
# Below these sizes a step runs in the client process, as the local engine runs it (the same
# answer): its round trips through the scheduler would cost more than the work (a join of 1,500
# photos: 0.2 s locally, 7 s as tasks; benchmarks/scale_dask.py search-rates). Comparisons for the
# joins (query variants or versions x references), pairs for verification.
MIN_WORK = {"hash_join": 2e9, "knn_join": 5e8, "verify": 2048}


def _worker_threads() -> int:
    """Threads of the worker running this task (1 outside a worker)."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except Exception:   # not on a worker, or distributed's internals moved: one thread is safe
        return 1


# ------------------------------------------------------------------------------------------
# Tasks (run on the workers; module-level so that workers import them from dsaudit)
# ------------------------------------------------------------------------------------------

def _hash_task(qv: np.ndarray, q0: int, r: np.ndarray, r0: int, radius: int):
    with thread_limit(_worker_threads()), large_blocks_reused():
        qi, rj, d, var = dihedral_join(qv, r, radius)
    return qi + q0, rj + r0, d, var


def _knn_task(q: np.ndarray, r: np.ndarray, r0: int, k: int, min_sim: float):
    with thread_limit(_worker_threads()), large_blocks_reused():
        qi, rj, sim = knn_join(q, r, k, min_sim=min_sim)
    return qi, rj + r0, sim


def _knn_merge(q0: int, k: int, min_sim: float, *parts):
    """The k best over the shards' k best, for one query block (positions of the whole join)."""
    qi = np.concatenate([p[0] for p in parts])
    rj = np.concatenate([p[1] for p in parts])
    sim = np.concatenate([p[2] for p in parts])
    qi, rj, sim = top_k(qi, rj, sim, k, min_sim)
    return qi + q0, rj, sim


def _verify_task(thumbs: np.ndarray, a: np.ndarray, b: np.ndarray, variant: np.ndarray,
                 per_pair: dict[str, np.ndarray], settings: dict[str, Any]) -> dict[str, np.ndarray]:
    with thread_limit(_worker_threads()), large_blocks_reused():
        ver = verify_pairs(thumbs, a, b, variant, **per_pair, **settings)
    return {f.name: getattr(ver, f.name) for f in dataclasses.fields(ver)}


# ------------------------------------------------------------------------------------------
# The cluster engine
# ------------------------------------------------------------------------------------------

def _cuts(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + size)) for s in range(0, n, max(1, size))]


class ClusterSearch:
    """The bulk steps of the search as Dask tasks on `client`'s cluster; `ops()` hands them to
    matching (ops.SearchOps). `stats` counts the tasks run and the seconds spent waiting for them."""

    def __init__(self, client, ref_shard: int = REF_SHARD, query_block: int = QUERY_BLOCK,
                 verify_chunk: int = VERIFY_CHUNK, spread: int = SPREAD, min_work: dict | None = None):
        self.client = client
        self.sizes = dict(ref_shard=ref_shard, query_block=query_block, verify_chunk=verify_chunk, spread=spread)
        self.min_work = dict(MIN_WORK, **(min_work or {}))
        self.stats: dict[str, float] = {"tasks": 0, "seconds": 0.0}

    def ops(self) -> SearchOps:
        return SearchOps(hash_join=self.hash_join, knn_join=self.knn_join, verify=self.verify)

    # how a join is cut -------------------------------------------------------------------
    def _slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def _grid(self, nq: int, nr: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Query blocks and reference shards: shards first (enough of them to keep every worker
        busy, none above ref_shard), then query blocks to make up the rest of the spread."""
        want = self._slots() * self.sizes["spread"]
        shards = max(1, min(nr, max(-(-nr // self.sizes["ref_shard"]), want)))
        blocks = max(1, min(nq, max(-(-nq // self.sizes["query_block"]), -(-want // shards))))
        return _cuts(nq, -(-nq // blocks)), _cuts(nr, -(-nr // shards))

    def _gather(self, futures: list) -> list:
        t = time.perf_counter()
        out = self.client.gather(futures)
        self.stats["tasks"] += len(futures)
        self.stats["seconds"] += time.perf_counter() - t
        return out

    # the steps ---------------------------------------------------------------------------
    def hash_join(self, qv: np.ndarray, r: np.ndarray, radius: int, method: str = "auto"):
        """neighbors.dihedral_join(qv, r, radius) on the cluster (same pairs, same order)."""
        qv = np.ascontiguousarray(qv)
        r = np.ascontiguousarray(r, dtype=np.uint64).ravel()
        if not len(qv) or not len(r) or float(qv.size) * len(r) < self.min_work["hash_join"]:
            return dihedral_join(qv, r, radius)
        blocks, shards = self._grid(len(qv), len(r))
        qf = self.client.scatter([qv[s:e] for s, e in blocks], hash=False)
        rf = self.client.scatter([r[s:e] for s, e in shards], hash=False)
        futs = [self.client.submit(_hash_task, qf[i], blocks[i][0], rf[j], shards[j][0], radius, pure=False)
                for i in range(len(blocks)) for j in range(len(shards))]
        parts = self._gather(futs)
        qi, rj, d, var = (np.concatenate([p[x] for p in parts]) for x in range(4))
        return best_per_pair(qi.astype(np.int64), rj.astype(np.int64), d, var.astype(np.int64))

    def knn_join(self, q: np.ndarray, r: np.ndarray, k: int, min_sim: float = -1.0, **_ignored):
        """neighbors.knn_join(q, r, k, min_sim) on the cluster: each query's k best references
        (q: (nq, d) or (V, nq, d) versions scored at their best), by shards of the references."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        r = np.ascontiguousarray(r, dtype=np.float32)
        if q.ndim == 2:
            q = q[None]
        nq = q.shape[1]
        if not nq or not len(r) or k <= 0 or float(q.shape[0]) * nq * len(r) < self.min_work["knn_join"]:
            return knn_join(q, r, k, min_sim=min_sim)
        k = min(k, len(r))
        blocks, shards = self._grid(nq, len(r))
        qf = self.client.scatter([np.ascontiguousarray(q[:, s:e]) for s, e in blocks], hash=False)
        rf = self.client.scatter([r[s:e] for s, e in shards], hash=False)
        merged = []
        for i, (q0, _) in enumerate(blocks):
            parts = [self.client.submit(_knn_task, qf[i], rf[j], shards[j][0], k, min_sim, pure=False)
                     for j in range(len(shards))]
            merged.append(self.client.submit(_knn_merge, q0, k, min_sim, *parts, pure=False))
        out = self._gather(merged)
        self.stats["tasks"] += len(blocks) * len(shards)
        return (np.concatenate([o[0] for o in out]).astype(np.int64),
                np.concatenate([o[1] for o in out]).astype(np.int64),
                np.concatenate([o[2] for o in out]).astype(np.float32))

    def verify(self, thumbs: np.ndarray, a: np.ndarray, b: np.ndarray, variant: np.ndarray,
                **kwargs) -> Verified:
        """verify.verify_pairs(thumbs, a, b, variant, **kwargs) on the cluster, in chunks of pairs."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        variant = np.asarray(variant, dtype=np.int64)
        p = len(a)
        if p < max(1, self.min_work["verify"]):
            return verify_pairs(thumbs, a, b, variant, **kwargs)
        per_pair = {key: np.asarray(v) for key, v in kwargs.items()
                    if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == p}
        settings = {key: v for key, v in kwargs.items() if key not in per_pair}
        size = max(1, min(self.sizes["verify_chunk"], -(-p // (self._slots() * VERIFY_SPREAD))))
        # each query's pairs in one chunk, as verify_pairs batches them: the query's side of the
        # cascade (oriented, turned, its shifted and zoomed versions) is computed once per chunk
        turn = per_pair.get("turn")
        order = np.lexsort(((np.zeros(p) if turn is None else turn), variant, b))
        futs, pieces = [], []
        for s, e in _query_cuts(b[order], size):
            sel = order[s:e]
            rows, inv = np.unique(np.concatenate([a[sel], b[sel]]), return_inverse=True)
            futs.append(self.client.submit(
                _verify_task, np.ascontiguousarray(thumbs[rows]), inv[:e - s], inv[e - s:], variant[sel],
                {key: v[sel] for key, v in per_pair.items()}, settings, pure=False))
            pieces.append(sel)
        parts = self._gather(futs)
        fields = {}
        for f in dataclasses.fields(Verified):
            first = parts[0][f.name]
            out = np.empty((p,) + first.shape[1:], first.dtype)
            for sel, part in zip(pieces, parts):
                out[sel] = part[f.name]
            fields[f.name] = out
        return Verified(**fields)


def _query_cuts(b_sorted: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Pieces of about `size` of a list sorted by query, each cut moved on to where the query changes."""
    cuts, s, n = [], 0, len(b_sorted)
    while s < n:
        e = min(n, s + size)
        while e < n and b_sorted[e] == b_sorted[e - 1]:
            e += 1
        cuts.append((s, e))
        s = e
    return cuts


@contextlib.contextmanager
def on_cluster(scheduler: str = "", client=None, **sizes) -> Iterator[ClusterSearch]:
    """Run the searches started inside the block on a Dask cluster: `client`'s, else the one at
    `scheduler` / $DASK_SCHEDULER_ADDRESS, else a LocalCluster started (and closed) here
    (index.dask_engine.connect: the same rules and one-line errors as the index pass)."""
    cluster = None
    own = client is None
    if own:
        from dsaudit.index.dask_engine import connect

        client, cluster = connect(scheduler)
    try:
        search = ClusterSearch(client, **sizes)
        with using_ops(search.ops()):
            yield search
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


def engine_for(engine: str, scheduler: str = "") -> Callable[[], contextlib.AbstractContextManager]:
    """What runs the search of a scan with `engine` ("local" or "dask"), as a context factory."""
    if engine == "dask":
        return lambda: on_cluster(scheduler)
    return contextlib.nullcontext

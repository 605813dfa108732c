"""Near-duplicate candidate search: Hamming joins over 64-bit hashes and k-NN over descriptors.

``hamming_join`` finds every (query, reference) pair within a Hamming radius without comparing
all pairs. It uses multi-index hashing (Norouzi et al.): the 64 bits are cut into ``m`` chunks; two
hashes within ``radius`` bits agree to within ``radius // m`` bits on at least one chunk
(pigeonhole), so each query probes, per chunk, every value within that small radius of its own
chunk in a sorted table of the references' chunks, and only those candidates get a full 64-bit
popcount. ``m`` is chosen by a cost model; when the problem is small, a blocked brute force with
``np.bitwise_count`` is used instead (it is SIMD-fast and exact). Both return the same pairs.

``knn_join`` returns, for each query descriptor, its k most similar references (cosine), by
blocked matrix products; it feeds the verification stage with candidates that global hashes
miss (shifts and crops).
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

from dsaudit.threads import blas_threads, parallel_map, thread_limit, workers  # noqa: F401 (used here and by the engine)

_U64 = np.uint64


def _masks(bits: int, radius: int) -> np.ndarray:
    """All bit masks of weight <= radius over `bits` bits (uint64)."""
    out = [0]
    for w in range(1, radius + 1):
        for c in combinations(range(bits), w):
            v = 0
            for b in c:
                v |= 1 << b
            out.append(v)
    return np.array(out, dtype=np.uint64)


def _chunks(m: int) -> list[tuple[int, int]]:
    """(shift, bits) of m chunks covering 64 bits as evenly as possible."""
    base, extra = divmod(64, m)
    res, s = [], 0
    for j in range(m):
        b = base + (1 if j < extra else 0)
        res.append((s, b))
        s += b
    return res


def _ball(bits: int, r: int) -> int:
    return sum(comb(bits, w) for w in range(r + 1))


def plan(nq: int, nr: int, radius: int) -> tuple[str, int]:
    """Choose ("brute", 0) or ("mih", m) by a simple cost model (uniform hashes)."""
    brute = nq * nr * 1.5
    best = ("brute", 0, brute)
    for m in range(2, min(radius + 2, 9)):
        r = radius // m
        worst = max(_ball(b, r) / 2.0 ** b for _, b in _chunks(m))
        probes = nq * m * _ball(64 // m + 1, r)
        cands = nq * nr * m * worst
        cost = 15.0 * probes + 40.0 * cands + 30.0 * nr * m
        if cost < best[2]:
            best = ("mih", m, cost)
    return best[0], best[1]


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).astype(np.int16)


def _brute(q: np.ndarray, r: np.ndarray, radius: int, block: int = 1 << 24):
    nq, nr = len(q), len(r)
    step = max(1, block // max(nr, 1))
    qi, ri, d = [], [], []
    for s in range(0, nq, step):
        dist = _popcount(q[s:s + step, None] ^ r[None, :])
        a, b = np.nonzero(dist <= radius)
        qi.append(a + s)
        ri.append(b)
        d.append(dist[a, b])
    if not qi:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int16)
    return np.concatenate(qi).astype(np.int64), np.concatenate(ri).astype(np.int64), np.concatenate(d)


class _Table:
    """Reference chunk values grouped by value: CSR over 2**bits buckets, or sorted + searchsorted."""

    def __init__(self, keys: np.ndarray, bits: int):
        self.order = np.argsort(keys, kind="stable")
        self.direct = bits <= 24
        if self.direct:
            counts = np.bincount(keys.astype(np.int64), minlength=1 << bits)
            # int32 offsets when they fit: half the memory traffic of the random bucket lookups
            dtype = np.int32 if len(keys) < 2 ** 31 - 1 else np.int64
            self.start = np.zeros((1 << bits) + 1, dtype=dtype)
            np.cumsum(counts, out=self.start[1:])
        else:
            self.skeys = keys[self.order]

    def lookup(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.direct:
            p = probes.astype(np.intp)
            return np.take(self.start, p), np.take(self.start, p + 1)
        return (np.searchsorted(self.skeys, probes, side="left"),
                np.searchsorted(self.skeys, probes, side="right"))


def _mih(q: np.ndarray, r: np.ndarray, radius: int, m: int, probe_block: int = 1 << 21):
    chunks = _chunks(m)
    rr = radius // m
    out_q, out_r, out_d = [], [], []
    for j, (shift, bits) in enumerate(chunks):
        mask = _U64((1 << bits) - 1)
        table = _Table((r >> _U64(shift)) & mask, bits)
        flips = _masks(bits, rr)
        qk_all = (q >> _U64(shift)) & mask
        step = max(1, probe_block // len(flips))

        def block(s: int, j=j, table=table, flips=flips, qk_all=qk_all, step=step):
            qk = qk_all[s:s + step]
            probes = (qk[:, None] ^ flips[None, :]).ravel()
            lo, hi = table.lookup(probes)
            cnt = hi - lo
            nz = np.flatnonzero(cnt)
            if not len(nz):
                return None
            cnt_nz = cnt[nz].astype(np.int64)
            total = int(cnt_nz.sum())
            starts = np.repeat(lo[nz].astype(np.int64), cnt_nz)
            offs = np.arange(total) - np.repeat(np.cumsum(cnt_nz) - cnt_nz, cnt_nz)
            ridx = table.order[starts + offs]
            qidx = np.repeat(nz // len(flips), cnt_nz) + s
            x = q[qidx] ^ r[ridx]
            dist = _popcount(x)
            keep = dist <= radius
            # report each pair once: from the first chunk that finds it
            for jj in range(j):
                sh, bb = chunks[jj]
                keep &= _popcount((x >> _U64(sh)) & _U64((1 << bb) - 1)) > rr
            return qidx[keep], ridx[keep], dist[keep]

        for res in parallel_map(block, list(range(0, len(q), step))):
            if res is not None:
                out_q.append(res[0])
                out_r.append(res[1])
                out_d.append(res[2])
        del table
    if not out_q:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int16)
    return (np.concatenate(out_q).astype(np.int64), np.concatenate(out_r).astype(np.int64),
            np.concatenate(out_d))


def hamming_join(q: np.ndarray, r: np.ndarray, radius: int, method: str = "auto"):
    """All (i, j, d) with popcount(q[i] ^ r[j]) = d <= radius. q, r: 1-D uint64 arrays.

    `method`: "auto" (cost model), "brute" or "mih"/"mih:<m>". Pairs come unsorted."""
    q = np.ascontiguousarray(q, dtype=np.uint64).ravel()
    r = np.ascontiguousarray(r, dtype=np.uint64).ravel()
    if len(q) == 0 or len(r) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int16)
    swap = False
    if method == "auto":
        kind, m = plan(len(q), len(r), radius)
        if kind == "mih" and len(q) > len(r) and plan(len(r), len(q), radius)[0] == "mih":
            swap, m = True, plan(len(r), len(q), radius)[1]
    elif method.startswith("mih"):
        kind, m = "mih", int(method.split(":")[1]) if ":" in method else plan(len(q), len(r), radius)[1] or 3
        swap = len(q) > len(r)
    else:
        kind, m = "brute", 0
    if kind == "brute":
        return _brute(q, r, radius)
    if swap:
        # the join is symmetric: probe with the smaller side and index the larger one (the
        # probes, not the table, dominate the cost; e.g. 8 orientations x N queries against N)
        rj, qi, d = _mih(r, q, radius, m)
        return qi, rj, d
    return _mih(q, r, radius, m)


def dihedral_join(qv: np.ndarray, r: np.ndarray, radius: int, method: str = "auto"):
    """Join queries given as (nq, V) variant hashes against references' identity hashes.

    Returns (qi, rj, distance, variant) with one row per (qi, rj): the variant at minimum distance."""
    nq, nv = qv.shape
    qi, rj, d = hamming_join(qv.reshape(-1), r, radius, method)
    var = qi % nv
    qi = qi // nv
    return best_per_pair(qi, rj, d, var)


def best_per_pair(a: np.ndarray, b: np.ndarray, d: np.ndarray, var: np.ndarray):
    """Keep one row per (a, b): the smallest d (then the smallest variant)."""
    if len(a) == 0:
        return a, b, d, var
    order = np.lexsort((var, d, b, a))
    a, b, d, var = a[order], b[order], d[order], var[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first], d[first], var[first]


def _best_over_versions(qb: np.ndarray, rbt: np.ndarray, nv: int) -> np.ndarray:
    """(V*B, d) stacked query versions (version-major) x (d, R) references -> (B, R) best dot
    product over the V versions (one matrix product for all of them)."""
    sims = qb @ rbt
    if nv == 1:
        return sims
    return sims.reshape(nv, len(qb) // nv, -1).max(axis=0)


def knn_join(q: np.ndarray, r: np.ndarray, k: int, min_sim: float = -1.0,
             query_block: int | None = None, ref_block: int = 2048, sample_step: int = 16):
    """For each row of q (unit vectors), the k rows of r with the highest dot product >= min_sim.

    q may be (V, nq, d): V versions of each query (e.g. shifted); a reference then scores the best
    dot product over the versions.

    Returns (qi, rj, sim). Blocked matrix products, cache-sized: for each block of queries, (1)
    the k-th best score against every `sample_step`-th reference is a lower bound of the k-th
    best against all of them (a per-query floor); (2) the scores against blocks of references
    are computed and only entries at or above the floor (and min_sim) are kept; (3) the k best
    of those. This finds the same neighbours as ranking every score, without materialising
    (queries x references) arrays. Query blocks run on a thread pool (one BLAS thread each)."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    r = np.ascontiguousarray(r, dtype=np.float32)
    if q.ndim == 2:
        q = q[None]
    nq = q.shape[1]
    if nq == 0 or len(r) == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    nr = len(r)
    k = min(k, nr)
    nv = len(q)
    if query_block is None:
        # about 1,200 stacked query rows a block: with the 9 shifted versions of a query, blocks of
        # 256 queries made score blocks too big for the caches (the k-NN across splits of
        # benchmarks/scan_speed.py: slower than with 128); one version runs as fast at 256-1,024
        query_block = max(32, min(256, 1152 // nv))
    rt = r.T.copy()
    step = sample_step if nr >= 16 * sample_step * k else 1
    sub_t = rt[:, ::step].copy()
    margin = 1e-4  # rounding differences between blocked products and the recomputed score

    def block(s: int):
        qb = q[:, s:s + query_block]
        b = qb.shape[1]
        qs = qb.reshape(-1, qb.shape[2])  # version-major stack (copy: q slices are strided)
        sub = _best_over_versions(qs, sub_t, nv)
        kth = np.partition(sub, sub.shape[1] - k, axis=1)[:, sub.shape[1] - k]
        floor = (np.maximum(kth, min_sim) - margin)[:, None]
        rows, cols, vals = [], [], []
        for t in range(0, nr, ref_block):
            sims = _best_over_versions(qs, rt[:, t:t + ref_block], nv)
            above = sims >= floor
            width = sims.shape[1]
            if width > k and np.count_nonzero(above) > 4 * k * b:
                # many near-identical references pass the floor: keep each query's k best of
                # this block only (the k best overall are among them), so memory stays bounded
                part = np.argpartition(sims, width - k, axis=1)[:, width - k:]
                v = np.take_along_axis(sims, part, 1)
                ok = v >= floor
                i, j, val_ = np.nonzero(ok)[0], part[ok], v[ok]
            else:
                flat = np.flatnonzero(above)  # (much faster than a 2-D nonzero)
                i, j = np.divmod(flat, width)
                val_ = sims.ravel()[flat]
            rows.append(i)
            cols.append(j + t)
            vals.append(val_)
        rows_a, cols_a, vals_a = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        # k best per query (ties: lower reference index first)
        order = np.lexsort((cols_a, -vals_a, rows_a))
        rows_a, cols_a = rows_a[order], cols_a[order]
        first = np.searchsorted(rows_a, np.arange(b))
        rank = np.arange(len(rows_a)) - first[rows_a]
        sel = rank < k
        qi_b, top = rows_a[sel], cols_a[sel]
        val = np.max([(qb[v, qi_b] * r[top]).sum(axis=1) for v in range(len(q))], axis=0)
        keep = val >= min_sim
        return qi_b[keep] + s, top[keep], val[keep]

    n_workers = workers()
    with blas_threads(1):
        res = parallel_map(block, list(range(0, nq, query_block)), n_workers)
    return (np.concatenate([x[0] for x in res]).astype(np.int64),
            np.concatenate([x[1] for x in res]).astype(np.int64),
            np.concatenate([x[2] for x in res]).astype(np.float32))

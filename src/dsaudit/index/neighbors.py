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
            self.start = np.zeros((1 << bits) + 1, dtype=np.int64)
            np.cumsum(counts, out=self.start[1:])
        else:
            self.skeys = keys[self.order]

    def lookup(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.direct:
            p = probes.astype(np.int64)
            return self.start[p], self.start[p + 1]
        return (np.searchsorted(self.skeys, probes, side="left"),
                np.searchsorted(self.skeys, probes, side="right"))


def _mih(q: np.ndarray, r: np.ndarray, radius: int, m: int, probe_block: int = 1 << 22):
    chunks = _chunks(m)
    rr = radius // m
    out_q, out_r, out_d = [], [], []
    for j, (shift, bits) in enumerate(chunks):
        mask = _U64((1 << bits) - 1)
        table = _Table((r >> _U64(shift)) & mask, bits)
        flips = _masks(bits, rr)
        qk_all = (q >> _U64(shift)) & mask
        step = max(1, probe_block // len(flips))
        for s in range(0, len(q), step):
            qk = qk_all[s:s + step]
            probes = (qk[:, None] ^ flips[None, :]).ravel()
            lo, hi = table.lookup(probes)
            cnt = hi - lo
            total = int(cnt.sum())
            if total == 0:
                continue
            nz = np.nonzero(cnt)[0]
            cnt_nz = cnt[nz]
            starts = np.repeat(lo[nz], cnt_nz)
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
            out_q.append(qidx[keep])
            out_r.append(ridx[keep])
            out_d.append(dist[keep])
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
    if method == "auto":
        kind, m = plan(len(q), len(r), radius)
    elif method.startswith("mih"):
        kind, m = "mih", int(method.split(":")[1]) if ":" in method else plan(len(q), len(r), radius)[1] or 3
    else:
        kind, m = "brute", 0
    if kind == "brute":
        return _brute(q, r, radius)
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


def knn_join(q: np.ndarray, r: np.ndarray, k: int, min_sim: float = -1.0,
             block_elems: int = 1 << 25):
    """For each row of q (unit vectors), the k rows of r with the highest dot product >= min_sim.

    q may be (V, nq, d): V versions of each query (e.g. shifted); a reference then scores the best
    dot product over the versions.

    Returns (qi, rj, sim). Blocked matrix products; memory stays below block_elems floats."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    r = np.ascontiguousarray(r, dtype=np.float32)
    if q.ndim == 2:
        q = q[None]
    nq = q.shape[1]
    if nq == 0 or len(r) == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    k = min(k, len(r))
    step = max(1, block_elems // len(r))
    out_q, out_r, out_s = [], [], []
    rt = r.T.copy()
    for s in range(0, nq, step):
        sims = q[0, s:s + step] @ rt
        for v in range(1, len(q)):  # several versions of each query: best over them
            np.maximum(sims, q[v, s:s + step] @ rt, out=sims)
        rows = np.arange(len(sims))[:, None]
        if k >= len(r):
            top = np.broadcast_to(np.arange(len(r)), sims.shape)
        elif k <= 4:  # a few argmax passes beat argpartition on wide blocks
            cols = []
            for _ in range(k):
                j = sims.argmax(axis=1)
                cols.append(j)
                if len(cols) < k:
                    sims[rows[:, 0], j] = -np.inf
            top = np.stack(cols, axis=1)
        else:
            top = np.argpartition(sims, len(r) - k, axis=1)[:, len(r) - k:]
        val = np.max([(q[v, s:s + step][:, None, :] * r[top]).sum(axis=2) for v in range(len(q))], axis=0)
        keep = val >= min_sim
        qi = np.broadcast_to(rows + s, top.shape)[keep]
        out_q.append(qi)
        out_r.append(top[keep])
        out_s.append(val[keep])
    return (np.concatenate(out_q).astype(np.int64), np.concatenate(out_r).astype(np.int64),
            np.concatenate(out_s).astype(np.float32))

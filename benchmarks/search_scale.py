"""Near-duplicate search at scale: one million 64-bit hashes, cross-split, at the default radius.

    python benchmarks/search_scale.py [--n 1000000] [--val-share 0.2] [--radius R] [--variants 1|8]

Builds n random 64-bit hashes (a train side and a val side), plants `--planted` val hashes that are
copies of train hashes with 0..radius random bit flips, runs dsaudit.similarity.neighbors.hamming_join
(multi-index hashing, method chosen by the cost model), checks that every planted pair is found and
that the result equals a brute-force join on a sample, and reports wall time and peak memory (RSS).
With --variants 8 every val hash is queried in 8 versions (as the dihedral search does).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dsaudit.config import LeakageConfig  # noqa: E402
from dsaudit.similarity.neighbors import hamming_join, plan  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--val-share", type=float, default=0.2)
    ap.add_argument("--radius", type=int, default=LeakageConfig().near_threshold)
    ap.add_argument("--variants", type=int, default=1)
    ap.add_argument("--planted", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n_val = int(args.n * args.val_share)
    n_train = args.n - n_val
    train = rng.integers(0, 2**64, size=n_train, dtype=np.uint64)
    val = rng.integers(0, 2**64, size=n_val * args.variants, dtype=np.uint64)
    src = rng.choice(n_train, size=args.planted, replace=False)
    planted_q = rng.choice(n_val, size=args.planted, replace=False) * args.variants
    flips = np.zeros(args.planted, dtype=np.uint64)
    for i in range(args.planted):
        for b in rng.choice(64, size=int(rng.integers(0, args.radius + 1)), replace=False):
            flips[i] |= np.uint64(1) << np.uint64(b)
    val[planted_q] = train[src] ^ flips
    base = rss_mb()
    print(f"train {n_train:,} x val {n_val:,} (x{args.variants} variants = {len(val):,} queries), "
          f"radius {args.radius}, plan {plan(len(val), n_train, args.radius)}")
    t = time.perf_counter()
    qi, rj, d = hamming_join(val, train, args.radius)
    dt = time.perf_counter() - t
    found = set(zip(qi.tolist(), rj.tolist()))
    recall = np.mean([(int(a), int(b)) in found for a, b in zip(planted_q, src)])
    # exactness on a sample: brute force over 2000 queries
    sample = rng.choice(len(val), size=2000, replace=False)
    bq, br, _ = hamming_join(val[sample], train, args.radius, method="brute")
    want = {(int(sample[a]), int(b)) for a, b in zip(bq, br)}
    got = {p for p in found if p[0] in set(sample.tolist())}
    print(f"pairs found {len(qi):,}; planted recall {recall:.4f}; sample equals brute force: {want == got}")
    print(f"search time {dt:.1f} s; peak RSS {rss_mb():.0f} MB (before search {base:.0f} MB)")


if __name__ == "__main__":
    main()

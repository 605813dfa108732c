"""Can the k-NN candidate search be made approximate? What the copies' cosines say.

    python benchmarks/knn_bound.py [--per 100] [--seed 0] [--sets photo32,ct,digits]

The exact k-NN (every val/test image, in 11 versions, against every train image) is the largest
cost of a cold scan (benchmarks/scan_speed.py prints its arithmetic against this machine's
matrix-product rate). This script measures, on the data of benchmarks/leakage_recall.py (real
images, one transformed copy per transform), what an approximate search would lose:

* the whitened cosine of each cropped, shifted or rotated copy with its source (best over the
  scan's query versions), next to each clean val image's best and 8th-best cosine against the
  train images: when copies sit among the lookalikes, no threshold on the cosine separates them;
* the share of those copies whose source is among the exact 8 nearest (what the scan verifies),
  and among the 8 nearest of an inverted-file index (k-means cells over the train descriptors,
  seed 0; each query version searches the cells nearest to it) that probes 1/8 or 1/4 of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import leakage_recall as R  # noqa: E402
from dsaudit.similarity.matching import KNN_SHIFTS, KNN_SQUEEZES, Whitening  # noqa: E402
from dsaudit.index import hashing  # noqa: E402

TRANSFORMS = ("crop10", "shift10", "rotate")
K = 8


def query_versions(th: np.ndarray, queries: np.ndarray, white: Whitening) -> np.ndarray:
    """(V, Q, 64) whitened descriptors of the queries in the scan's versions."""
    versions = [hashing.shifted_descriptors(th[queries], dy, dx) for dy, dx in KNN_SHIFTS]
    versions += [hashing.squeezed_descriptors(th[queries], axis, f) for axis, f in KNN_SQUEEZES]
    return np.stack([white(v) for v in versions])


def ivf_scores(vers: np.ndarray, ref: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """(Q, R) best cosine over versions, -inf outside the cells each version probes."""
    from sklearn.cluster import KMeans

    cells = max(4, int(round(np.sqrt(len(ref)))))
    km = KMeans(cells, n_init=1, max_iter=50, random_state=seed).fit(ref)
    centres = km.cluster_centers_ / np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True)
    probe = max(1, int(round(share * cells)))
    best = np.full((vers.shape[1], len(ref)), -np.inf, np.float32)
    for v in vers:
        near = np.argsort(-(v @ centres.T), axis=1)[:, :probe]
        allowed = (km.labels_[None, :, None] == near[:, None, :]).any(axis=2)
        best = np.maximum(best, np.where(allowed, v @ ref.T, -np.inf))
    return best


def in_top(scores: np.ndarray, sources: np.ndarray) -> np.ndarray:
    own = scores[np.arange(len(sources)), sources]
    return np.isfinite(own) & ((scores > own[:, None]).sum(axis=1) < K)


def main() -> None:
    ap = argparse.ArgumentParser()
    R.add_set_arguments(ap)
    args = ap.parse_args()
    for name, (train, clean, planted) in R.benchmark_sets(args.sets, args.per, args.seed):
        th = R.thumbs_of(train + clean + [q for _, _, q in planted])[0]
        desc = hashing.descriptors(th)
        refs = np.arange(len(train))
        white = Whitening.fit(desc[refs])
        ref = white(desc[refs])
        clean_q = np.arange(len(train), len(train) + len(clean))
        clean_best = np.sort(np.max(query_versions(th, clean_q, white) @ ref.T, axis=0), axis=1)[:, ::-1]
        print(f"\n{name}: {len(train)} train images, {len(clean)} clean val images; "
              f"clean val best cosine median {np.median(clean_best[:, 0]):.2f} (90th percentile "
              f"{np.quantile(clean_best[:, 0], 0.9):.2f}), 8th best median {np.median(clean_best[:, K - 1]):.2f}")
        print("| transform | copies | cosine with source: 10th pct / median | source in exact 8 nearest "
              "| in IVF 8 nearest, 1/8 of cells probed | 1/4 probed |")
        print("|---|---|---|---|---|---|")
        p0 = len(train) + len(clean)
        for t in TRANSFORMS:
            ks = [k for k, (tt, _, _) in enumerate(planted) if tt == t]
            queries = np.array([p0 + k for k in ks])
            sources = np.array([planted[k][1] for k in ks])
            vers = query_versions(th, queries, white)
            exact = np.max(vers @ ref.T, axis=0)
            own = exact[np.arange(len(ks)), sources]
            cells = [f"{np.mean(in_top(ivf_scores(vers, ref, share, args.seed), sources)):.2f}"
                     for share in (1 / 8, 1 / 4)]
            print(f"| {t} | {len(ks)} | {np.quantile(own, 0.1):.2f} / {np.median(own):.2f} | "
                  f"{np.mean(in_top(exact, sources)):.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

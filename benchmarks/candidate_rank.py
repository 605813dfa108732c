"""Where the k-NN candidate stage and the affine fit earn their keep, on real images.

    python benchmarks/candidate_rank.py [--per 100] [--seed 0] [--sets photo32,ct]

Same data as benchmarks/leakage_recall.py (train images, one transformed copy per transform). For
cropped, shifted and slightly rotated copies it prints

* the share of copies whose source is among the k nearest train images (k = 5 and 8) by the coarse
  descriptor, for three designs: raw descriptors with 5 axis-only query shifts (0, +-3 px; matcher
  version 3), raw descriptors with the 3x3 grid of shifts (0, +-2 px), and partially whitened
  descriptors with that grid (what a scan uses);
* the share of copies confirmed against their source by the verification cascade (0.90 at zero
  or integer shift, 0.94 after the search; no smooth-image or aperture rule) and the median
  similarity, without and with the affine fit (verify_pairs(refine_floor=2) turns the fit off);
  "without" uses today's coarse discrete grid (3 zooms, 4 angles), not the finer one that
  matcher version 3 had before the fit existed.
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
from dsaudit.similarity.matching import KNN_SHIFTS, Whitening  # noqa: E402
from dsaudit.index import hashing  # noqa: E402
from dsaudit.similarity import verify  # noqa: E402

AXIS_SHIFTS = ((0, 0), (3, 0), (-3, 0), (0, 3), (0, -3))
TRANSFORMS = ("crop10", "shift10", "rotate")


def ranks(th, refs, queries, sources, shifts, white: bool) -> np.ndarray:
    """Rank of each query's source among the references (0 = nearest), best cosine over shifts."""
    desc = hashing.descriptors(th)
    f = Whitening.fit(desc[refs]) if white else (lambda d: d)
    ref = f(desc[refs])
    best = np.full((len(queries), len(refs)), -np.inf, np.float32)
    for dy, dx in shifts:
        best = np.maximum(best, f(hashing.shifted_descriptors(th[queries], dy, dx)) @ ref.T)
    own = best[np.arange(len(queries)), sources]
    return (best > own[:, None]).sum(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    R.add_set_arguments(ap, "photo32,ct")
    args = ap.parse_args()
    designs = (("raw, 5 axis shifts", AXIS_SHIFTS, False), ("raw, 3x3 grid", KNN_SHIFTS, False),
               ("whitened, 3x3 grid", KNN_SHIFTS, True))
    for name, (train, clean, planted) in R.benchmark_sets(args.sets, args.per, args.seed):
        th = R.thumbs_of(train + clean + [q for _, _, q in planted])[0]   # (thumbnails, views, has a view)
        refs = np.arange(len(train))
        p0 = len(train) + len(clean)
        print(f"\n{name}: {len(train)} train images")
        print("| transform | " + " | ".join(f"{d} top 5 / top 8" for d, _, _ in designs)
              + " | confirmed / median similarity, without fit | with fit |")
        print("|---" * (len(designs) + 3) + "|")
        for t in TRANSFORMS:
            ks = [k for k, (tt, _, _) in enumerate(planted) if tt == t]
            queries = np.array([p0 + k for k in ks])
            sources = np.array([planted[k][1] for k in ks])
            cells = []
            for _, shifts, white in designs:
                r = ranks(th, refs, queries, sources, shifts, white)
                cells.append(f"{np.mean(r < 5):.2f} / {np.mean(r < 8):.2f}")
            zero = np.zeros(len(ks), int)
            for floor in (2.0, None):   # 2.0: no pair reaches the affine fit
                kw = {} if floor is None else {"refine_floor": floor}
                v = verify.verify_pairs(th, sources, queries, zero, threshold=0.90, search_threshold=0.94, **kw)
                ok = v.similarity >= np.where(v.stage >= 2, 0.94, 0.90)
                cells.append(f"{ok.mean():.2f} / {np.median(v.similarity):.3f}")
            print(f"| {t} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

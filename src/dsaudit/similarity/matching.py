"""Near-duplicate matching: candidate search and verification over the views of a set of images.

``matches_with_views(views, split_code, cfg)`` returns the matches table (MATCH_COLUMNS, positions
into the views):

1. candidates: (a) a Hamming join of every image's 8 dihedral pHashes against all identity pHashes
   within ``near_threshold`` bits (multi-index hashing, ``similarity.neighbors``), which catches
   re-encodes, resizes, brightness changes, flips and 90-degree rotations; (b) for each val/test
   image its ``knn`` nearest train images by a coarse descriptor, which catches shifts and crops
   that global hashes miss; (c) the same k-NN inside each split, for augmented copies saved next
   to their originals;
2. every candidate is verified by aligning the thumbnails (``similarity.verify``) and kept when the
   similarity reaches ``verify_threshold``; ``describe_transform`` names the transform when it was
   recognised.

``similarity.duplicates`` turns the matches of an index into the pairs and groups the checks judge.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.config import LeakageConfig
from dsaudit.index.hashing import DIHEDRAL_NAMES, finalize, shifted_descriptors, squeezed_descriptors
from dsaudit.similarity.canonical import frame_candidates
from dsaudit.similarity.ops import search_ops
from dsaudit.similarity.views import Views

# Bump when near_matches (or what it calls in neighbors.py / verify.py) changes what it finds, so
# that memoised matches from earlier scans are not reused.
MATCHER_VERSION = "20"
# a candidate pair is also confirmed when its oriented thumbnails differ at zero shift by at most
# CLOSE_RMS grey levels (RMS) and at most CLOSE_RATIO of the larger thumbnail's standard deviation
CLOSE_RMS = 1.5
CLOSE_RATIO = 0.3

# translations (thumbnail pixels of 32) at which val/test descriptors are also looked up: a 3x3
# grid, since real shifts move both ways at once (with 5 axis-only shifts of 3 px, 21% of shifted CT
# copies had their source outside the 5 nearest, with the grid 10%: benchmarks/candidate_rank.py)
KNN_SHIFTS = tuple((dy, dx) for dy in (0, -2, 2) for dx in (0, -2, 2))
# With the shifts, the query is also scored squeezed to this share of each axis in turn
# (hashing.squeezed_descriptors): a copy cut to 75-85% of one side (a 4:3 picture cut to a square)
# is stretched along that axis only, which no shift or isotropic crop of the grid resembles.
# With the one-axis fits in verify.py: COVID-CT crop1axis recall 0.20 -> 0.95
# (benchmarks/leakage_recall.py --per 60 --extra).
KNN_SQUEEZES = ((1, 0.8), (2, 0.8))
# partial whitening of the k-NN descriptors (eigenvalue ** -WHITEN_POWER): directions that every
# image of the dataset shares (the body outline of all CT slices) stop dominating the ranking
WHITEN_POWER = 0.25
# a cross-split k-NN candidate is verified only when its whitened cosine is within KNN_MARGIN of
# the query's best: where the sources of copies rank 5th-8th (CT lookalikes) the cosines are
# bunched and all stay; where they are spread out, the tail is junk (COVID-CT benchmark: half the
# candidates, the same recall; 0.15 started to lose crops). Inside splits the nearest neighbours
# are mostly siblings (adjacent slices), so the margin is wider there: at 0.2 the COVID-CT pool
# lost its one cross-label duplicate; at 0.4 it keeps every finding with 45% of the candidates.
KNN_MARGIN = 0.2
KNN_WITHIN_MARGIN = 0.4
# Turned and mirrored copies (augmentation recipes turn by up to 40-72 degrees, mirror both ways,
# shift and zoom): a k-NN search of their own in each image's frame (similarity/canonical.py: every
# thumbnail turned into the frame of its dominant gradient orientation, so that a copy turned by
# any angle lines up with its source), KNN_FRAME_K nearest references per query, kept within
# FRAME_MARGIN of the query's best cosine there. It replaces matcher 17's turned search (the query
# at +-20/+-40 degrees, mirrored or not: 9 fixed versions): on the CIFAR-10 copies of
# benchmarks/augment_recipes.py, recall 0.36 -> 0.58 with 12% fewer candidates; keeping the
# turned search beside it gave 0.60 for 49% more candidates than this.
KNN_FRAME_K = 3
# A frame-search match is taken only when both images hold detail in several directions (detail
# isotropy, verify.isotropy, at least this; the aperture rule of every shifted match asks 0.55): a
# curved rim against a plain background (a flower's edge, a ball), turned by 60-120 degrees, zoomed
# and shifted, lines up with another such rim above the search bar. On the seed-0 patch set of
# benchmarks/compare_tools.py (cifar) 0.65 took the extra pairs 41 -> 12 and the clean val images
# flagged 11 -> 7 of 400 (matcher 18: 26 and 7), for a recipe recall on CIFAR-10 photos
# (benchmarks/augment_recipes.py) of 0.566 -> 0.561. At 0.7: 10 pairs, 6 flagged, 0.553, and the
# black-filled copy of tests/test_recipes.py lost; a bar of 0.96 on these matches instead: 7
# flagged but a recall of 0.394.
FRAME_MIN_ISOTROPY = 0.65
FRAME_MARGIN = 0.05        # 2.3 instead of 2.9 candidates per query at k 3, the same recall
HFLIP = DIHEDRAL_NAMES.index("hflip")
# the matches table (near_matches; matches_with_views adds view_a, view_b)
MATCH_COLUMNS = ("a", "b", "distance", "similarity", "variant", "zoom", "shift_y", "shift_x", "angle", "source",
                 "stage")

# what was done to the reference to obtain the query, for query variant k (inverse of variant k)
_INVERSE_NAME = {"rot90": "rot270", "rot270": "rot90"}


def _variant_name(k: int) -> str:
    name = DIHEDRAL_NAMES[int(k)]
    return _INVERSE_NAME.get(name, name)


# ------------------------------------------------------------------------------------------
# Matching on arrays (also used by benchmarks/leakage_recall.py)
# ------------------------------------------------------------------------------------------

class Whitening:
    """Partial PCA whitening of descriptors, fitted on the reference images of one scan.

    The coarse descriptor of two unrelated images of one kind (CT slices, satellite tiles) is
    dominated by what all of them share; dividing each principal direction by the fourth root of
    its variance lets the individual content rank the neighbours (COVID-CT, source among the 8
    nearest: crops 90% -> 99%, shifts 93% -> 99%, small rotations 97% -> 92%;
    benchmarks/candidate_rank.py). Deterministic: a 64x64 covariance and its eigendecomposition."""

    def __init__(self, mean: np.ndarray, matrix: np.ndarray):
        self.mean, self.matrix = mean, matrix   # matrix: principal directions, each rescaled

    @classmethod
    def fit(cls, desc: np.ndarray) -> "Whitening":
        x = desc.astype(np.float64)
        mean = x.mean(axis=0)
        if len(x) < 2 * x.shape[1]:  # too few images for a stable covariance (or even a mean): as is
            return cls(np.zeros(x.shape[1], np.float32), np.eye(x.shape[1], dtype=np.float32))
        w, v = np.linalg.eigh(np.cov((x - mean).T))
        w = np.maximum(w, 0) + 1e-3 * max(float(w.max()), 1e-12)
        return cls(mean.astype(np.float32), (v * w ** -WHITEN_POWER).astype(np.float32))

    def __call__(self, desc: np.ndarray) -> np.ndarray:
        z = (desc - self.mean) @ self.matrix
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)


def within_search_plan(m: int, cfg: LeakageConfig) -> str:
    """How the k-NN search inside a split of m images runs: "shifts" (exact, with the query
    versions), "no-shifts" (exact, over budget with the versions), "approximate" (over budget even
    without them: an inverted-file index with the versions, probing what the budget pays for; see
    `approximate_plan`) or "off". Never skipped: the budget makes it approximate, not absent."""
    if cfg.knn_within <= 0 or m < 2:
        return "off"
    n_shifts = len(KNN_SHIFTS) + len(KNN_SQUEEZES) if cfg.knn_shifts else 1
    if m * m * n_shifts <= cfg.knn_within_max_pairs:
        return "shifts"
    return "no-shifts" if m * m <= cfg.knn_within_max_pairs else "approximate"


# An approximate search compares a query version with a reference at about this many times the
# cost of one comparison of the exact blocked products (faiss scans its cells query by query); the
# budget is spent in exact comparisons (benchmarks/scan_speed.py prints the stages' times)
IVF_COST = 4.0
# The query versions (shifts, squeezes) are kept when the budget pays for at least this share of
# the references with them (benchmarks/knn_bound.py: a quarter of the cells keeps nearly every
# copy's source, an eighth loses 2-6 points); below it the versions go first and the share grows
MIN_SHARE = 1 / 16


def approximate_plan(n_queries: int, n_refs: int, n_versions: int, budget: float) -> tuple[bool, float]:
    """(keep the query versions?, share of the references to compare) for an approximate search
    of n_queries x n_versions against n_refs within `budget` exact comparisons. The index probes
    at least ann.MIN_PROBES cells whatever the share, so the search is never empty."""
    full = float(n_queries) * n_refs * IVF_COST
    with_versions = budget / max(full * n_versions, 1.0)
    if n_versions > 1 and with_versions >= MIN_SHARE:
        return True, float(min(1.0, with_versions))
    return False, float(min(1.0, budget / max(full, 1.0)))


def _knn_scored(thumbs: np.ndarray, desc: np.ndarray, refs: np.ndarray, queries: np.ndarray,
                shifts, k: int, min_sim: float, white: "Whitening | None" = None, squeezes=(),
                approx: "dict | None" = None):
    """(reference, query, cosine) of each query's k nearest references by whitened descriptor,
    the query scored at the best of its versions: translated by each of `shifts` (pass () for
    none) and squeezed along one axis by each of `squeezes`. The whitening is fitted on the
    references unless given. `approx` ({"share": s, "runs": [...]}) searches an inverted-file
    index over the references probing share s of its cells instead (ann.ivf_join; the index is
    built once per reference set and kept in the dict) and appends what it kept to "runs"."""
    if not len(refs) or not len(queries) or not (len(shifts) or len(squeezes)):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    white = white or Whitening.fit(desc[refs])
    versions = [white(desc[queries] if (dy, dx) == (0, 0) else shifted_descriptors(thumbs[queries], dy, dx))
                for dy, dx in shifts]
    versions += [white(squeezed_descriptors(thumbs[queries], axis, f)) for axis, f in squeezes]
    if approx is None:
        q, r, sim = search_ops().knn_join(np.stack(versions), white(desc[refs]), k, min_sim=min_sim)
        return refs[r], queries[q], sim
    IvfIndex, ivf_join = search_ops().ivf()

    key = ("index", len(refs), int(refs[0]), int(refs[-1]))
    if key not in approx:
        approx[key] = IvfIndex(white(desc[refs]))
    q, r, sim, kept = ivf_join(np.stack(versions), approx[key], k, min_sim, approx["share"])
    approx["runs"].append(kept)
    return refs[r], queries[q], sim


def _within_margin(r: np.ndarray, q: np.ndarray, sim: np.ndarray, margin: float, n: int,
                   best: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (reference, query) pairs within `margin` of their query's best cosine (positions < n)."""
    if margin >= 1 or not len(q):
        return r, q
    if best is None:
        best = np.full(n, -np.inf, np.float32)
        np.maximum.at(best, q, sim)
    keep = sim >= best[q] - margin
    return r[keep], q[keep]


def _kth_best(q: np.ndarray, sim: np.ndarray, k: int, n: int, floor: float) -> np.ndarray:
    """(n,) each query's k-th best cosine in (q, sim); `floor` where it has fewer than k."""
    kth = np.full(n, floor, np.float32)
    if len(q):
        order = np.lexsort((-sim, q))
        qs, ss = q[order], sim[order]
        rank = np.arange(len(qs)) - np.searchsorted(qs, qs, side="left")
        at_k = rank == k - 1
        kth[qs[at_k]] = ss[at_k]
    return kth


def _knn_candidates(thumbs: np.ndarray, desc: np.ndarray, refs: np.ndarray, queries: np.ndarray,
                    shifts, k: int, min_sim: float, margin: float = 1.0,
                    is_view: np.ndarray | None = None, approx: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(reference, query) positions of each query's k nearest references by whitened descriptor,
    the query scored at the best of `shifts`, within `margin` of the query's best cosine.

    Further searches add candidates without displacing any: the one-axis squeezes of the query
    (KNN_SQUEEZES, with the shift grid) and, with second views (`is_view`, matches_with_views),
    each inner view to every reference and each thumbnail to the references' inner views. The
    main search between whole-image thumbnails runs exactly as without them, with its own margin;
    a further candidate must reach the query's k-th best cosine of the main search (when it was a
    query there) and lie within the margin of its best cosine of any search. Without this, an
    extra version lifts lookalikes into a query's k nearest and pushes the copy out (COVID-CT
    rotations 90% -> 89% with the squeezes, crops 99% -> 97% with the views;
    benchmarks/leakage_recall.py --per 100). The whitening is
    fitted on the whole-image references throughout. `approx`: see _knn_scored."""
    n = len(thumbs)
    views = is_view is not None and bool(is_view[refs].any() or is_view[queries].any())
    if views:
        r_full, r_view = refs[~is_view[refs]], refs[is_view[refs]]
        q_full, q_view = queries[~is_view[queries]], queries[is_view[queries]]
    else:
        r_full, q_full = refs, queries
    white = Whitening.fit(desc[r_full if len(r_full) else refs]) if len(refs) and len(queries) else None
    r1, q1, s1 = _knn_scored(thumbs, desc, r_full, q_full, shifts, k, min_sim, white, approx=approx)
    extra = []
    squeezes = KNN_SQUEEZES if len(shifts) > 1 else ()
    if squeezes:
        extra.append(_knn_scored(thumbs, desc, r_full, q_full, (), k, min_sim, white, squeezes, approx=approx))
    if views:
        extra.append(_knn_scored(thumbs, desc, refs, q_view, shifts, k, min_sim, white, squeezes, approx=approx))
        extra.append(_knn_scored(thumbs, desc, r_view, q_full, shifts, k, min_sim, white, squeezes, approx=approx))
    if not extra:
        return _within_margin(r1, q1, s1, margin, n)
    rx, qx, sx = (np.concatenate([e[i] for e in extra]) for i in range(3))
    keep = sx >= _kth_best(q1, s1, k, n, min_sim)[qx]
    rx, qx, sx = rx[keep], qx[keep], sx[keep]
    best = np.full(n, -np.inf, np.float32)
    np.maximum.at(best, np.concatenate([q1, qx]), np.concatenate([s1, sx]))
    r1, q1 = _within_margin(r1, q1, s1, margin, n)
    rx, qx = _within_margin(rx, qx, sx, margin, n, best=best)
    return np.concatenate([r1, rx]), np.concatenate([q1, qx])


def near_matches(views: Views, split_code: np.ndarray, cfg: LeakageConfig, ref_code: int | None = 0,
                 timings: dict[str, float] | None = None, keep_all: bool = False,
                 is_view: np.ndarray | None = None) -> pd.DataFrame:
    """Verified near-duplicate pairs among the images of `views` (positions 0..n-1; their inner
    views are not looked at here: matches_with_views).

    `split_code` is an int per image; kNN candidates go from every image whose code differs from
    `ref_code` to the images of `ref_code` (None: no kNN stage). Returns a DataFrame with columns
    a, b (b seen through dihedral `variant` lines up with a), distance (Hamming bits of the best
    orientation, or NaN), similarity, variant, zoom, shift_y, shift_x, angle, source ("hash" /
    "knn"), stage. `keep_all` (for benchmarks) keeps
    unconfirmed candidates too, after the full alignment search. `is_view` marks the positions
    that are second views of an image (matches_with_views): the k-NN searches them apart
    (_knn_candidates)."""
    timings = timings if timings is not None else {}
    thumbs, phash, desc, smooth = views.thumbs, views.phash, views.desc, views.smooth
    n = len(thumbs)
    cols = ["a", "b", "distance", "similarity", "variant", "zoom", "shift_y", "shift_x", "angle", "source"]
    if n < 2:
        return pd.DataFrame({c: [] for c in cols})
    t0 = time.perf_counter()
    qi, rj, d, var = search_ops().hash_join(phash, phash[:, 0], cfg.near_threshold)
    keep = qi < rj
    qi, rj, d, var = qi[keep], rj[keep], d[keep], var[keep]
    # orientation convention: query = qi seen through variant var lines up with rj
    ha, hb, hvar, hd = rj, qi, var, d.astype(np.float32)
    timings["hash_search"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    shifts = KNN_SHIFTS if cfg.knn_shifts else ((0, 0),)
    approximations: dict[str, dict] = {}   # what each approximate search kept (out.attrs)
    found_a: list[np.ndarray] = []
    found_b: list[np.ndarray] = []
    turned: list[tuple[np.ndarray, ...]] = []   # (reference, query, turn, mirrored) of the turned search
    if ref_code is not None and cfg.knn > 0:
        refs = np.nonzero(split_code == ref_code)[0]
        queries = np.nonzero(split_code != ref_code)[0]
        n_versions = len(shifts) + (len(KNN_SQUEEZES) if len(shifts) > 1 else 0)
        if len(refs) and len(queries):
            approx, use = None, shifts   # over budget: approximate, never skipped
            if len(refs) * len(queries) * n_versions > cfg.knn_max_pairs:
                keep, share = approximate_plan(len(queries), len(refs), n_versions, cfg.knn_max_pairs)
                approx, use = {"share": share, "runs": []}, (shifts if keep else ((0, 0),))
            r, q = _knn_candidates(thumbs, desc, refs, queries, use, cfg.knn, cfg.knn_min_similarity,
                                   margin=KNN_MARGIN, is_view=is_view, approx=approx)
            found_a.append(r)
            found_b.append(q)
            if len(use) > 1:
                turned.append(frame_candidates(thumbs, refs, queries, KNN_FRAME_K, cfg.knn_min_similarity,
                                               FRAME_MARGIN, Whitening.fit, is_view=is_view, approx=approx))
            if approx is not None:
                approximations["across"] = dict(_approximation_summary(approx["runs"]), shifts=len(use) > 1)
    timings["knn_search"] = time.perf_counter() - t0

    # inside each split (or the one pool): augmented copies written next to their originals
    t0 = time.perf_counter()
    if cfg.knn_within > 0:
        for code in np.unique(split_code):
            members = np.nonzero(split_code == code)[0]
            n_images = len(members) if is_view is None else int(np.count_nonzero(~is_view[members]))
            plan = within_search_plan(n_images, cfg)   # DSA204 reports what the budget changed
            if plan == "off":
                continue
            use = ((0, 0),) if plan == "no-shifts" else shifts
            approx = None
            if plan == "approximate":
                n_versions = len(use) + (len(KNN_SQUEEZES) if len(use) > 1 else 0)
                keep, share = approximate_plan(n_images, n_images, n_versions, cfg.knn_within_max_pairs)
                approx, use = {"share": share, "runs": []}, (use if keep else ((0, 0),))
            r, q = _knn_candidates(thumbs, desc, members, members, use, cfg.knn_within + 1,
                                   cfg.knn_min_similarity, margin=KNN_WITHIN_MARGIN, is_view=is_view,
                                   approx=approx)
            other = r != q
            found_a.append(r[other])
            found_b.append(q[other])
            if plan != "no-shifts" and len(use) > 1:
                turned.append(frame_candidates(thumbs, members, members, KNN_FRAME_K, cfg.knn_min_similarity,
                                               FRAME_MARGIN, Whitening.fit, is_view=is_view, approx=approx))
            if approx is not None:
                approximations[f"within:{int(code)}"] = dict(_approximation_summary(approx["runs"]),
                                                             shifts=len(use) > 1)
    timings["knn_within_search"] = time.perf_counter() - t0
    ka = np.concatenate(found_a) if found_a else np.zeros(0, np.int64)
    kb = np.concatenate(found_b) if found_b else np.zeros(0, np.int64)

    ta_, tb_, tturn, tmir = (np.concatenate([t[i] for t in turned]) for i in range(4)) if turned else (
        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool))

    # union of candidates; a kNN candidate already found by the hash keeps the hash's orientation.
    # A turned candidate is verified from its version (turn, mirror) even when another search
    # found the pair too: from the unturned start the fit cannot reach a turn of 20-40 degrees
    a = np.concatenate([ha, ka, ta_])
    b = np.concatenate([hb, kb, tb_])
    v = np.concatenate([hvar, np.zeros(len(ka), np.int64), np.where(tmir, HFLIP, 0).astype(np.int64)])
    turn = np.concatenate([np.zeros(len(ha) + len(ka), np.float32), tturn])
    dist = np.concatenate([hd, np.full(len(ka) + len(ta_), np.nan, np.float32)])
    src = np.concatenate([np.zeros(len(ha), np.int8), np.ones(len(ka), np.int8), np.full(len(ta_), 2, np.int8)])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    is_turned = src == 2
    order = np.lexsort((src, is_turned, hi, lo))
    lo, hi, a, b, v, dist, src, turn, is_turned = (x[order] for x in (lo, hi, a, b, v, dist, src, turn, is_turned))
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1]) | (is_turned[1:] != is_turned[:-1])
    a, b, v, dist, src, turn = a[first], b[first], v[first], dist[first], src[first], turn[first]

    t0 = time.perf_counter()
    # a pHash agreement between inner views is not taken as extra evidence: the views of smooth
    # images on a flat page (digits) are alike by construction (two writers' zeros: 4 bits apart as
    # views, 8 as whole images)
    boost = smooth_boost(smooth, a, b, dist if is_view is None else np.where(is_view[a] | is_view[b], np.nan, dist),
                         cfg)
    ver = search_ops().verify(thumbs, a, b, v, threshold=1.01 if keep_all else cfg.verify_threshold,
                       search_threshold=cfg.search_threshold, boost=boost, min_isotropy=cfg.min_isotropy,
                       turn=turn, turned=src == 2)
    timings["verify"] = time.perf_counter() - t0
    timings["candidates"] = float(len(a))
    need = np.where(ver.stage >= 2, max(cfg.search_threshold, cfg.verify_threshold), cfg.verify_threshold)
    need = need + boost
    # the aperture problem: a shift or search lines up any two single-edge images (verify.isotropy)
    need = np.where((ver.stage >= 1) & (ver.isotropy < cfg.min_isotropy), np.inf, need)
    need = np.where((src == 2) & (ver.isotropy < FRAME_MIN_ISOTROPY), np.inf, need)
    # Pixel-close pairs: at zero shift (no search, so no multiple-comparison allowance) the thumbnails
    # differ by about a grey level, a small fraction of their contrast. That is what JPEG does to a
    # small, low-contrast image, whose band-pass detail is then mostly compression noise.
    close = (ver.rms <= CLOSE_RMS) & (ver.rms <= CLOSE_RATIO * ver.contrast)
    by_close = close & (ver.similarity < need)
    if by_close.any():  # report the zero-shift alignment that confirmed them
        ver.shift[by_close] = 0
        ver.zoom[by_close] = 1.0
        ver.angle[by_close] = 0.0
        ver.stage[by_close] = 0
    ok = (ver.similarity >= need) | close if not keep_all else np.ones(len(a), bool)
    # For pairs confirmed as pixel-close, report a pixel-level similarity (1 - RMS/contrast) rather
    # than the band-pass detail correlation that was mostly compression noise for them.
    similarity = ver.similarity.astype(float).copy()
    pixel_sim = 1.0 - ver.rms / np.maximum(ver.contrast, 1e-6)
    similarity[by_close] = np.maximum(similarity[by_close], pixel_sim[by_close])
    out = pd.DataFrame({
        "a": a[ok], "b": b[ok],
        "distance": dist[ok], "similarity": similarity[ok],
        "variant": v[ok], "zoom": ver.zoom[ok], "shift_y": ver.shift[ok, 0], "shift_x": ver.shift[ok, 1],
        "angle": ver.angle[ok], "source": np.array(["hash", "knn", "turned"])[src[ok]], "stage": ver.stage[ok],
    })
    if (src[ok] == 2).any():   # a pair found by the turned search and another: its best match
        lo, hi = np.minimum(out["a"], out["b"]), np.maximum(out["a"], out["b"])
        out = (out.assign(_lo=lo, _hi=hi).sort_values(["_lo", "_hi", "similarity"], ascending=[True, True, False],
                                                      kind="stable")
               .drop_duplicates(["_lo", "_hi"]).drop(columns=["_lo", "_hi"]).sort_index().reset_index(drop=True))
    out.attrs["approximate"] = approximations
    return out


def _approximation_summary(runs: list) -> dict[str, float]:
    """One search's approximation (ann.Approximation of its runs: the main search, the squeezes,
    the views): the share of the references compared and the sampled neighbour recall, the
    smallest of the runs (the main search's first)."""
    main = runs[0].as_dict()
    main["share"] = round(min(r.share for r in runs), 4)
    main["neighbour_recall"] = round(min(r.recall for r in runs), 4)
    return main


def matches_with_views(views: Views, split_code: np.ndarray, cfg: LeakageConfig, ref_code: int | None = 0,
                       timings: dict[str, float] | None = None, keep_all: bool = False) -> pd.DataFrame:
    """The matches table: ``near_matches`` over every image's thumbnail plus, for images with a flat
    border (`views.has_inner`), the thumbnail of what is inside it (hashing.thumbnails) as a second view.

    Each view is searched as an image of its owner's split; pairs map back to the owners (a pair of
    an image with itself is dropped) and each pair of images keeps its best match. Columns as
    near_matches (MATCH_COLUMNS), plus view_a / view_b: the positions in `views.thumbs` followed by
    the inner views, so that ``describe_transform`` sees the thumbnails that matched."""
    thumbs, inner, has_inner = views.thumbs, views.inner, views.has_inner
    n = len(thumbs)
    extra = np.nonzero(has_inner)[0] if inner is not None and has_inner is not None else np.zeros(0, np.int64)
    if not len(extra):
        out = near_matches(views, split_code, cfg, ref_code=ref_code, timings=timings, keep_all=keep_all)
        return out.assign(view_a=out["a"], view_b=out["b"])
    second = finalize({"thumb": inner[extra]})
    owner = np.concatenate([np.arange(n), extra])
    both = Views(thumbs=np.concatenate([thumbs, inner[extra]]), phash=np.concatenate([views.phash, second["phash"]]),
                 desc=np.concatenate([views.desc, second["desc"]]),
                 smooth=None if views.smooth is None else np.concatenate([views.smooth, second["smooth"]]))
    out = near_matches(both, split_code[owner], cfg, ref_code=ref_code, timings=timings, keep_all=keep_all,
                       is_view=np.arange(len(owner)) >= n)
    approximations = out.attrs.get("approximate", {})
    out = out.assign(view_a=out["a"], view_b=out["b"], a=owner[out["a"].to_numpy()], b=owner[out["b"].to_numpy()])
    out = out[out["a"] != out["b"]]
    lo, hi = np.minimum(out["a"], out["b"]), np.maximum(out["a"], out["b"])
    out = (out.assign(_lo=lo, _hi=hi).sort_values(["_lo", "_hi", "similarity", "view_a", "view_b"],
                                                  ascending=[True, True, False, True, True], kind="stable")
           .drop_duplicates(["_lo", "_hi"]).drop(columns=["_lo", "_hi"]).reset_index(drop=True))
    out.attrs["approximate"] = approximations
    return out


def smooth_boost(smooth: np.ndarray | None, a: np.ndarray, b: np.ndarray, dist: np.ndarray,
                 cfg: LeakageConfig) -> np.ndarray:
    """Extra similarity required of pairs of smooth (upscaled, low-information) images: 0 below a
    detail autocorrelation of 0.86, rising to cfg.smooth_boost at 0.90 and above, and a third
    more when the pHashes do not agree closely as well (distance unknown or > near_threshold/2)."""
    if smooth is None or not len(a):
        return np.zeros(len(a), np.float32)
    s = np.maximum(smooth[a], smooth[b])
    weak_hash = ~(np.nan_to_num(dist, nan=99.0) <= cfg.near_threshold / 2)
    boost = cfg.smooth_boost * (1.0 + weak_hash / 3.0)
    return (np.clip((s - 0.86) / 0.04, 0.0, 1.0) * boost).astype(np.float32)


def describe_transform(row: Any, thumbs: np.ndarray, sizes: np.ndarray | None, swapped: bool = False) -> str:
    """Name what turns image a into image b (or b into a when `swapped`), as far as recognised.
    `thumbs` holds the images' thumbnails followed by their inner views (matches_with_views:
    row.view_a / row.view_b index it; a view at or past len(sizes) is an inner one)."""
    parts = []
    if row.variant:
        name = _variant_name(row.variant)
        parts.append(_INVERSE_NAME.get(name, name) if swapped else name)
    if abs(row.angle) >= 1.0:  # the affine fit reports fractions of a degree for unrotated copies
        parts.append(f"rotate {row.angle:+.0f}deg")
    if abs(row.zoom - 1.0) > 0.02:
        parts.append("crop/zoom")
    if row.shift_y or row.shift_x:
        parts.append("shift")
    va, vb = getattr(row, "view_a", row.a), getattr(row, "view_b", row.b)
    n_images = len(sizes) if sizes is not None else len(thumbs)
    if (va >= n_images) != (vb >= n_images):   # one side matched through the view inside its border
        parts.append("pad/border")
    ta, tb = thumbs[va].astype(np.float32), thumbs[vb].astype(np.float32)
    if abs(ta.mean() - tb.mean()) > 8 or not 0.85 < (tb.std() + 1) / (ta.std() + 1) < 1.18:
        parts.append("brightness/contrast")
    if sizes is not None and not parts and tuple(sizes[row.a]) != tuple(sizes[row.b]):
        parts.append("resize")
    return "+".join(parts)


def describe_approximation(kept: dict) -> str:
    """One sentence on what an approximate k-NN search compared and kept."""
    return (f"an inverted-file index compared each image{'' if kept.get('shifts') else ' (without query shifts)'} "
            f"with {kept['share']:.1%} of the references "
            f"({kept['probed']} of {kept['cells']} cells per query version); on a sample of "
            f"{kept['recall_sample']} images it kept {kept['neighbour_recall']:.1%} of the exact "
            f"nearest neighbours")

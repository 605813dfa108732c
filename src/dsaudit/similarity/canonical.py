"""Candidates for turned and mirrored copies at any angle: the k-NN search in each image's own frame.

Augmentation recipes turn their copies by any angle up to 40-72 degrees, mirror them (both ways in
the melanoma recipe of issue 15) and shift and zoom them as well (Keras ImageDataGenerator,
RandomRotation(0.2), albumentations' ShiftScaleRotate). The turned search that this replaced
(matcher 17-18) tried a few fixed turns of the query; a copy whose turn falls between them, or that is
flipped vertically as well, resembles none of them in the coarse 8x8 descriptor. Here every
thumbnail is instead turned into a frame of its own, decided by its content: the dominant
gradient orientation inside a centred Gaussian window (the orientation assignment of SIFT, on the
32x32 thumbnail). A copy turned by any angle has its dominant orientation turned with it, so
in their frames the copy and its source line up up to the error of the estimate, which the shift
grid and verification's affine fit (up to 15 degrees) cover. A mirror is a mirror in any frame:
the query is also searched mirrored. The reference side keeps the frames of its two strongest
orientations, since two peaks of similar weight swap under resampling, fill and crop.

Measured on the CIFAR-10 copies of benchmarks/augment_recipes.py (--per 40; share of copies whose
source is among the 4 nearest references, in the direction the scan searches): the turned search
of matcher 18 0.38, this search 0.62; with the main search's 8 nearest, 0.50 -> 0.70 (0.66
without the turned search). The frame's cost is one gradient histogram per thumbnail and one
bilinear turn per version; the search is a k-NN join like the others (18 query versions against
two frames of every reference).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from dsaudit.index.hashing import DIHEDRAL_NAMES, THUMB, _blur, apply_dihedral, block_means, shifted
from dsaudit.similarity.ops import search_ops
from dsaudit.similarity.verify import turn_one_by_one
from dsaudit.threads import parallel_map

N_BINS = 36           # orientation histogram bins (10 degrees)
WINDOW = 8.0          # Gaussian window (thumbnail pixels): the centre counts, the fill at the edges less
BLUR = 1.0            # pre-blur against JPEG noise before the gradients
SMOOTHING = 2         # passes of a circular [1, 1, 1] / 3 filter over the histogram
REF_FRAMES = 2        # frames of each reference (its strongest orientations)
# query shifts in its frame (thumbnail pixels): a grid of 0 and +-3 (recall 0.60 at +-3 against
# 0.58 at +-2 in the 8 nearest; 0.63 with 5x5 at +-2/+-4, at 2.8x the versions)
SHIFTS = tuple((dy, dx) for dy in (0, -3, 3) for dx in (0, -3, 3))
HFLIP = DIHEDRAL_NAMES.index("hflip")
# Images turned, oriented and described together: the per-image steps make a dozen (images x 1,024)
# temporaries, which for a whole 47,000-image split were 380 MB each and ran from memory, not cache
# (the frame search of 60,000 photos took 35 s in these steps alone, 4 GB at its peak)
CHUNK = 2048
# Queries searched together: their 18 versions (QUERY_CHUNK x 18 x 64 floats) stay a few MB
QUERY_CHUNK = 4096

_C = (THUMB - 1) / 2.0
_GY, _GX = np.mgrid[0:THUMB, 0:THUMB].astype(np.float32)
_WEIGHT = np.exp(-((_GY - _C) ** 2 + (_GX - _C) ** 2) / (2 * WINDOW ** 2)).astype(np.float32)
# the descriptor's 4x4 blocks weighted by the same window: in a frame the corners hold the clamped
# edge of the turn, and in a copy the fill of its recipe (recall among the 4 nearest 0.64 -> 0.72)
_BLOCK = (np.arange(THUMB // 4) * 4 + 1.5) - _C
_BLOCK_WEIGHT = np.exp(-(_BLOCK[:, None] ** 2 + _BLOCK[None, :] ** 2) / (2 * WINDOW ** 2)).astype(np.float32).ravel()


def _chunked(fn: Callable[..., np.ndarray], n: int, *arrays: np.ndarray) -> np.ndarray:
    """fn over CHUNK-row slices of `arrays` (each of n rows) on the thread pool, concatenated."""
    if n <= CHUNK:
        return fn(*arrays)
    parts = parallel_map(lambda s: fn(*(x[s:s + CHUNK] for x in arrays)), list(range(0, n, CHUNK)))
    return np.concatenate(parts)


def orientations(thumbs: np.ndarray, n_peaks: int = REF_FRAMES) -> np.ndarray:
    """(N, n_peaks) dominant gradient orientations in degrees (strongest first) of (N, 32, 32)
    thumbnails (`_orientations`, CHUNK images at a time)."""
    if len(thumbs) == 0:
        return np.zeros((0, n_peaks), np.float32)
    return _chunked(lambda t: _orientations(t, n_peaks), len(thumbs), thumbs)


def _orientations(thumbs: np.ndarray, n_peaks: int) -> np.ndarray:
    """(N, n_peaks) dominant gradient orientations in degrees (strongest first) of (N, 32, 32)
    thumbnails: peaks of a magnitude-weighted, soft-binned, smoothed histogram of gradient
    directions inside the centred Gaussian window, refined by a parabola through the peak bin."""
    n = len(thumbs)
    if n == 0:
        return np.zeros((0, n_peaks), np.float32)
    b = _blur(thumbs.astype(np.float32), BLUR)
    gy = np.zeros_like(b)
    gx = np.zeros_like(b)
    gy[:, 1:-1] = b[:, 2:] - b[:, :-2]
    gx[:, :, 1:-1] = b[:, :, 2:] - b[:, :, :-2]
    mag = (np.hypot(gy, gx) * _WEIGHT).reshape(n, -1)
    pos = (np.arctan2(gy, gx).reshape(n, -1) + np.pi) * (N_BINS / (2 * np.pi)) - 0.5
    lo = np.floor(pos)
    w = (pos - lo).astype(np.float32)
    base = (np.arange(n) * N_BINS)[:, None]
    lo = lo.astype(np.int64) % N_BINS
    hist = (np.bincount((base + lo).ravel(), (mag * (1 - w)).ravel(), minlength=n * N_BINS)
            + np.bincount((base + (lo + 1) % N_BINS).ravel(), (mag * w).ravel(), minlength=n * N_BINS))
    h = hist.reshape(n, N_BINS)
    for _ in range(SMOOTHING):
        h = (np.roll(h, 1, axis=1) + h + np.roll(h, -1, axis=1)) / 3.0
    left, right = np.roll(h, 1, axis=1), np.roll(h, -1, axis=1)
    peaks = np.where((h >= left) & (h >= right), h, -1.0)
    order = np.argsort(-peaks, axis=1, kind="stable")[:, :n_peaks]
    rows = np.arange(n)[:, None]
    before, at, after = left[rows, order], h[rows, order], right[rows, order]
    curve = before - 2 * at + after
    off = np.where(curve < 0, 0.5 * (before - after) / np.where(curve < 0, curve, -1.0), 0.0)
    return ((order + 0.5 + off) * (360.0 / N_BINS) - 180.0).astype(np.float32)


def window_descriptors(thumbs: np.ndarray) -> np.ndarray:
    """(N, 64) unit vectors: the 4x4 block means of hashing.descriptors, less their weighted mean,
    weighted by the centred window (the centre counts, the corners little)."""
    small = block_means(thumbs, 4).reshape(len(thumbs), -1)
    small = (small - (small @ _BLOCK_WEIGHT)[:, None] / _BLOCK_WEIGHT.sum()) * _BLOCK_WEIGHT
    return small / np.maximum(np.linalg.norm(small, axis=1, keepdims=True), 1e-6)


def frame_descriptors(thumbs: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """`window_descriptors` of the thumbnails turned into the frames `angles` (CHUNK at a time)."""
    return _chunked(lambda t, a: window_descriptors(turn_one_by_one(t, -a)), len(thumbs), thumbs,
                    np.asarray(angles, np.float64))


def _query_versions(tq: np.ndarray, white: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(2 * len(SHIFTS), n, 64) whitened descriptors of the queries `tq` as they are and mirrored,
    each turned into its frame and shifted by SHIFTS; and (2, n) the frame angles (plain, mirrored)."""
    angles, versions = [], []
    for mirrored in (False, True):
        t = np.ascontiguousarray(apply_dihedral(tq, HFLIP)) if mirrored else tq
        ang = _orientations(t, 1)[:, 0]
        framed = turn_one_by_one(t, -ang.astype(np.float64))
        angles.append(ang)
        versions += [white(window_descriptors(shifted(framed, dy, dx))) for dy, dx in SHIFTS]
    return np.stack(versions), np.stack(angles)


def _nearest_frames(q: np.ndarray, ref: np.ndarray, sim: np.ndarray, own: np.ndarray, k: int,
                    margin: float, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """From the join's (query, reference, cosine) over both frames of every reference: one entry
    per (query, reference), each query's k best references other than itself (`own`: the pair is an
    image and itself; inside a split an image is its own best match, which the margin must not be
    measured from), within `margin` of its best."""
    q, ref, sim = q[~own], ref[~own], sim[~own]
    order = np.lexsort((-sim, ref, q))
    q, ref, sim = q[order], ref[order], sim[order]
    first = np.ones(len(q), bool)
    first[1:] = (q[1:] != q[:-1]) | (ref[1:] != ref[:-1])
    q, ref, sim = q[first], ref[first], sim[first]
    order = np.lexsort((-sim, q))
    q, ref, sim = q[order], ref[order], sim[order]
    rank = np.arange(len(q)) - np.searchsorted(q, q, side="left")
    keep = rank < k
    q, ref, sim = q[keep], ref[keep], sim[keep]
    best = np.full(n_queries, -np.inf, np.float32)
    np.maximum.at(best, q, sim)
    keep = sim >= best[q] - margin
    return q[keep], ref[keep]


def frame_candidates(thumbs: np.ndarray, refs: np.ndarray, queries: np.ndarray, k: int, min_sim: float,
                     margin: float, whitening: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]],
                     is_view: np.ndarray | None = None,
                     approx: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(reference, query, turn in degrees, mirrored) of each query's k nearest references in the
    images' own frames (module docstring), within `margin` of its best cosine there. Queries are
    searched as they are and mirrored, each in its frame and shifted by SHIFTS, against every
    reference in its REF_FRAMES frames, whitened by `whitening(descriptors)` fitted on the
    references' first frames (matching.Whitening.fit). Each pair carries the turn that takes the
    (mirrored) query into its reference's frame, for verification to start from (the `turn` of
    verify_pairs). An image is never its own candidate (refs and queries may be one split). Inner
    views are left out. `approx`: an approximate search as in matching._knn_scored.

    Queries go QUERY_CHUNK at a time (everything after the join is per query, so the chunks give
    what one search of all of them would)."""

    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool))
    if is_view is not None:
        refs, queries = refs[~is_view[refs]], queries[~is_view[queries]]
    if not len(refs) or not len(queries) or k <= 0:
        return empty
    n_r = len(refs)
    ref_thumbs = thumbs[refs]
    ref_angles = orientations(ref_thumbs, REF_FRAMES)
    ref_desc = [frame_descriptors(ref_thumbs, ref_angles[:, j]) for j in range(REF_FRAMES)]
    del ref_thumbs
    white = whitening(ref_desc[0])
    wr = np.concatenate([white(d) for d in ref_desc])       # frame j of reference i at j * n_r + i
    del ref_desc
    kk = (k + 1) * REF_FRAMES   # room for the query itself, in both frames, inside a split
    ops = search_ops()
    if approx is not None:
        IvfIndex, ivf_join = ops.ivf()
        key = ("frames", len(refs), int(refs[0]), int(refs[-1]))
        if key not in approx:
            approx[key] = IvfIndex(wr)
    n_v = len(SHIFTS)
    out_r, out_q, out_turn, out_mirror = [], [], [], []
    for s in range(0, len(queries), QUERY_CHUNK):
        chunk = queries[s:s + QUERY_CHUNK]
        versions, q_angles = _query_versions(thumbs[chunk].astype(np.float32), white)
        if approx is None:
            q, r, sim = ops.knn_join(versions, wr, kk, min_sim=min_sim)
        else:
            q, r, sim, kept = ivf_join(versions, approx[key], kk, min_sim, approx["share"])
            approx["runs"].append(kept)
        if not len(q):
            continue
        ref = r % n_r
        q, ref = _nearest_frames(q, ref, sim, refs[ref] == chunk[q], k, margin, len(chunk))
        # the versions that scored best for each pair: (query version, reference frame)
        scores = np.stack([np.einsum("vpd,pd->vp", versions[:, q], wr[j * n_r + ref]) for j in range(REF_FRAMES)])
        flat = scores.reshape(REF_FRAMES * len(versions), -1).argmax(axis=0)
        frame, version = flat // len(versions), flat % len(versions)
        mirrored = version >= n_v
        q_ang = np.where(mirrored, q_angles[1][q], q_angles[0][q])
        turn = ref_angles[ref, frame] - q_ang
        out_r.append(refs[ref])
        out_q.append(chunk[q])
        out_turn.append(((turn + 180.0) % 360.0 - 180.0).astype(np.float32))
        out_mirror.append(mirrored)
    if not out_r:
        return empty
    return np.concatenate(out_r), np.concatenate(out_q), np.concatenate(out_turn), np.concatenate(out_mirror)

"""Second stage: verify candidate pairs by aligning their thumbnails and measuring similarity.

Global hashes are fooled by shifts and crops (and, the other way round, unrelated images of one
kind, such as CT slices, can sit close in hash space). So every candidate pair is checked on the
cached 32x32 grey thumbnails:

1. the query thumbnail is put in the reference's orientation (one of the 8 dihedral variants, known
   from the candidate search);
2. both are reduced to *detail* images: a light blur (against JPEG noise) minus a wide blur (so the
   silhouette that all CT slices share, or a sky gradient, does not count as similarity);
3. a small scale search (zooming either side in by up to 25%, i.e. crops of up to ~10% per side)
   and, for each scale, the normalised cross-correlation over the overlap for every shift of up to
   ``MAX_SHIFT`` pixels at once (the cross term by FFT, each side's sums over every overlap by
   products with 0/1 window matrices),
   with at least ``MIN_OVERLAP`` of the area in common, plus a few small rotations (for pairs that
   the best shift leaves far off, only when a quick half-resolution look finds them turned);
4. from the best alignment found, an affine fit (inverse-compositional Lucas-Kanade, a few
   iterations) removes what the discrete search leaves: a rotation between the tried angles, a crop
   that took more of the width than of the height, a sub-pixel shift. It is scored over the
   inscribed disc (the black corners of a rotation stay out) and kept only when the fitted
   map is one an augmentation could make (``plausible``);
5. the similarity is the best NCC; a pair is confirmed when it reaches the threshold
   (``config.leakage.verify_threshold``; ``search_threshold`` when steps 3-4 were needed).

Everything is vectorised over batches of pairs; no Python loop per pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import fft as _fft
from scipy import sparse

from dsaudit.index.hashing import THUMB, _blur, apply_dihedral, block_means, detail  # noqa: F401
from dsaudit.similarity.neighbors import blas_threads, parallel_map, workers

MAX_SHIFT = 5           # pixels of the 32-pixel thumbnail (about 15%)
MIN_OVERLAP = 0.55      # share of the thumbnail area that must overlap
# The discrete search only has to land within reach of the affine fit (step D), which takes a zoom
# between grid points the rest of the way: three zooms instead of five cut the verification time on
# CT slices by a third at the same recall (benchmarks/leakage_recall.py). Rotations keep four
# angles: with two (+-6), 7-degree turns of 3:2 images were lost (tests/test_leakage.py).
ZOOMS = (1.0, 1.12, 1.26)
ANGLES = (-8.0, -4.0, 4.0, 8.0)   # small rotations tried (degrees)
# (B') zoom and angle of the reference in the half-resolution look for turned copies, and the score
# that sends a pair below `escalate` on to the search. Measured on the candidate pairs of
# benchmarks/leakage_recall.py: the 14 photo32 copies turned 2-10 degrees whose best shift stays
# under 0.5 score 0.72-0.92; unrelated cross-split candidates under 0.5 reach 0.7 in 3 of 287
# (photo32), 0 of 1,684 (CT) and 2 of 991 (digits) cases.
TURN_PEEKS = ((1.0, -8.0), (1.0, 8.0), (1.12, -8.0), (1.12, 8.0))
TURN_GATE = 0.7
_PAD = 40             # >= THUMB + MAX_SHIFT: circular correlation = linear for small shifts
NCC_CHUNK = 256       # full-size pairs correlated together (overlap_ncc)


@dataclass
class Verified:
    similarity: np.ndarray   # (P,) best overlap NCC of the detail images
    shift: np.ndarray        # (P, 2) dy, dx in thumbnail pixels at the best alignment
    zoom: np.ndarray         # (P,) >1: the query shows a zoomed-in crop of the reference; <1: the other way round
    angle: np.ndarray        # (P,) degrees
    stage: np.ndarray        # (P,) 0: zero shift, 1: integer shift, 2: zoom/rotation/sub-pixel search
    rms: np.ndarray          # (P,) RMS grey-level difference of the oriented thumbnails at zero shift
    contrast: np.ndarray     # (P,) larger grey-level standard deviation of the two thumbnails
    isotropy: np.ndarray     # (P,) smaller detail isotropy of the two (see `isotropy`)


def isotropy(d: np.ndarray) -> np.ndarray:
    """How evenly the gradients of detail images (P, H, W) spread over directions: 1 for texture or
    blobs, 0 for a single straight edge or stripes (2 sqrt(det J) / trace J of the structure tensor J
    summed over the image).

    It measures the aperture problem: along an edge a shift changes nothing, so two images that each
    hold one soft edge (a petal against dark foliage, a horizon) can be lined up by the shift and
    zoom search to a high correlation without being copies. Matches that needed a shift or the
    search are only taken when both images have detail in more than one direction."""
    gy = d[:, 2:, 1:-1] - d[:, :-2, 1:-1]
    gx = d[:, 1:-1, 2:] - d[:, 1:-1, :-2]
    jyy = (gy * gy).sum(axis=(1, 2), dtype=np.float64)
    jxx = (gx * gx).sum(axis=(1, 2), dtype=np.float64)
    jxy = (gx * gy).sum(axis=(1, 2), dtype=np.float64)
    det = np.maximum(jyy * jxx - jxy * jxy, 0.0)
    return (2.0 * np.sqrt(det) / np.maximum(jyy + jxx, 1e-12)).astype(np.float32)


def _zoom_grid(z: float, angle: float = 0.0, size: int = THUMB) -> tuple[np.ndarray, np.ndarray]:
    """Sampling coordinates that zoom a size x size image in by z around its centre and rotate it."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    yy, xx = (yy - c) / z, (xx - c) / z
    if angle:
        a = np.deg2rad(angle)
        yy, xx = np.cos(a) * yy - np.sin(a) * xx, np.sin(a) * yy + np.cos(a) * xx
    return yy + c, xx + c


_WARP_CACHE: dict[tuple[float, float, int], sparse.csr_matrix] = {}


def _warp_operator(z: float, angle: float, size: int) -> sparse.csr_matrix:
    """The bilinear zoom/rotation as a sparse (size^2, size^2) matrix acting on flattened images
    from the right (4 weights a row). One sparse product per batch is faster than gathering the
    four neighbours with fancy indexing (benchmarks/scan_speed.py, leakage timings: verify)."""
    key = (float(z), float(angle), size)
    if key not in _WARP_CACHE:
        yy, xx = _zoom_grid(z, angle, size)
        yy = np.clip(yy, 0, size - 1).ravel()
        xx = np.clip(xx, 0, size - 1).ravel()
        y0 = np.minimum(np.floor(yy).astype(np.int64), size - 2)
        x0 = np.minimum(np.floor(xx).astype(np.int64), size - 2)
        wy, wx = yy - y0, xx - x0
        base = y0 * size + x0
        src = np.stack([base, base + 1, base + size, base + size + 1], axis=1).ravel()
        dst = np.repeat(np.arange(size * size), 4)
        w = np.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx], axis=1).ravel()
        # images are rows: warped = flat @ op, so op[src, dst] holds the weight
        _WARP_CACHE[key] = sparse.csr_matrix((w.astype(np.float32), (src, dst)), shape=(size * size, size * size))
    return _WARP_CACHE[key]


def warp(imgs: np.ndarray, z: float, angle: float = 0.0) -> np.ndarray:
    """Bilinear zoom/rotation of a batch (P, S, S) with the same transform (edge values clamp)."""
    if z == 1.0 and not angle:
        return imgs
    size = imgs.shape[-1]
    flat = np.ascontiguousarray(imgs, dtype=np.float32).reshape(len(imgs), -1)
    return np.asarray(flat @ _warp_operator(z, angle, size)).reshape(imgs.shape)


_TURN_C = (THUMB - 1) / 2.0
_TURN_UY, _TURN_UX = (np.mgrid[0:THUMB, 0:THUMB].astype(np.float32).reshape(2, 1, -1) - _TURN_C)


def turn_one_by_one(thumbs: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Each thumbnail turned by its own angle (degrees) about the centre, bilinear, edges clamped:
    the per-image form of `warp(imgs, 1.0, angle)`, with the same sign convention (equal to it up to
    float32 rounding). The frame search's candidates carry a turn of their own each, so `warp`'s
    operator per angle (cached) would be one per candidate: at 60,000 photos that cache took
    gigabytes and most of the verification's time."""
    n = len(thumbs)
    a = np.deg2rad(np.asarray(angles, np.float64))[:, None]
    uy, ux = _TURN_UY, _TURN_UX
    yy = np.clip(np.cos(a) * uy - np.sin(a) * ux + _TURN_C, 0, THUMB - 1)
    xx = np.clip(np.sin(a) * uy + np.cos(a) * ux + _TURN_C, 0, THUMB - 1)
    y0 = np.minimum(yy.astype(np.int64), THUMB - 2)
    x0 = np.minimum(xx.astype(np.int64), THUMB - 2)
    wy, wx = (yy - y0).astype(np.float32), (xx - x0).astype(np.float32)
    idx = y0 * THUMB + x0 + (np.arange(n) * THUMB * THUMB)[:, None]
    flat = np.ascontiguousarray(thumbs, dtype=np.float32).reshape(-1)
    p, q = flat.take(idx), flat.take(idx + 1)
    s, t = flat.take(idx + THUMB), flat.take(idx + THUMB + 1)
    top = p + (q - p) * wx
    bottom = s + (t - s) * wx
    return (top + (bottom - top) * wy).reshape(n, THUMB, THUMB)


class _Geometry:
    """Correlating size x size images over shifts up to max_shift: FFT size, overlap windows and
    the partial inverse transform.

    Only the cross term of the overlap NCC goes through the FFT. The window sums of each side
    (its sum and sum of squares over every overlap) are two products with 0/1 window matrices,
    and the inverse transform computes only the (2 max_shift + 1)^2 shifts kept, as two small
    DFT products: before, each side took two more forward and two full inverse FFTs, about two
    thirds of the correlation's time (benchmarks/verify_replay.py)."""

    def __init__(self, size: int, max_shift: int, pad: int):
        self.size, self.pad = size, pad
        self.shifts = np.arange(-max_shift, max_shift + 1)
        # win[k, y]: row (or column) y of the reference lies in the overlap with the query moved by
        # shifts[k]; the query's own overlap is the mirror image
        y = np.arange(size)
        lo, hi = np.maximum(self.shifts, 0), np.minimum(size + self.shifts, size)
        self.win = ((y >= lo[:, None]) & (y < hi[:, None])).astype(np.float32)
        self.win_query = np.ascontiguousarray(self.win[::-1])
        widths = self.win.sum(axis=1)
        self.count = np.outer(widths, widths).astype(np.float32)     # pixels in each overlap
        # the inverse real FFT at the kept shifts only: along the full axis a (shifts x pad) DFT,
        # along the halved one the real and imaginary parts of a (pad // 2 + 1, shifts) DFT
        idx = self.shifts % pad
        self.inv_rows = (np.exp(2j * np.pi * np.outer(idx, np.arange(pad)) / pad) / pad).astype(np.complex64)
        half = np.arange(pad // 2 + 1)
        weight = np.where((half == 0) | (2 * half == pad), 1.0, 2.0)[:, None] / pad
        cols = np.exp(2j * np.pi * np.outer(half, idx) / pad) * weight
        self.inv_cols_re = cols.real.astype(np.float32)
        self.inv_cols_im = cols.imag.astype(np.float32)

    def spectrum(self, x: np.ndarray) -> np.ndarray:
        """Real FFT of the images (P, size, size) zero-padded to pad x pad."""
        return _fft.rfft2(x, s=(self.pad, self.pad))

    def corr(self, fa: np.ndarray, fb_conj: np.ndarray) -> np.ndarray:
        """c[dy, dx] = sum_y,x a[y, x] * b[y - dy, x - dx] for the small shifts, from the spectrum
        of a and the conjugate spectrum of b."""
        rows = np.matmul(self.inv_rows, fa * fb_conj)
        return np.matmul(rows.real, self.inv_cols_re) - np.matmul(rows.imag, self.inv_cols_im)

    def window_sums(self, x: np.ndarray, query: bool) -> np.ndarray:
        """(P, shifts, shifts) sums of the images over each overlap: the reference's, or the
        query's (moved by the shift)."""
        w = self.win_query if query else self.win
        return np.matmul(w, np.matmul(x, w.T))


_FULL = _Geometry(THUMB, MAX_SHIFT, _PAD)
_HALF = _Geometry(THUMB // 2, 3, 20)
_SHIFTS = _FULL.shifts


def side_terms(x: np.ndarray, geo: _Geometry = _FULL, query: bool = True) -> tuple[np.ndarray, ...]:
    """What `overlap_ncc` needs of one side of its pairs: the FFT of the padded images (the
    query's conjugated) and their window sums and sums of squares over every overlap. A side
    correlated with several others (the query against each warped reference of the search) is
    transformed once."""
    x = np.asarray(x, dtype=np.float32)
    fx = geo.spectrum(x)
    if query:
        fx = np.conj(fx, out=fx)
    return fx, geo.window_sums(x, query), geo.window_sums(x * x, query)


def overlap_ncc(a: np.ndarray, b: np.ndarray | None, geo: _Geometry = _FULL,
                b_terms: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best overlap-normalised cross-correlation of (P,S,S) pairs over all small shifts.
    `b_terms` (side_terms(b, geo)) may stand in for b.

    Returns (best NCC (P,), best shift (P, 2) as dy, dx: b moved by (dy, dx) matches a).

    Full-size pairs are correlated NCC_CHUNK at a time: the FFT arrays of a whole batch (7 KB a
    pair each) overflow the CPU caches (verify in the leakage timings of benchmarks/scan_speed.py)."""
    if geo is _FULL and len(a) > NCC_CHUNK:
        parts = [overlap_ncc(a[s:s + NCC_CHUNK], None if b is None else b[s:s + NCC_CHUNK], geo,
                             None if b_terms is None else tuple(x[s:s + NCC_CHUNK] for x in b_terms))
                 for s in range(0, len(a), NCC_CHUNK)]
        return np.concatenate([x[0] for x in parts]), np.concatenate([x[1] for x in parts])
    p, size = len(a), geo.size
    fa, sa, sa2 = side_terms(a, geo, query=False)
    fb, sb, sb2 = b_terms if b_terms is not None else side_terms(b, geo)
    n = geo.count[None]
    sab = geo.corr(fa, fb)
    cov = sab - sa * sb / n
    va = np.maximum(sa2 - sa * sa / n, 0)
    vb = np.maximum(sb2 - sb * sb / n, 0)
    # a flat overlap has no evidence either way: treat its correlation as 0
    denom = np.sqrt(va * vb)
    ncc = np.where(denom > 1e-3 * n * n, cov / np.maximum(denom, 1e-12), 0.0)
    ncc = np.where(n >= MIN_OVERLAP * size * size, ncc, -1.0)
    flat = ncc.reshape(p, -1)
    best = flat.argmax(axis=1)
    k = len(geo.shifts)
    shift = np.stack([geo.shifts[best // k], geo.shifts[best % k]], axis=1)
    return flat[np.arange(p), best], shift


def _full_combos(zooms, angles):
    combos = []
    for z in zooms:
        if z != 1.0:
            combos += [(z, 1.0, 0.0), (1.0, z, 0.0)]
    for ang in angles:
        if ang:
            for z in (1.0, 1.12):
                combos.append((z, 1.0, ang))
    return combos


def _half_res(d: np.ndarray) -> np.ndarray:
    """(P, 32, 32) -> (P, 16, 16) by 2x2 means."""
    return block_means(d, 2)


def _shared_terms(x_unique: np.ndarray, which: np.ndarray, geo: _Geometry = _FULL) -> tuple[np.ndarray, ...]:
    """`side_terms` of the query images x_unique[which], each distinct image transformed once: a
    query has several candidate references (k-NN: up to 8 across splits, 4 within), and the
    pairs reach the cascade grouped by query."""
    used, pos = np.unique(which, return_inverse=True)
    return tuple(t[pos] for t in side_terms(x_unique[used], geo))


def _turned_look(ha: np.ndarray, hb_terms: tuple[np.ndarray, ...]) -> np.ndarray:
    """(P,) best overlap NCC of half-resolution detail pairs with the reference zoomed and turned
    by each of TURN_PEEKS (stage B'); `hb_terms` are the query side's `side_terms` at half
    resolution."""
    best = np.full(len(ha), -1.0, np.float32)
    for z, ang in TURN_PEEKS:
        best = np.maximum(best, overlap_ncc(warp(ha, z, ang), None, _HALF, b_terms=hb_terms)[0])
    return best


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1)
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def verify_pairs(thumbs: np.ndarray, a: np.ndarray, b: np.ndarray, variant: np.ndarray,
                 threshold: float = 0.0, escalate: float = 0.5, search_threshold: float | None = None,
                 prefilter: float | None = 0.3, refine_floor: float = 0.35,
                 zooms: tuple[float, ...] = ZOOMS, angles: tuple[float, ...] = ANGLES,
                 batch: int = 2048, boost: np.ndarray | None = None,
                 min_isotropy: float = 0.0, turn_gate: float | None = TURN_GATE,
                 turn: np.ndarray | None = None, turned: np.ndarray | None = None) -> Verified:
    """Verify pairs (a[i] reference, b[i] query seen through dihedral `variant[i]`).

    A cascade keeps it cheap: (A) NCC at zero shift, accepted at once when >= threshold;
    (B0) a half-resolution shift search that drops pairs under `prefilter`; (B) best NCC over all
    small shifts; (B') for pairs with B < `escalate`, a half-resolution look with the reference
    turned by +-8 degrees, which sends those scoring `turn_gate` or more on as well (None: off);
    (C) for pairs still below the threshold but with B >= `escalate`, the zoom/rotation search;
    (D) for pairs still short with a similarity of at least `refine_floor`, the affine fit
    (`align_affine`) from the best alignment so far, and (D') for pairs still short but at least
    ANISO_FLOOR, fits from one-axis zoom starts (a crop of one side), kept only when they end as a
    one-axis zoom (`one_axis_zoom`). Pass threshold=1.01 to force the full search on every pair
    (the B0 prefilter still applies unless prefilter=None). `thumbs` is (N, 32, 32).

    The caller's acceptance rules, when given, let the cascade skip work that cannot change a
    decision: `boost` (per pair) is added to the thresholds, so a pair whose shifted (search) bar
    reaches 1.0 gets no shift (search) stage; pairs with detail isotropy below `min_isotropy` are
    not taken from a shift or search, so they get neither. The similarities of such pairs are then
    the best of the stages they had.

    `turn` (per pair, degrees) turns the oriented query about its centre before the cascade
    (`turn_one_by_one`): the candidates of the frame search (canonical.frame_candidates) start from
    the turn between the two images' frames, so the search and fit only have to cover that
    estimate's error. Pairs
    marked `turned` count as matched by the search (stage 2, `search_threshold`) whatever stage
    confirms them, since trying the versions is a search; their reported angle includes the turn."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    variant = np.asarray(variant, dtype=np.int64)
    p = len(a)
    sim = np.full(p, -1.0, np.float32)
    shift = np.zeros((p, 2), np.int64)
    zoom = np.ones(p, np.float32)
    angle = np.zeros(p, np.float32)
    stage = np.zeros(p, np.int8)
    zza = np.ones(p, np.float32)
    zzb = np.ones(p, np.float32)
    rms = np.zeros(p, np.float32)
    contrast = np.zeros(p, np.float32)
    iso = np.zeros(p, np.float32)
    if p == 0:
        return Verified(sim, shift, zoom, angle, stage, rms, contrast, iso)
    combos = _full_combos(zooms, angles)
    turn = np.zeros(p, np.float32) if turn is None else np.asarray(turn, np.float32)
    from_turns = np.zeros(p, bool) if turned is None else np.asarray(turned, bool)
    turn_values, turn_code = np.unique(turn, return_inverse=True)

    st = max(threshold, search_threshold or 0.0)   # the bar for matches that needed the search

    def take_fit(ia: np.ndarray, ncc: np.ndarray, m_fit: np.ndarray, t_fit: np.ndarray,
                 one_axis: bool = False) -> None:
        """Keep the affine fits that are plausible and better than what the pairs have (and, for
        the one-axis starts, that are a one-axis zoom: anything else that freer fit finds is a
        lookalike bent into shape more often than a copy)."""
        ok = plausible(m_fit, t_fit) & (ncc > sim[ia])
        if one_axis:
            ok &= one_axis_zoom(m_fit)
        ia, ncc, m_fit, t_fit = ia[ok], ncc[ok], m_fit[ok], t_fit[ok]
        z_fit, a_fit = _describe(m_fit)
        sim[ia] = ncc
        stage[ia] = 2
        zoom[ia] = z_fit
        angle[ia] = a_fit
        shift[ia] = np.rint(-t_fit).astype(np.int64)

    def run_batch(sl: np.ndarray) -> None:
        """The cascade for the pairs `sl` (indices into the outputs). Arrays of the batch are
        indexed by local position; `sl[...]` maps them to the outputs."""
        n_b = len(sl)
        ta = thumbs[a[sl]].astype(np.float32)
        # the query side, once per distinct (image, orientation) of the batch
        key = (b[sl] * 8 + variant[sl]) * len(turn_values) + turn_code[sl]
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        tb_u = thumbs[b[sl[first]]].astype(np.float32)
        vb_u = variant[sl[first]]
        for k in np.unique(vb_u):
            if k:
                m = vb_u == k
                tb_u[m] = apply_dihedral(tb_u[m], int(k))
        turn_u = turn[sl[first]]
        if turn_u.any():   # each candidate of the frame search has a turn of its own
            m = turn_u != 0
            tb_u[m] = turn_one_by_one(tb_u[m], turn_u[m])
        db_u = detail(tb_u)
        tb, db = tb_u[inv], db_u[inv]
        # raw closeness at zero shift: on small, low-contrast images JPEG noise swamps the detail
        # band while the pixels stay within a grey level or so (the caller decides with it)
        rms[sl] = np.sqrt(((ta - tb) ** 2).mean(axis=(1, 2)))
        contrast[sl] = np.maximum(ta.std(axis=(1, 2)), tb_u.std(axis=(1, 2))[inv])
        da = detail(ta)
        iso[sl] = np.minimum(isotropy(da), isotropy(db_u)[inv])
        # (A) zero shift
        s0 = (_unit(da) * _unit(db_u)[inv]).sum(axis=1)
        sim[sl] = s0
        # each pair's own bars: the caller's boost raises both (a smooth pair at 0.92 with a 0.06
        # boost is not confirmed, so it must go on to the search like any pair below the bar)
        extra = boost[sl] if (boost is not None and threshold <= 1) else np.zeros(n_b, np.float32)
        bar, search_bar = threshold + extra, st + extra
        bar = np.where(from_turns[sl], search_bar, bar)   # trying the turned versions was a search
        todo = s0 < bar if threshold > 0 else np.ones(n_b, bool)
        if threshold <= 1:   # (not when the full search is forced)
            todo &= (iso[sl] >= min_isotropy) & (bar < 1.0)
            can_search = search_bar < 1.0
        else:
            can_search = np.ones(n_b, bool)
        if not todo.any():
            return
        # (B0) cheap rejection at half resolution: unrelated pairs rarely pass it
        half_a = half_bu = None
        if threshold > 0 and prefilter is not None:
            h = np.nonzero(todo)[0]
            half_a = np.zeros((n_b, THUMB // 2, THUMB // 2), np.float32)
            half_a[h] = _half_res(da[h])
            half_bu = _half_res(db_u)
            coarse, _ = overlap_ncc(half_a[h], None, _HALF, b_terms=_shared_terms(half_bu, inv[h], _HALF))
            todo[h[coarse < prefilter]] = False
            if not todo.any():
                return
        # (B) all small shifts
        lt = np.nonzero(todo)[0]          # local positions still in play
        ncc, sh = overlap_ncc(da[lt], None, b_terms=_shared_terms(db_u, inv[lt]))
        idx = sl[lt]
        better = ncc > sim[idx]
        sim[idx[better]] = ncc[better]
        shift[idx[better]] = sh[better]
        stage[idx[better]] = 1
        # (C) zoom / rotation search
        need = (sim[idx] < bar[lt]) & (sim[idx] >= escalate) if threshold > 0 else np.ones(len(idx), bool)
        need &= can_search[lt]
        if 0 < threshold <= 1 and turn_gate is not None:
            # (B') a copy turned by 8-10 degrees is further off than any shift: its best shift
            # scores about a third, below `escalate`, yet it is a copy. A look at half resolution
            # with the reference turned (TURN_PEEKS) tells it from the unrelated pairs there
            low = np.nonzero((sim[idx] < escalate) & can_search[lt])[0]
            if len(low):
                j = lt[low]
                if half_a is None:
                    half_a, half_bu = np.zeros((n_b, THUMB // 2, THUMB // 2), np.float32), _half_res(db_u)
                    half_a[j] = _half_res(da[j])
                turned = _turned_look(half_a[j], _shared_terms(half_bu, inv[j], _HALF))
                need[low[turned >= turn_gate]] = True
        sel = lt[need]
        ia = sl[sel]
        db_terms = _shared_terms(db_u, inv[sel]) if len(sel) else None
        for za, zb, ang in (combos if len(sel) else ()):
            wa = detail(warp(ta[sel], za, ang)) if (za != 1.0 or ang) else da[sel]
            if zb != 1.0:
                ncc, sh = overlap_ncc(wa, detail(warp(tb[sel], zb)))
            else:
                ncc, sh = overlap_ncc(wa, None, b_terms=db_terms)
            better = ncc > sim[ia]
            sim[ia[better]] = ncc[better]
            shift[ia[better]] = sh[better]
            stage[ia[better]] = 2
            zoom[ia[better]] = za / zb
            angle[ia[better]] = ang
            zza[ia[better]] = za
            zzb[ia[better]] = zb
        # (D) affine refinement (rotation, zoom, aspect, sub-pixel shift) from the best alignment
        # found, for every pair that is still short but within reach
        lf = lt
        if threshold <= 1:  # not those already confirmed without the search
            g = sl[lt]
            short = (sim[g] < bar[lt]) | ((stage[g] == 2) & (sim[g] < search_bar[lt]))
            lf = lt[short & (sim[g] >= refine_floor) & can_search[lt]]
        if len(lf):
            ia = sl[lf]
            m0, t0 = _affine_init(zza[ia], zzb[ia], angle[ia], shift[ia])
            angle_d, shift_d = angle[ia].copy(), shift[ia].copy()   # the search's, before the fit
            # the reference's side of the fit, once for all of a pair's fits
            fr = fit_reference(da[lf])
            take_fit(ia, *align_affine(None, db[lf], m0, t0, reference=fr))
            # (D') a crop of one side only (a 4:3 picture cut to a square): the discrete search is
            # isotropic and the fit does not get there from its zoom; pairs left short but close
            # get a start from each one-axis zoom
            close = np.ones(len(lf), bool) if threshold > 1 else (
                (sim[ia] < np.where(stage[ia] == 2, search_bar[lf], bar[lf])) & (sim[ia] >= ANISO_FLOOR))
            ln, near = lf[close], ia[close]
            if len(near):   # the search's rotation and shift, without its (isotropic) zoom
                ones = np.ones(len(near), np.float32)
                m1, t1 = _affine_init(ones, ones, angle_d[close], shift_d[close])
                fr_near, db_near = fr.take(close), db[ln]
            for scale in (ANISO_STARTS if len(near) else ()):
                take_fit(near, *align_affine(None, db_near, scale[None] * m1, t1, overlap_only=True,
                                             reference=fr_near), one_axis=True)
            # (D'') the fit ends in a local optimum now and then (a crop's zoom of 1.22 where 1.19
            # lines up better, a turn of 10 degrees where 7 does): pairs still short but close are
            # fitted again from the search's zoom a step either way (ZOOM_RESTARTS)
            if len(near):
                zd = (zza[near] / zzb[near]).astype(np.float32)
                for dz in ZOOM_RESTARTS:
                    m_r, t_r = _affine_init(zd * dz, ones, angle_d[close], shift_d[close])
                    take_fit(near, *align_affine(None, db_near, m_r, t_r, reference=fr_near))

    # batches write disjoint sets of pairs of the outputs: run them on a thread pool (FFTs, matrix
    # products and most ufuncs release the GIL); per-pair results do not depend on the batching
    n_workers = workers()
    # at least two batches per worker, so that a few thousand candidates (a CT pool) do not run on
    # one thread while the other cores wait
    batch = max(64, min(batch, -(-p // (2 * n_workers))))
    # each query's pairs in one batch, so that its side of the cascade is computed once there
    by_query = np.lexsort((turn_code, variant, b))
    with blas_threads(1):
        parallel_map(run_batch, [by_query[s:s + batch] for s in range(0, p, batch)], n_workers)
    if from_turns.any():
        stage[from_turns] = np.maximum(stage[from_turns], 2)
        angle[from_turns] -= turn[from_turns]
    return Verified(sim, shift, zoom, angle, stage, rms, contrast, iso)


# ---------------------------------------------------------------------------------------------
# (D) affine alignment: inverse-compositional Lucas-Kanade, vectorised over pairs
# ---------------------------------------------------------------------------------------------

AFFINE_ITERS = 8
AFFINE_CHUNK = 64           # pairs fitted together (align_affine): a chunk's dozen float32 (pairs x 812)
                            # temporaries stay within a core's 2 MB L2 cache (verify in benchmarks/scan_speed.py)
DISC = THUMB / 2.0          # correlation over the inscribed disc: the corners of a rotation stay out
MAX_ZOOM = 1.45             # plausible transforms (anything else is a lookalike bent into shape)
MAX_ASPECT = 1.4            # crops of different width and height fractions change the aspect (a 4:3
                            # picture cut to a square: 1.33)
ANISO_FLOOR = 0.6           # pairs still short after the fit but at least this close get the starts below
ONE_AXIS_ASPECT = 1.1       # what those starts may find: a one-axis zoom ...
ONE_AXIS_ANGLE = 3.0        # ... with little rotation (degrees)
# one-axis zoom starts (row scale, column scale) for the fit, applied to the search's alignment
ANISO_STARTS = tuple(np.array(d, np.float32)[:, None] for d in ((1.25, 1.0), (1.0, 1.25), (0.8, 1.0), (1.0, 0.8)))
# zoom factors applied to the search's zoom for a second and third affine fit of pairs still close
# (D''): on benchmarks/leakage_recall.py photo32 crops 0.893 -> 0.911, CT rotations 0.900 -> 0.910,
# no clean image flagged more; the 60k scan's verification is unchanged (few of its pairs are close)
ZOOM_RESTARTS = (1.05, 1 / 1.05)
MAX_SHEAR = 0.25           # a rotation of a non-square image is a rotation plus shear in the square thumbnail
MAX_ANGLE = 15.0            # degrees
MAX_OFFSET = 7.0            # thumbnail pixels (about 20%)
_STEP = np.array([0.1, 0.1, 0.1, 0.1, 1.5, 1.5], np.float32)   # largest update per iteration
_C = (THUMB - 1) / 2.0
_GY, _GX = np.mgrid[0:THUMB, 0:THUMB].astype(np.float32)
_DISC_MASK = (((_GY - _C) ** 2 + (_GX - _C) ** 2) <= DISC ** 2).ravel().astype(np.float32)
# The fit and its score only ever look at the inscribed disc, so they sample and sum over its
# pixels alone (812 of 1,024): everything outside was multiplied by a zero mask before
_DISC = np.nonzero(_DISC_MASK)[0]
_UY, _UX = (_GY - _C).ravel()[_DISC], (_GX - _C).ravel()[_DISC]
_UYX = np.stack([_UY, _UX])                 # (2, D): a map's sample coordinates are M @ _UYX + c + t
_LO, _HI = np.float32(-0.01), np.float32(THUMB - 0.99)   # samples inside the image


def _affine_init(za: np.ndarray, zb: np.ndarray, ang: np.ndarray, shift: np.ndarray):
    """The search's alignment (reference zoomed by za and rotated, query zoomed by zb, query moved
    by `shift`) as an affine map: reference pixel u lines up with query pixel M (u - c) + c + t."""
    a = np.deg2rad(ang.astype(np.float64))
    z = (za / zb).astype(np.float64)
    m = np.empty((len(a), 2, 2), np.float32)
    m[:, 0, 0] = z * np.cos(a)
    m[:, 0, 1] = z * np.sin(a)
    m[:, 1, 0] = -z * np.sin(a)
    m[:, 1, 1] = z * np.cos(a)
    t = (-shift / zb[:, None]).astype(np.float32)
    return m, t


def _describe(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zoom (sqrt of the determinant) and rotation in degrees of fitted affine maps."""
    zoom = np.sqrt(np.abs(np.linalg.det(m.astype(np.float64)))).astype(np.float32)
    ang = np.degrees(np.arctan2(m[:, 0, 1] - m[:, 1, 0], m[:, 0, 0] + m[:, 1, 1])).astype(np.float32)
    return zoom, ang


def plausible(m: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fitted maps that an augmentation could have made: moderate zoom, aspect change, shear,
    rotation and offset. A lookalike can often be bent into shape by a wild map; a copy needs none."""
    sv = np.linalg.svd(m.astype(np.float64), compute_uv=False)
    _, ang = _describe(m)
    # shear: the angle between the mapped axes, away from 90 degrees
    c0, c1 = m[:, :, 0].astype(np.float64), m[:, :, 1].astype(np.float64)
    cos_axes = np.abs((c0 * c1).sum(1)) / np.maximum(np.linalg.norm(c0, axis=1) * np.linalg.norm(c1, axis=1), 1e-9)
    return ((sv[:, 0] <= MAX_ZOOM) & (sv[:, 1] >= 1 / MAX_ZOOM) & (sv[:, 0] / np.maximum(sv[:, 1], 1e-9) <= MAX_ASPECT)
            & (cos_axes <= MAX_SHEAR) & (np.abs(ang) <= MAX_ANGLE)
            & (np.abs(t).max(axis=1) <= MAX_OFFSET) & (np.linalg.det(m.astype(np.float64)) > 0))


def one_axis_zoom(m: np.ndarray) -> np.ndarray:
    """Maps that zoom one axis clearly more than the other (aspect >= ONE_AXIS_ASPECT) with little
    rotation (<= ONE_AXIS_ANGLE degrees): what a crop of one side makes."""
    sv = np.linalg.svd(m.astype(np.float64), compute_uv=False)
    _, ang = _describe(m)
    return (sv[:, 0] / np.maximum(sv[:, 1], 1e-9) >= ONE_AXIS_ASPECT) & (np.abs(ang) <= ONE_AXIS_ANGLE)


def _grad(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gy = np.zeros_like(img)
    gx = np.zeros_like(img)
    gy[:, 1:-1] = (img[:, 2:] - img[:, :-2]) * 0.5
    gx[:, :, 1:-1] = (img[:, :, 2:] - img[:, :, :-2]) * 0.5
    return gy, gx


class _Warper:
    """Bilinear samples (P, D) of a chunk's query images (P, S, S) at M (u - c) + c + t for the D
    pixels u of the inscribed disc, and the mask of samples inside the image (edge values clamp).

    float32 throughout (coordinates, weights, samples): a float64 weight or map promotes every
    array of the fit to float64, and the fit's cost is memory traffic. Its work arrays are made
    once for the chunk's nine warps and written in place: a fit's dozen fresh (pairs x 812) arrays
    an iteration cost as much again in allocation and page faults as the arithmetic on them
    (benchmarks/verify_replay.py). The samples returned are overwritten by the next call."""

    def __init__(self, imgs: np.ndarray):
        p, d = len(imgs), len(_DISC)
        self.flat = np.ascontiguousarray(imgs, dtype=np.float32).reshape(-1)
        # int32 offsets: half the memory traffic of int64 (a chunk of AFFINE_CHUNK pairs is far below 2**31)
        self.base = (np.arange(p, dtype=np.int32) * (THUMB * THUMB))[:, None]
        self.co = np.empty((p, 2, d), np.float32)
        self.fl = np.empty((p, 2, d), np.float32)
        self.cell = np.empty((p, 2, d), np.int32)
        self.idx = np.empty((p, d), np.int32)
        self.corners = np.empty((4, p, d), np.float32)

    def __call__(self, m: np.ndarray, t: np.ndarray, with_valid: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        co = np.matmul(m.astype(np.float32, copy=False), _UYX, out=self.co)
        co += (np.float32(_C) + t.astype(np.float32, copy=False))[:, :, None]
        valid = ((co >= _LO) & (co <= _HI)).all(axis=1) if with_valid else None
        np.clip(co, np.float32(0), np.float32(THUMB - 1), out=co)
        fl = np.floor(co, out=self.fl)
        np.minimum(fl, np.float32(THUMB - 2), out=fl)
        np.copyto(self.cell, fl, casting="unsafe")
        co -= fl                                  # the bilinear weights
        idx = np.multiply(self.cell[:, 0], np.int32(THUMB), out=self.idx)
        idx += self.cell[:, 1]
        idx += self.base
        a, b, c, d = self.corners
        flat = self.flat
        # the right and lower neighbours from the image shifted by 1 and THUMB (offsets in range:
        # the cell's corner is at most THUMB - 2 in each direction)
        flat.take(idx, out=a, mode="clip")
        flat[1:].take(idx, out=b, mode="clip")
        flat[THUMB:].take(idx, out=c, mode="clip")
        flat[THUMB + 1:].take(idx, out=d, mode="clip")
        wy, wx = co[:, 0], co[:, 1]
        b -= a
        b *= wx
        b += a          # top row
        d -= c
        d *= wx
        d += c          # bottom row
        d -= b
        d *= wy
        d += b
        return d, valid


def _normalise(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Zero mean and unit norm over the mask (rows of x; None: every element)."""
    if mask is None:
        x = x - x.mean(axis=-1, keepdims=True, dtype=np.float32)
    else:
        n = mask.sum(-1, keepdims=True)
        x = (x - (x * mask).sum(-1, keepdims=True) / np.maximum(n, 1)) * mask
    return x / np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), 1e-6)


def _inv2(m: np.ndarray) -> np.ndarray:
    """Inverses of (P, 2, 2) matrices in closed form."""
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    out = np.empty_like(m)
    out[:, 0, 0], out[:, 1, 1] = m[:, 1, 1] / det, m[:, 0, 0] / det
    out[:, 0, 1], out[:, 1, 0] = -m[:, 0, 1] / det, -m[:, 1, 0] / det
    return out


class FitReference(NamedTuple):
    """The reference side of the affine fit, per pair. It depends on the reference image alone, so
    every fit of a pair (the main fit, the one-axis starts, the zoom restarts) shares it
    (`fit_reference`, `take`)."""

    disc: np.ndarray        # (P, D) the reference detail image over the inscribed disc
    ref: np.ndarray         # (P, D) the same, zero mean and unit norm
    steep: np.ndarray       # (P, 6, D) the inverse Hessian times the steepest-descent images
    steep_sum: np.ndarray   # (P, 6) steep @ 1
    steep_ref: np.ndarray   # (P, 6) steep @ ref

    def take(self, s) -> FitReference:
        return FitReference(*(x[s] for x in self))


def fit_reference(da: np.ndarray) -> FitReference:
    """`FitReference` of reference detail images (P, S, S), made AFFINE_CHUNK pairs at a time
    into arrays allocated once (concatenating the chunks' parts cost a quarter of the work)."""
    if len(da) > AFFINE_CHUNK:
        p, d = len(da), len(_DISC)
        out = FitReference(np.empty((p, d), np.float32), np.empty((p, d), np.float32),
                           np.empty((p, 6, d), np.float32), np.empty((p, 6), np.float32), np.empty((p, 6), np.float32))
        for s in range(0, p, AFFINE_CHUNK):
            for whole, part in zip(out, fit_reference(da[s:s + AFFINE_CHUNK])):
                whole[s:s + AFFINE_CHUNK] = part
        return out
    p = len(da)
    da_flat = np.ascontiguousarray(da, dtype=np.float32).reshape(p, -1)
    full = np.zeros((p, THUMB * THUMB), np.float32)
    disc = da_flat[:, _DISC]
    full[:, _DISC] = _normalise(disc)
    gy, gx = _grad(full.reshape(p, THUMB, THUMB))
    gy, gx = gy.reshape(p, -1)[:, _DISC], gx.reshape(p, -1)[:, _DISC]
    ref = full[:, _DISC]                    # the reference over the disc, zero mean, unit norm
    sd = np.stack([gy * _UY, gy * _UX, gx * _UY, gx * _UX, gy, gx], axis=1)
    hess = np.matmul(sd, sd.transpose(0, 2, 1))
    hess += np.eye(6, dtype=np.float32) * (1e-4 * np.trace(hess, axis1=1, axis2=2)[:, None, None] / 6 + 1e-9)
    steep = np.matmul(np.linalg.inv(hess).astype(np.float32), sd)
    return FitReference(disc, ref, steep, steep.sum(axis=2), np.matmul(steep, ref[:, :, None])[..., 0])


def _update(warped: np.ndarray, fr: FitReference) -> np.ndarray:
    """The Gauss-Newton step (P, 6) of the whole disc: steep @ (normalised warped - ref), with the
    normalisation (zero mean, unit norm) applied to the product instead of the samples."""
    s1 = warped.sum(axis=1)
    s2 = np.einsum("pd,pd->p", warped, warped)
    g = np.matmul(fr.steep, warped[:, :, None])[..., 0]
    mean = s1 / np.float32(warped.shape[1])
    norm = np.maximum(np.sqrt(np.maximum(s2 - s1 * mean, 0)), np.float32(1e-6))
    return (g - mean[:, None] * fr.steep_sum) / norm[:, None] - fr.steep_ref


def _update_overlap(warped: np.ndarray, valid: np.ndarray, fr: FitReference, work: np.ndarray) -> np.ndarray:
    """The step over the samples inside the query alone: steep @ ((normalised warped - normalised
    reference) * use), both normalised over `use` (the valid samples), again applied to the
    products: steep @ [warped * use, use, reference * use] in one product."""
    uw, use, ua = work[:, 0], work[:, 1], work[:, 2]
    np.copyto(use, valid)
    np.multiply(warped, use, out=uw)
    np.multiply(fr.disc, use, out=ua)
    g = np.matmul(work, fr.steep.transpose(0, 2, 1))         # (P, 3, 6)
    n = np.maximum(use.sum(axis=1), np.float32(1))
    sw, sa = uw.sum(axis=1), ua.sum(axis=1)
    mw, ma = sw / n, sa / n
    nw = np.maximum(np.sqrt(np.maximum(np.einsum("pd,pd->p", uw, warped) - sw * mw, 0)), np.float32(1e-6))
    na = np.maximum(np.sqrt(np.maximum(np.einsum("pd,pd->p", ua, fr.disc) - sa * ma, 0)), np.float32(1e-6))
    return ((g[:, 0] - mw[:, None] * g[:, 1]) / nw[:, None]
            - (g[:, 2] - ma[:, None] * g[:, 1]) / na[:, None])


def align_affine(da: np.ndarray, db: np.ndarray, m: np.ndarray, t: np.ndarray,
                 iters: int = AFFINE_ITERS, overlap_only: bool = False,
                 reference: FitReference | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit an affine map that lines the query detail image db up with the reference da, starting
    from (m, t), and return (NCC over the inscribed disc, fitted m, fitted t).

    Inverse-compositional Lucas-Kanade (Baker and Matthews) on normalised images, so gain and
    offset do not matter: the reference's steepest-descent images and Hessian are computed once per
    pair (`reference`: `fit_reference(da)`, shared by all fits of a pair, da then unused), and each
    iteration costs one bilinear warp and a small matrix product (the normalisation of the warped
    samples is applied to that product, `_update`). The discrete search
    before it gets within a pixel or two; this removes what is left (a rotation between the tried
    angles, an unequal crop of width and height, a sub-pixel shift): on COVID-CT it takes the
    share of cropped copies confirmed from 13% to 100% and of rotated ones from 14% to 98%
    (benchmarks/candidate_rank.py). Correlating over the inscribed disc keeps the black
    corners of a rotation out of the score (the smeared rows of an edge-filled shift are already left
    out of the thumbnail, hashing.fill_bands).

    Pairs are fitted AFFINE_CHUNK at a time: each iteration works on a dozen (pairs x 812) arrays,
    which for a whole batch of 2,000 pairs no longer fit in the CPU caches (the fit of one pair does
    not depend on the others; the cost shows in the verification times of
    benchmarks/leakage_recall.py, which spends most of it in fits on CT lookalikes)."""
    if reference is None:
        reference = fit_reference(da)
    if len(db) > AFFINE_CHUNK:
        parts = [align_affine(None, db[s:s + AFFINE_CHUNK], m[s:s + AFFINE_CHUNK], t[s:s + AFFINE_CHUNK], iters,
                              overlap_only, reference.take(slice(s, s + AFFINE_CHUNK)))
                 for s in range(0, len(db), AFFINE_CHUNK)]
        return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))  # type: ignore[return-value]
    p = len(db)
    fr = reference
    warper = _Warper(db)
    work = np.empty((p, 3, len(_DISC)), np.float32) if overlap_only else None
    m = m.astype(np.float32).copy()
    t = t.astype(np.float32).copy()
    eye = np.eye(2, dtype=np.float32)
    for _ in range(iters):
        warped, valid = warper(m, t, with_valid=overlap_only)
        if overlap_only:
            # only where the query has pixels: the reference's surround that a one-axis crop cut
            # away otherwise pulls the fit (from the right map, y-zoom 1.26, it drifted to 1.57).
            # Not the default: freed from that surround, fits bend more lookalikes into shape
            # (clean cifar images flagged 2 -> 5 of 400).
            dp = _update_overlap(warped, valid, fr, work)
        else:
            dp = _update(warped, fr)
        dp = np.clip(dp, -_STEP, _STEP)
        # compose with the inverse of the increment: W <- W o W(dp)^-1
        m_new = np.matmul(m, _inv2(eye + dp[:, :4].reshape(p, 2, 2)))
        t = t - np.matmul(m_new, dp[:, 4:, None])[..., 0]
        m = m_new
    warped, valid = warper(m, t)
    use = valid.astype(np.float32)
    ncc = (_normalise(warped, use) * _normalise(fr.disc, use)).sum(axis=1)
    ncc = np.where(use.sum(axis=1) >= MIN_OVERLAP * len(_DISC), ncc, -1.0)
    return ncc.astype(np.float32), m, t

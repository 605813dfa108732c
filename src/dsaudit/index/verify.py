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
   ``MAX_SHIFT`` pixels at once (FFT correlation of the images, their squares and their masks),
   with at least ``MIN_OVERLAP`` of the area in common;
4. the similarity is the best overlap NCC; a pair is confirmed when it reaches the threshold
   (``config.leakage.verify_threshold``).

Everything is vectorised over batches of pairs; no Python loop per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsaudit.index.hashing import THUMB, apply_dihedral

MAX_SHIFT = 5           # pixels of the 32-pixel thumbnail (about 15%)
MIN_OVERLAP = 0.55      # share of the thumbnail area that must overlap
ZOOMS = (1.0, 1.06, 1.12, 1.19, 1.26)
ANGLES = (0.0,)         # small rotations to try (degrees); extended by the caller if wanted
_PAD = 64


@dataclass
class Verified:
    similarity: np.ndarray   # (P,) best overlap NCC of the detail images
    shift: np.ndarray        # (P, 2) dy, dx in thumbnail pixels at the best alignment
    zoom: np.ndarray         # (P,) >1: the query shows a zoomed-in crop of the reference; <1: the other way
    angle: np.ndarray        # (P,) degrees


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (P, H, W) with reflected borders."""
    k = _gauss_kernel(sigma)
    r = len(k) // 2
    p = np.pad(x, ((0, 0), (r, r), (0, 0)), mode="reflect")
    y = sum(k[i] * p[:, i:i + x.shape[1], :] for i in range(len(k)))
    p = np.pad(y, ((0, 0), (0, 0), (r, r)), mode="reflect")
    return sum(k[i] * p[:, :, i:i + x.shape[2]] for i in range(len(k)))


def detail(thumbs: np.ndarray) -> np.ndarray:
    """Band-pass detail image: blur(0.7) - blur(3.0), float32."""
    t = thumbs.astype(np.float32)
    return _blur(t, 0.7) - _blur(t, 3.0)


def _zoom_grid(z: float, angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sampling coordinates that zoom a THUMB image in by z around its centre and rotate it."""
    c = (THUMB - 1) / 2.0
    yy, xx = np.mgrid[0:THUMB, 0:THUMB].astype(np.float64)
    yy, xx = (yy - c) / z, (xx - c) / z
    if angle:
        a = np.deg2rad(angle)
        yy, xx = np.cos(a) * yy - np.sin(a) * xx, np.sin(a) * yy + np.cos(a) * xx
    return yy + c, xx + c


def warp(imgs: np.ndarray, z: float, angle: float = 0.0) -> np.ndarray:
    """Bilinear zoom/rotation of a batch (P, 32, 32) with the same transform (edge values clamp)."""
    if z == 1.0 and not angle:
        return imgs
    yy, xx = _zoom_grid(z, angle)
    yy = np.clip(yy, 0, THUMB - 1)
    xx = np.clip(xx, 0, THUMB - 1)
    y0 = np.minimum(np.floor(yy).astype(int), THUMB - 2)
    x0 = np.minimum(np.floor(xx).astype(int), THUMB - 2)
    wy = (yy - y0).astype(np.float32)
    wx = (xx - x0).astype(np.float32)
    a = imgs[:, y0, x0]
    b = imgs[:, y0, x0 + 1]
    c = imgs[:, y0 + 1, x0]
    d = imgs[:, y0 + 1, x0 + 1]
    return (a * (1 - wy) * (1 - wx) + b * (1 - wy) * wx + c * wy * (1 - wx) + d * wy * wx).astype(np.float32)


_SHIFTS = np.arange(-MAX_SHIFT, MAX_SHIFT + 1)


def _corr(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Correlation c[dy, dx] = sum_y,x a[y, x] * b[y - dy, x - dx] for |dy|,|dx| <= MAX_SHIFT."""
    full = np.fft.irfft2(fa * np.conj(fb), s=(_PAD, _PAD))
    idx = _SHIFTS % _PAD
    return full[:, idx][:, :, idx]


_ONES = np.zeros((_PAD, _PAD), np.float32)
_ONES[:THUMB, :THUMB] = 1.0
_F_ONES = np.fft.rfft2(_ONES)
_COUNT = None


def _count() -> np.ndarray:
    global _COUNT
    if _COUNT is None:
        _COUNT = _corr(_F_ONES[None], _F_ONES[None])[0]
    return _COUNT


def overlap_ncc(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best overlap-normalised cross-correlation of (P,32,32) pairs over all small shifts.

    Returns (best NCC (P,), best shift (P, 2) as dy, dx: b moved by (dy, dx) matches a)."""
    p = len(a)
    pa = np.zeros((p, _PAD, _PAD), np.float32)
    pb = np.zeros((p, _PAD, _PAD), np.float32)
    pa[:, :THUMB, :THUMB] = a
    pb[:, :THUMB, :THUMB] = b
    fa, fb = np.fft.rfft2(pa), np.fft.rfft2(pb)
    fa2, fb2 = np.fft.rfft2(pa * pa), np.fft.rfft2(pb * pb)
    n = _count()[None]
    sab = _corr(fa, fb)
    sa = _corr(fa, _F_ONES[None])
    sa2 = _corr(fa2, _F_ONES[None])
    sb = _corr(_F_ONES[None], fb)
    sb2 = _corr(_F_ONES[None], fb2)
    cov = sab - sa * sb / n
    va = np.maximum(sa2 - sa * sa / n, 0)
    vb = np.maximum(sb2 - sb * sb / n, 0)
    # a flat overlap has no evidence either way: treat its correlation as 0
    denom = np.sqrt(va * vb)
    ncc = np.where(denom > 1e-3 * n * n, cov / np.maximum(denom, 1e-12), 0.0)
    ncc = np.where(n >= MIN_OVERLAP * THUMB * THUMB, ncc, -1.0)
    flat = ncc.reshape(p, -1)
    best = flat.argmax(axis=1)
    k = len(_SHIFTS)
    shift = np.stack([_SHIFTS[best // k], _SHIFTS[best % k]], axis=1)
    return flat[np.arange(p), best], shift


def verify_pairs(thumbs: np.ndarray, a: np.ndarray, b: np.ndarray, variant: np.ndarray,
                 zooms: tuple[float, ...] = ZOOMS, angles: tuple[float, ...] = ANGLES,
                 batch: int = 2048, details: np.ndarray | None = None) -> Verified:
    """Verify pairs (a[i] reference, b[i] query seen through dihedral `variant[i]`).

    `thumbs` is (N, 32, 32) uint8; `details` may pass precomputed ``detail(thumbs)``."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    variant = np.asarray(variant, dtype=np.int64)
    p = len(a)
    sim = np.full(p, -1.0, np.float32)
    shift = np.zeros((p, 2), np.int64)
    zoom = np.ones(p, np.float32)
    angle = np.zeros(p, np.float32)
    if p == 0:
        return Verified(sim, shift, zoom, angle)
    for s in range(0, p, batch):
        sl = slice(s, min(p, s + batch))
        ta = thumbs[a[sl]].astype(np.float32)
        tb = thumbs[b[sl]].astype(np.float32)
        vb = variant[sl]
        for k in np.unique(vb):
            m = vb == k
            tb[m] = apply_dihedral(tb[m], int(k))
        combos = [(1.0, 1.0, 0.0)]
        for z in zooms:
            if z != 1.0:
                combos += [(z, 1.0, 0.0), (1.0, z, 0.0)]
        for ang in angles:
            if ang:
                combos.append((1.0, 1.0, ang))
        best = np.full(sl.stop - sl.start, -2.0, np.float32)
        for za, zb, ang in combos:
            da = detail(warp(ta, za, ang))
            db = detail(warp(tb, zb))
            ncc, sh = overlap_ncc(da, db)
            better = ncc > best
            best = np.where(better, ncc, best)
            idx = np.arange(sl.start, sl.stop)[better]
            shift[idx] = sh[better]
            zoom[idx] = zb / za
            angle[idx] = ang
        sim[sl] = best
    return Verified(sim, shift, zoom, angle)

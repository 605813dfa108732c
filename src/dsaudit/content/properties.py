"""Per-image content properties, measured in the worker on the image it already decoded.

``measure(flat, gray)`` runs once per file inside ``hashing.extract`` (the one decode of the index
pass): vectorised numpy on small arrays, a fraction of the decode's own cost
(``benchmarks/content_checks.py --cost`` prints it side by side with the decode).

What is measured (``PROPERTIES``, in the order of the ``props`` feature vector):

* ``brightness``: mean grey level, 0..1.
* ``contrast``: standard deviation of the grey levels, 0..1.
* ``sharpness``: standard deviation of the 4-neighbour Laplacian over the root-mean-square central
  gradient, on the grey image at a working size of at most ``SHARP_SIDE`` pixels (larger images are
  box-reduced by an integer factor first): how much of the edge energy sits at the finest scale. It
  does not depend on contrast or brightness (a dark image keeps its fine detail, a blurred one loses
  it), and it separates blur better than the Laplacian over the grey spread, which also follows how
  much of the picture is smooth background (benchmarks/content_checks.py, CIFAR-10 blurred by 1.2 px:
  98.7% against 75% recall at the same false-flag rate).
* ``entropy``: Shannon entropy of the 256-bin grey histogram in bits (0 for a constant image, up
  to 8): near-constant, low-information images have little.
* ``chroma``: mean over the 8x8 colour thumbnail's cells of (largest - smallest channel) / 255: 0
  for a grey picture, whatever its file's colour mode (the box average also evens out JPEG's chroma
  noise).
* ``p05``, ``p95``: 5th and 95th percentile of the grey levels, 0..1 (a dark image has a dark
  95th percentile: even its brightest parts are dark).
* ``mean_r``, ``mean_g``, ``mean_b``: channel means, 0..1 (of the 8x8 colour thumbnail).

Also returned: ``colour``, an 8x8 RGB thumbnail (uint8), the compact colour descriptor that the
drift classifier, the outlier search and the neighbour label check use next to the grey detail
descriptor of the duplicate search.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PROPERTIES = ("brightness", "contrast", "sharpness", "entropy", "chroma", "p05", "p95",
              "mean_r", "mean_g", "mean_b")
SHARP_SIDE = 256      # sharpness is measured on the grey image reduced to at most this side
COLOUR_THUMB = 8      # side of the colour descriptor thumbnail


def _reduced(img: Image.Image, side: int) -> Image.Image:
    """`img` box-reduced by the smallest integer factor that brings its longer side to `side`."""
    f = -(-max(img.size) // side)
    return img.reduce(f) if f > 1 else img


_MOMENTS = np.stack([np.arange(256.0), np.arange(256.0) ** 2], axis=1)   # (256, 2): sum x, sum x^2
_MAX_PIXELS = SHARP_SIDE * SHARP_SIDE
with np.errstate(divide="ignore", invalid="ignore"):
    _CLOGC = np.nan_to_num(np.arange(_MAX_PIXELS + 1.0) * np.log2(np.arange(_MAX_PIXELS + 1.0)))  # c log2 c
_QUANTILES = np.array([0.05, 0.95])


def _thumb(img: Image.Image, pixels: np.ndarray | None = None) -> np.ndarray:
    """COLOUR_THUMB-sided box average of an image: from its pixel array for small images whose
    sides divide evenly (no PIL round trip: CIFAR's 32x32), else by PIL (reduce when it divides)."""
    w, h = img.size
    f = COLOUR_THUMB
    if pixels is not None and w % f == 0 and h % f == 0 and max(w, h) <= 64:
        bh, bw = h // f, w // f
        c = pixels.reshape(f, bh, f, bw, -1).sum(axis=(1, 3), dtype=np.uint32)
        out = ((c + bh * bw // 2) // (bh * bw)).astype(np.uint8)
        return out[:, :, 0] if pixels.ndim == 2 else out
    if w == h and w % f == 0:
        small = img.reduce(w // f) if w > f else img
    else:
        small = img.resize((f, f), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def measure(gray: Image.Image, gray_pixels: np.ndarray | None = None, flat: Image.Image | None = None,
            rgb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(props, colour) of one image: `gray` is its grey version, `flat` the image as 8-bit "L" or
    "RGB" (hashing._flat_image; None: grey), `gray_pixels` and `rgb` their arrays when the caller
    has them (extract does: each PIL-to-numpy conversion costs more than the arithmetic here).
    Written for speed on tiny images (CIFAR's 32x32, where numpy's per-call overhead dominates,
    benchmarks/content_checks.py --cost): the grey mean, spread, percentiles and entropy all come
    from one 256-bin histogram (entropy through a c log c table), the Laplacian and gradient
    energies from five shifted views, and chroma and the channel means from the 8x8 colour
    thumbnail."""
    flat = gray if flat is None else flat
    reduced = _reduced(gray, SHARP_SIDE)
    g8 = gray_pixels if reduced is gray and gray_pixels is not None else np.asarray(reduced, dtype=np.uint8)
    n = g8.size
    hist = np.bincount(g8.ravel(), minlength=256)
    s1, s2 = hist @ _MOMENTS
    mean = s1 / n
    spread = max(0.0, s2 / n - mean * mean) ** 0.5
    entropy = max(0.0, float(np.log2(n) - _CLOGC[hist].sum() / n))
    p05, p95 = np.searchsorted(np.cumsum(hist), _QUANTILES * n) / 255.0
    sharp = 0.0
    if min(g8.shape) >= 3:
        g = g8.astype(np.float32)
        mid = g[1:-1]
        up, down, left, right = g[:-2, 1:-1], g[2:, 1:-1], mid[:, :-2], mid[:, 2:]
        lap = (mid[:, 1:-1] * 4.0 - up - down - left - right).ravel()
        gx = (right - left).ravel()
        gy = (down - up).ravel()
        # rms Laplacian over rms gradient (the Laplacian's mean is a boundary term, near zero)
        sharp = (float(lap @ lap) / (float(gx @ gx + gy @ gy) + lap.size)) ** 0.5 if lap.size else 0.0
    if flat.mode == "RGB":
        colour = _thumb(flat, rgb)
    else:
        colour = np.repeat(_thumb(gray, gray_pixels)[:, :, None], 3, axis=2)
    c = colour.reshape(-1, 3)
    chroma = float((c.max(axis=1) - c.min(axis=1)).mean()) / 255.0 if flat.mode == "RGB" else 0.0
    means = c.sum(axis=0) / (255.0 * COLOUR_THUMB * COLOUR_THUMB)
    props = np.array([mean / 255.0, spread / 255.0, sharp, entropy, chroma, p05, p95, *means],
                     dtype=np.float32)
    return props, colour

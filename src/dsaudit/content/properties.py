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
* ``chroma``: mean over pixels of (largest - smallest channel) / 255 on the colour image box-reduced
  to at most ``COLOUR_SIDE``: 0 for a grey picture, whatever its file's colour mode.
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
COLOUR_SIDE = 64      # chroma and channel means on the colour image reduced to at most this side
COLOUR_THUMB = 8      # side of the colour descriptor thumbnail


def _reduced(img: Image.Image, side: int) -> Image.Image:
    """`img` box-reduced by the smallest integer factor that brings its longer side to `side`."""
    f = -(-max(img.size) // side)
    return img.reduce(f) if f > 1 else img


_LEVELS = np.arange(256, dtype=np.float64)
_LEVELS2 = _LEVELS * _LEVELS


def _percentiles(hist: np.ndarray, n: int) -> tuple[float, float]:
    cum = np.cumsum(hist)
    return (float(np.searchsorted(cum, 0.05 * n)) / 255.0, float(np.searchsorted(cum, 0.95 * n)) / 255.0)


def _thumb(img: Image.Image) -> np.ndarray:
    """COLOUR_THUMB-sided box average of `img` (reduce when the size divides evenly: faster)."""
    w, h = img.size
    if w == h and w % COLOUR_THUMB == 0:
        small = img.reduce(w // COLOUR_THUMB) if w > COLOUR_THUMB else img
    else:
        small = img.resize((COLOUR_THUMB, COLOUR_THUMB), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def measure(flat: Image.Image, gray: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(props, colour) of one image: `flat` is the image as 8-bit "L" or "RGB" (hashing._flat_image),
    `gray` its grey version at the same size. Written for speed on tiny images (CIFAR's 32x32, where
    numpy's per-call overhead dominates): the grey mean, spread, percentiles and entropy all come
    from one 256-bin histogram, the Laplacian is built in place, channel means come from the 8x8
    thumbnail (the image's means up to the box edges)."""
    g8 = np.asarray(_reduced(gray, SHARP_SIDE), dtype=np.uint8)
    n = g8.size
    hist = np.bincount(g8.ravel(), minlength=256)
    mean = float(hist @ _LEVELS) / n
    spread = max(0.0, float(hist @ _LEVELS2) / n - mean * mean) ** 0.5
    p = hist[hist > 0] / n
    entropy = float(-(p * np.log2(p)).sum())
    sharp = 0.0
    if min(g8.shape) >= 3:
        g = g8.astype(np.float32)
        lap = g[1:-1, 1:-1] * 4.0
        lap -= g[:-2, 1:-1]
        lap -= g[2:, 1:-1]
        lap -= g[1:-1, :-2]
        lap -= g[1:-1, 2:]
        v = lap.ravel()
        lap_var = max(0.0, float(v @ v) / v.size - (float(v.sum()) / v.size) ** 2)
        gx = (g[1:-1, 2:] - g[1:-1, :-2]).ravel()
        gy = (g[2:, 1:-1] - g[:-2, 1:-1]).ravel()
        grad_rms = ((float(gx @ gx) + float(gy @ gy)) / v.size) ** 0.5
        sharp = lap_var ** 0.5 / (grad_rms + 1.0)
    p05, p95 = _percentiles(hist, n)
    if flat.mode == "RGB":
        c = np.asarray(_reduced(flat, COLOUR_SIDE), dtype=np.uint8)
        r, gg, b = c[..., 0], c[..., 1], c[..., 2]
        chroma = float((np.maximum(np.maximum(r, gg), b) - np.minimum(np.minimum(r, gg), b)).mean()) / 255.0
        colour = _thumb(flat)
    else:
        chroma = 0.0
        colour = np.repeat(_thumb(gray)[:, :, None], 3, axis=2)
    means = colour.reshape(-1, 3).sum(axis=0) / (255.0 * COLOUR_THUMB * COLOUR_THUMB)
    props = np.array([mean / 255.0, spread / 255.0, sharp, entropy, chroma, p05, p95, *means],
                     dtype=np.float32)
    return props, colour

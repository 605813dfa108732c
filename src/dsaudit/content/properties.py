"""Per-image content properties, measured on the pixels of the index pass's one decode.

Two halves, one implementation (``grey_stats``, ``colour_stats``): in the worker, ``hashing.extract``
keeps the 8x8 colour thumbnail of every image and measures the grey statistics of images larger
than the 32x32 thumbnail (``grey_of``); ``hashing.complete`` measures the grey statistics of the
images that are their own 32x32 thumbnail (CIFAR's), and the colour statistics of all, over all
images at once, where a dozen numpy calls per tiny image would cost more than decoding it
(``benchmarks/content_checks.py --cost`` prints the share). ``measure`` is the one-image form.

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
# the grey statistics (grey_stats) and the colour ones (colour_stats), in their order in PROPERTIES
GREY = ("brightness", "contrast", "sharpness", "entropy", "p05", "p95")
COLOUR = ("chroma", "mean_r", "mean_g", "mean_b")
_ORDER = np.array([(GREY + COLOUR).index(p) for p in PROPERTIES])
SHARP_SIDE = 256      # sharpness is measured on the grey image reduced to at most this side
COLOUR_THUMB = 8      # side of the colour descriptor thumbnail


def _reduced(img: Image.Image, side: int) -> Image.Image:
    """`img` box-reduced by the smallest integer factor that brings its longer side to `side`."""
    f = -(-max(img.size) // side)
    return img.reduce(f) if f > 1 else img


_MAX_PIXELS = SHARP_SIDE * SHARP_SIDE
with np.errstate(divide="ignore", invalid="ignore"):
    _CLOGC = np.nan_to_num(np.arange(_MAX_PIXELS + 1.0) * np.log2(np.arange(_MAX_PIXELS + 1.0)))  # c log2 c
_LEVELS = np.arange(256, dtype=np.int64)
_QUANTILES = np.array([0.05, 0.95])


def colour_thumb(img: Image.Image, pixels: np.ndarray | None = None) -> np.ndarray:
    """COLOUR_THUMB-sided box average of an image: from its pixel array for small images whose
    sides divide evenly (no PIL round trip: CIFAR's 32x32), else by PIL (reduce when it divides).
    A grey image gives its grey thumbnail repeated in three channels."""
    w, h = img.size
    f = COLOUR_THUMB
    if pixels is not None and w % f == 0 and h % f == 0 and max(w, h) <= 64:
        bh, bw = h // f, w // f
        c = pixels.reshape(f, bh, f, bw, -1).sum(axis=(1, 3), dtype=np.uint32)
        out = ((c + bh * bw // 2) // (bh * bw)).astype(np.uint8)
    else:
        if w == h and w % f == 0:
            small = img.reduce(w // f) if w > f else img
        else:
            small = img.resize((f, f), Image.Resampling.BOX)
        out = np.asarray(small, dtype=np.uint8)
    if out.ndim == 2 or out.shape[2] == 1:
        out = np.repeat(out.reshape(f, f, 1), 3, axis=2)
    return out


def colour_thumb_bytes(flat: Image.Image) -> bytes:
    """``colour_thumb`` of an 8-bit "L" or "RGB" image as RGB bytes, straight from Pillow (its
    box reduction rounds as colour_thumb does): the worker's path for 32x32 images."""
    w, h = flat.size
    f = COLOUR_THUMB
    small = flat.reduce(w // f) if w == h and w % f == 0 and w > f else \
        (flat if flat.size == (f, f) else flat.resize((f, f), Image.Resampling.BOX))
    return (small if small.mode == "RGB" else small.convert("RGB")).tobytes()


def grey_stats(g8: np.ndarray, block: int = 256) -> np.ndarray:
    """(N, len(GREY)) float64 grey statistics of N grey images of one size, (N, H, W) uint8.

    One implementation for both callers: the worker (one image at a time, N = 1, on the image
    reduced to at most SHARP_SIDE) and ``hashing.complete`` (every image that is its own 32x32
    thumbnail at once, where numpy's per-call overhead would otherwise cost more than the
    arithmetic; `block` images at a time, so that the work stays in the processor's cache). Mean,
    spread, percentiles and entropy come from one 256-bin histogram per image (entropy through a
    c log c table); the Laplacian and gradient energies are exact integer sums.
    """
    n_img, h, w = g8.shape
    if n_img > block:
        return np.concatenate([grey_stats(g8[s:s + block], block) for s in range(0, n_img, block)])
    n = h * w
    flat = g8.reshape(n_img, n)
    if n_img == 1:   # the worker's one image: no per-image offsets to add
        hist = np.bincount(flat[0], minlength=256)[None]
    else:
        offsets = (np.arange(n_img, dtype=np.int64) * 256)[:, None]
        hist = np.bincount((flat + offsets).ravel(), minlength=256 * n_img).reshape(n_img, 256)
    s1 = hist @ _LEVELS
    s2 = hist @ (_LEVELS * _LEVELS)
    mean = s1 / n
    spread = np.sqrt(np.maximum(0.0, s2 / n - mean * mean))
    entropy = np.maximum(0.0, np.log2(n) - _CLOGC[hist].sum(axis=1) / n)
    cum = np.cumsum(hist, axis=1)
    p05, p95 = ((cum[:, None, :] < (_QUANTILES * n)[None, :, None]).sum(axis=2) / 255.0).T
    sharp = np.zeros(n_img)
    if min(h, w) >= 3:
        g = g8.astype(np.int16)    # |Laplacian| <= 2040 and its square fit int16 and int32 exactly
        mid = g[:, 1:-1]
        up, down, left, right = g[:, :-2, 1:-1], g[:, 2:, 1:-1], mid[:, :, :-2], mid[:, :, 2:]
        lap = (mid[:, :, 1:-1] * 4 - up - down - left - right).reshape(n_img, -1).astype(np.int32)
        gx = (right - left).reshape(n_img, -1).astype(np.int32)
        gy = (down - up).reshape(n_img, -1).astype(np.int32)
        # rms Laplacian over rms gradient (the Laplacian's mean is a boundary term, near zero)
        lap2 = (lap * lap).sum(axis=1, dtype=np.int64)
        grad2 = (gx * gx).sum(axis=1, dtype=np.int64) + (gy * gy).sum(axis=1, dtype=np.int64)
        sharp = np.sqrt(lap2 / (grad2 + lap.shape[1]))
    return np.stack([mean / 255.0, spread / 255.0, sharp, entropy, p05, p95], axis=1)


def colour_stats(colour: np.ndarray) -> np.ndarray:
    """(N, len(COLOUR)) float64 of N colour thumbnails (N, 8, 8, 3) uint8: chroma (0 for a grey
    image, whose thumbnail has equal channels) and the channel means."""
    c = colour.reshape(len(colour), -1, 3)
    chroma = (c.max(axis=2) - c.min(axis=2)).mean(axis=1) / 255.0
    means = c.sum(axis=1) / (255.0 * COLOUR_THUMB * COLOUR_THUMB)
    return np.concatenate([chroma[:, None], means], axis=1)


def combine(grey: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(N, len(PROPERTIES)) float32 property vectors from grey_stats and colour_stats rows."""
    return np.concatenate([grey, colour], axis=1)[:, _ORDER].astype(np.float32)


def grey_of(gray: Image.Image, gray_pixels: np.ndarray | None = None) -> np.ndarray:
    """(len(GREY),) grey statistics of one image, on its grey version reduced to SHARP_SIDE."""
    reduced = _reduced(gray, SHARP_SIDE)
    g8 = gray_pixels if reduced is gray and gray_pixels is not None else np.asarray(reduced, dtype=np.uint8)
    return grey_stats(g8[None])[0]


def measure(gray: Image.Image, gray_pixels: np.ndarray | None = None, flat: Image.Image | None = None,
            rgb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(props, colour) of one image: `gray` is its grey version, `flat` the image as 8-bit "L" or
    "RGB" (hashing._flat_image; None: grey), `gray_pixels` and `rgb` their arrays when the caller
    has them. The index computes the same values in two halves (grey_of or grey_stats in bulk,
    and colour_stats in ``hashing.complete``); this is the one-image form."""
    flat = gray if flat is None else flat
    colour = colour_thumb(flat, rgb) if flat.mode == "RGB" else colour_thumb(gray, gray_pixels)
    return combine(grey_of(gray, gray_pixels)[None], colour_stats(colour[None]))[0], colour

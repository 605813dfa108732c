"""Per-image features for duplicate search, computed inside the one decode pass.

Interface used by the index builder (records.py / build.py):

* ``FEATURES_VERSION``: bump whenever the features change; cached records of another version are
  recomputed.
* ``prepare(img)``: called after the header is read and before pixels are decoded; may call
  ``img.draft`` so that large JPEGs decode at reduced size.
* ``extract(img)``: per image, in a worker process; returns a dict of fixed-shape numpy arrays
  (the same keys and shapes for every image) that is cached on disk.
* ``finalize(features)``: once, in the main process, over the stacked arrays of all images;
  vectorised work (DCT hashes of all thumbnails at once) goes here; returns arrays to add.

What is stored per image (extract):

* ``thumb``: 32x32 grey thumbnail (area-averaged, aspect ignored; rows and columns that an
  edge-filled shift added are left out, see ``fill_bands``), uint8. Everything near-duplicate
  is derived from it: the hashes below, the descriptor used for the nearest-neighbour candidates and
  the second-stage verification (``dsaudit.similarity.verify``).
* ``pixel_hash``: 64-bit digest of the decoded pixels (mode-normalised: palette and 1-bit images are
  expanded first), so a PNG and a BMP of the same pixels collide while their bytes differ.

What finalize adds (vectorised over all images, never one Python call per image):

* ``phash``: (N, 8) uint64, the 64-bit DCT perceptual hash of each of the 8 dihedral variants of
  the thumbnail (identity, flips, 90-degree rotations, transposes; order in ``DIHEDRAL``). The
  variants come from sign patterns and a transpose of one 8x8 DCT block, not from 8 DCTs.
* ``desc``: (N, 64) float32, a unit-norm, zero-mean 8x8 band of the thumbnail (coarse enough that a
  10% shift or crop barely moves it) for the nearest-neighbour candidate search.
* ``smooth``: (N,) float32, lag-1 autocorrelation of the detail image; high for images upscaled
  from a tiny original, whose matches must clear a higher similarity (``leakage.smooth_boost``).
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from dsaudit.content import properties

# 5: content properties ("props", "colour"); 6: sharpness over the gradient, chroma of the 8x8 thumbnail;
# 7: images that are their own 32x32 thumbnail get borders, inner view and properties in complete()
# (the same values, the sharpness' energies now exact integer sums)
FEATURES_VERSION = "7"
THUMB = 32

# The 8 dihedral transforms of a square image, as (name, transpose, flip rows, flip columns), applied
# in that order by apply_dihedral; names follow np.rot90 (counter-clockwise). The search applies
# variant k to the query to line it up with the reference, so the transform reported for a match
# (what was done to the reference) is the inverse of variant k.
DIHEDRAL = (
    ("", False, False, False),
    ("hflip", False, False, True),
    ("vflip", False, True, False),
    ("rot180", False, True, True),
    ("transpose", True, False, False),
    ("rot270", True, False, True),     # = np.rot90(x, 3): 90 degrees clockwise
    ("rot90", True, True, False),      # = np.rot90(x): 90 degrees counter-clockwise
    ("transverse", True, True, True),
)
DIHEDRAL_NAMES = tuple(d[0] for d in DIHEDRAL)


def prepare(img: Image.Image) -> None:
    """Let large JPEGs decode at a reduced size: only a small thumbnail is needed."""
    if img.format == "JPEG" and min(img.size) >= 4 * THUMB * 4:
        img.draft("RGB" if img.mode not in ("L", "1") else "L", (THUMB * 4, THUMB * 4))


def _pixel_digest(img: Image.Image, pixels: np.ndarray | None = None) -> bytes:
    """`pixels`: the image's own pixels as an array when the caller has them (an "L" or "RGB"
    image: the same bytes as img.tobytes(), without a second copy)."""
    if img.mode in ("P", "PA", "1"):
        img = img.convert("RGBA" if ("transparency" in img.info or img.mode == "PA") else "RGB")
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{img.mode}{img.size}".encode())
    h.update(memoryview(np.ascontiguousarray(pixels)) if pixels is not None else img.tobytes())
    return h.digest()


MAX_FILL = 0.25   # a fill band wider than this share of the side is taken as content


def _leading_copies(rows: np.ndarray, any_row: bool = False) -> int:
    """How many rows after the first are exact copies of it. Unless `any_row`, 0 when the first row
    is flat or blocky: flat borders (letterbox, black CT background) are content, and JPEG-like
    smooth areas repeat rows inside 8x8 blocks; the edge of a real picture that Keras replicated
    changes from pixel to pixel."""
    first = rows[0]
    if not any_row and np.count_nonzero(first[1:] != first[:-1]) < max(4, len(first) // 4):
        return 0
    same = np.all(rows[1:] == first, axis=1)
    return int(np.argmin(same)) if not same.all() else len(same)


def fill_bands(gray: np.ndarray) -> tuple[int, int, int, int]:
    """Rows/columns (top, bottom, left, right) that an edge-filled shift added: exact copies of the
    first real row or column, as Keras' ImageDataGenerator writes with its default
    fill_mode="nearest". They carry no content of the original, and their streaks would count as
    detail in the verification, so the thumbnail is made from the rest (a shifted copy then becomes
    a crop, which the alignment handles: COVID-CT edge-filled shifts 95% -> 98% found). Starting
    the alignment from the geometry the bands imply was tried as well and changed nothing. Only
    non-flat repeated rows on one side of an axis count: flat borders (letterboxing, black
    background) and the clamped edges of upscaled images are left alone. Not called for JPEG
    files (to_thumb)."""
    h, w = gray.shape[:2]
    if h < 8 or w < 8:
        return 0, 0, 0, 0
    lim_h, lim_w = int(h * MAX_FILL), int(w * MAX_FILL)
    sides = ((gray[:lim_h + 1], lim_h), (gray[::-1][:lim_h + 1], lim_h),
             (gray.T[:lim_w + 1], lim_w), (gray.T[::-1][:lim_w + 1], lim_w))
    bands = []
    for rows, lim in sides:
        n = _leading_copies(rows) if lim >= 1 else 0
        bands.append(n if n < lim else 0)   # all copies up to the limit: stripes, not a fill
    # a shift fills one side of an axis and cuts the other; repeated rows on the opposite side too
    # (even flat ones) are what upscaling with clamped edges leaves on every image of a set
    for side, opposite in ((0, 1), (1, 0), (2, 3), (3, 2)):
        if bands[side] and _leading_copies(sides[opposite][0], any_row=True):
            bands[side] = 0
    return bands[0], bands[1], bands[2], bands[3]


FLAT_TOL = 3.0        # grey levels: mean absolute difference of a border row from the border colour
FLAT_WORK = 128       # flat borders are measured on the image box-reduced to at most this side
MIN_CONTENT = 0.5     # a trim that would leave less than this share of a side is not made
MIN_BORDER = 0.03     # borders all thinner than this share of their side are left (the alignment copes)
MIN_INNER_STD = 12.0  # grey-level spread the picture inside a border needs to make a view of its own


def _flat_run(lines: np.ndarray) -> int:
    """How many leading lines (rows of `lines`) are of one flat colour: the first line's median,
    within FLAT_TOL on average. 0 unless the first line itself is that flat."""
    colour = float(np.median(lines[0]))
    dev = np.abs(lines - colour).mean(axis=1)
    inside = dev > FLAT_TOL
    return int(np.argmax(inside)) if inside.any() else len(lines)


def _may_start_border(gray: np.ndarray) -> bool:
    """False when none of the four outermost lines can be flat in the sense of _flat_run. Integer
    arithmetic on the four lines, no median: the mean absolute deviation from the (floored) mean
    is at most twice that from the median plus one, so lines above 2 * FLAT_TOL + 1 cannot start
    a border."""
    h, w = gray.shape[:2]
    groups = ([np.concatenate((gray[0], gray[-1], gray[:, 0], gray[:, -1])).reshape(4, w)] if h == w
              else [gray[[0, -1]], gray[:, [0, -1]].T])
    for lines in groups:
        e = lines.astype(np.int32)
        n = e.shape[1]
        dev = np.abs(e - e.sum(axis=1, keepdims=True) // n).sum(axis=1)
        if (dev <= (2 * FLAT_TOL + 1) * n).any():
            return True
    return False


def flat_borders(gray: np.ndarray) -> tuple[int, int, int, int]:
    """Rows/columns (top, bottom, left, right) of flat colour around the content: a letterbox or
    padding border, a figure's white margin, the black field around a CT body, the white page
    around a digit. Copies differ most often in exactly these (padded to a square, re-cropped with
    another margin), so the thumbnail is made of what is inside them. Decided on the image
    box-reduced to at most FLAT_WORK pixels (which also averages added noise down), repeated for a
    second colour inside the first (a white pad around a black CT field), and not made on an axis
    where less than MIN_CONTENT of the side would remain (a nearly blank image stays whole). A
    thin line of JPEG ringing next to the content may stay; the alignment absorbs it."""
    h, w = gray.shape[:2]
    if h < 8 or w < 8:
        return 0, 0, 0, 0
    # fast exit, the common case: no outermost line is anywhere near flat (a few microseconds)
    if not _may_start_border(gray):
        return 0, 0, 0, 0
    g = gray.astype(np.float32)
    f = max(1, -(-max(h, w) // FLAT_WORK))
    if f > 1:
        hh, ww = h // f, w // f
        g = g[:hh * f, :ww * f].reshape(hh, f, ww, f).mean(axis=(1, 3))
    top = bottom = left = right = 0
    for _ in range(2):
        box = g[top:g.shape[0] - bottom, left:g.shape[1] - right]
        if min(box.shape) < 4:
            break
        t, b = _flat_run(box), _flat_run(box[::-1])
        l_, r = _flat_run(box.T), _flat_run(box.T[::-1])
        if not (t or b or l_ or r):
            break
        top, bottom, left, right = top + t, bottom + b, left + l_, right + r
    hs, ws = g.shape
    if hs - top - bottom < max(2, MIN_CONTENT * hs):
        top = bottom = 0
    if ws - left - right < max(2, MIN_CONTENT * ws):
        left = right = 0
    if max(top, bottom) < MIN_BORDER * hs and max(left, right) < MIN_BORDER * ws:
        return 0, 0, 0, 0
    # back to the full-size pixel grid (a partly flat block stays: the cut is on the inside edge)
    return top * f, bottom * f, left * f, right * f


def _flat_image(img: Image.Image) -> Image.Image:
    """The image as 8-bit grey or RGB (16-bit and float images stretched to the 0.5-99.5
    percentiles of their finite values, NaN/inf shown as the low end; transparency composited on
    white, as a viewer shows it). Raises ValueError for a float image with no finite value, which
    the index then reports as a broken image."""
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(arr)   # NaN/inf pixels (float TIFFs) would make every percentile NaN
        if arr.size and not finite.any():
            raise ValueError("no finite pixel value (NaN or infinity everywhere)")
        lo, hi = np.percentile(arr[finite], (0.5, 99.5)) if arr.size else (0.0, 1.0)
        arr = np.where(finite, arr, lo)
        arr = np.clip((arr - lo) / max(hi - lo, 1e-9) * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def _shrink(gray: Image.Image) -> np.ndarray:
    if gray.size != (THUMB, THUMB):
        gray = gray.resize((THUMB, THUMB), Image.Resampling.BOX if min(gray.size) >= THUMB
                           else Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def thumbnails(img: Image.Image, gray: Image.Image | None = None, gray_pixels: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int, int, int]]:
    """(thumbnail, inner thumbnail or None, flat border box) of an image.

    The thumbnail is 32x32 grey, an area average over the whole image (aspect ratio ignored), less
    the fill bands of an edge-filled shift (``fill_bands``: a shifted copy then becomes a crop).
    When the picture sits inside a flat border (``flat_borders``), the inner thumbnail is made of
    what is inside it: a second view of the image, so that a padded or re-margined copy lines up
    with its original. It is a view added, not a replacement, because whether a border counts as
    flat can differ between an image and its copy (noise added, a gamma change on a near-flat sky).
    `gray` (and `gray_pixels`, its array) when the caller has made them already (extract).
    """
    from_jpeg = img.format in ("JPEG", "MPO")
    if gray is None:
        gray = _flat_image(img).convert("L")
    arr = np.asarray(gray) if gray_pixels is None else gray_pixels
    # JPEG repeats rows exactly inside its 8x8 blocks, and a Keras fill saved as JPEG is no longer exact
    top, bottom, left, right = fill_bands(arr) if not from_jpeg else (0, 0, 0, 0)
    if top or bottom or left or right:
        gray = gray.crop((left, top, gray.size[0] - right, gray.size[1] - bottom))
        arr = np.asarray(gray)
    box = flat_borders(arr)
    inner = None
    if any(box):
        top, bottom, left, right = box
        inner = _shrink(gray.crop((left, top, gray.size[0] - right, gray.size[1] - bottom)))
        if inner.std() < MIN_INNER_STD:   # a sliver of edge in a near-flat image, stretched: no view
            inner, box = None, (0, 0, 0, 0)
    thumb = arr if arr.shape == (THUMB, THUMB) else _shrink(gray)   # (32-px images need no resize)
    return thumb, inner, box


def to_thumb(img: Image.Image) -> np.ndarray:
    """The 32x32 grey thumbnail of ``thumbnails``."""
    return thumbnails(img)[0]


# Per-image features as they travel from the worker processes and sit in the record cache: raw
# bytes of a fixed dtype and shape, not pickled numpy arrays, which are several times slower to
# pickle and unpickle (benchmarks/scan_speed.py: the 60k cache write went from 1.1 s to 0.6 s).
# Optional features ("inner", "border", "grey") are absent from a record when the image has none
# or when ``complete`` measures them ("deferred"); the stacked array then holds zeros there.
FEATURE_SPEC: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "thumb": (np.dtype(np.uint8), (THUMB, THUMB)),
    "inner": (np.dtype(np.uint8), (THUMB, THUMB)),
    "border": (np.dtype(np.uint16), (4,)),
    "pixel_hash": (np.dtype(np.uint64), (1,)),
    "grey": (np.dtype(np.float64), (len(properties.GREY),)),
    "colour": (np.dtype(np.uint8), (properties.COLOUR_THUMB, properties.COLOUR_THUMB, 3)),
    "deferred": (np.dtype(np.uint8), (1,)),
}


def encode_features(features: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {k: np.ascontiguousarray(v, dtype=FEATURE_SPEC[k][0]).tobytes() for k, v in features.items()}


def stack_features(encoded: list[dict[str, bytes] | None]) -> dict[str, np.ndarray]:
    """(N, ...) arrays of every feature present in any record, zeros where a record lacks it (or
    has no features at all). Empty when no record has features."""
    out: dict[str, np.ndarray] = {}
    present = [e for e in encoded if e is not None]
    if not present:
        return out
    for key, (dtype, shape) in FEATURE_SPEC.items():
        if not any(key in e for e in present):
            continue
        zero = bytes(dtype.itemsize * int(np.prod(shape)))
        raw = b"".join(e.get(key, zero) if e is not None else zero for e in encoded)
        out[key] = np.frombuffer(raw, dtype=dtype).reshape((len(encoded),) + shape).copy()
    return out


def extract_encoded(img: Image.Image) -> dict[str, bytes]:
    """Per-image features, in the worker, as they travel and are cached (FEATURE_SPEC bytes).
    Always: "thumb", "colour" (the 8x8 colour thumbnail of dsaudit.content.properties) and
    "pixel_hash".

    An image that is its own 32x32 grey thumbnail (CIFAR's, and any 32x32 image without fill
    bands) stops there, marked "deferred": ``complete`` measures its flat border, inner view and
    grey properties from the thumbnail, for all such images at once, where a dozen numpy calls per
    32x32 image cost more than decoding it (benchmarks/index_speed.py); its features are made as
    bytes straight from Pillow, without numpy. Any other image gets them here, from its own
    pixels: "border", "inner" (only when it has one; the index stacks it with zeros for the
    others, and "border" says which) and "grey" (properties.grey_of)."""
    flat = _flat_image(img)
    gray = flat if flat.mode == "L" else flat.convert("L")
    if gray.size == (THUMB, THUMB):
        thumb = gray.tobytes()
        from_jpeg = img.format in ("JPEG", "MPO")
        if from_jpeg or not any(fill_bands(np.frombuffer(thumb, np.uint8).reshape(THUMB, THUMB))):
            return {"thumb": thumb, "colour": properties.colour_thumb_bytes(flat),
                    "pixel_hash": _pixel_digest(img), "deferred": b"\x01"}
    gray_pixels = np.asarray(gray)
    rgb = np.asarray(flat) if flat.mode == "RGB" else None
    # an "L" or "RGB" image is its own flat image: its pixel arrays are img.tobytes()'s bytes
    own = (gray_pixels if img.mode == "L" else rgb) if flat is img else None
    thumb_arr, inner, box = thumbnails(img, gray, gray_pixels)
    out = {
        "thumb": thumb_arr,
        "colour": properties.colour_thumb(flat, rgb) if rgb is not None else properties.colour_thumb(gray, gray_pixels),
        "pixel_hash": np.frombuffer(_pixel_digest(img, own), dtype=np.uint64),
        "border": np.array(box, dtype=np.uint16),
        "grey": properties.grey_of(gray, gray_pixels),
    }
    if inner is not None:
        out["inner"] = inner
    return encode_features(out)


def decode_features(encoded: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The arrays of one record's feature bytes (FEATURE_SPEC)."""
    return {k: np.frombuffer(v, dtype=FEATURE_SPEC[k][0]).reshape(FEATURE_SPEC[k][1]) for k, v in encoded.items()}


def extract(img: Image.Image) -> dict[str, np.ndarray]:
    """``extract_encoded`` as arrays (tests, benchmarks)."""
    return decode_features(extract_encoded(img))


def _first_line_runs(g: np.ndarray, top: np.ndarray, bottom: np.ndarray, left: np.ndarray,
                     right: np.ndarray) -> np.ndarray:
    """``_flat_run`` of the top side of each image's box, for N images at once: (N, S, S) int16
    grey images (already oriented so that the side looked at is the top) and the box as rows and
    columns cut from each side. Exact integer arithmetic: twice the median and twice the mean
    absolute deviation, compared with twice FLAT_TOL (the float path's sums are exact too). The
    lines below the first are looked at only for images whose first line is flat."""
    n, s, _ = g.shape
    j = np.arange(s)
    cols = (j[None, :] >= left[:, None]) & (j[None, :] < s - right[:, None])      # (N, S)
    m = cols.sum(axis=1)
    first = g[np.arange(n), np.minimum(top, s - 1)]                                # (N, S)
    ranked = np.sort(np.where(cols, first, 1 << 12), axis=1)
    med2 = (ranked[np.arange(n), np.maximum((m - 1) // 2, 0)]
            + ranked[np.arange(n), np.minimum(m // 2, s - 1)])                    # 2 x median
    limit = 2 * FLAT_TOL * m
    flat_first = (np.abs(2 * first - med2[:, None]) * cols).sum(axis=1) <= limit
    runs = np.zeros(n, np.int64)
    k = np.flatnonzero(flat_first)
    if not len(k):
        return runs
    dev2 = (np.abs(2 * g[k] - med2[k, None, None]) * cols[k, None, :]).sum(axis=2, dtype=np.int32)
    inside = dev2 > limit[k, None]
    rows = j[None, :]
    inside = np.where(rows < top[k, None], False, inside | (rows >= s - bottom[k, None]))
    inside = np.concatenate([inside, np.ones((len(k), 1), bool)], axis=1)        # a box to the edge
    runs[k] = np.argmax(inside, axis=1) - top[k]
    return runs


def flat_borders_batch(gray: np.ndarray) -> np.ndarray:
    """``flat_borders`` of N square grey images at once, (N, S, S) uint8 with 8 <= S <= FLAT_WORK
    (no box reduction: the images are measured at full size), as (N, 4) int64 (top, bottom, left,
    right); equal to flat_borders image by image (tests/test_leakage_fastpaths.py)."""
    n, s, s2 = gray.shape
    assert s == s2 and 8 <= s <= FLAT_WORK, gray.shape
    out = np.zeros((n, 4), np.int64)
    if not n:
        return out
    edges = np.stack([gray[:, 0], gray[:, -1], gray[:, :, 0], gray[:, :, -1]], axis=1).astype(np.int32)
    dev = np.abs(edges - edges.sum(axis=2, keepdims=True) // s).sum(axis=2)
    rows = np.flatnonzero((dev <= (2 * FLAT_TOL + 1) * s).any(axis=1))            # _may_start_border
    g = gray[rows].astype(np.int16)
    views = (g, g[:, ::-1], g.transpose(0, 2, 1), g.transpose(0, 2, 1)[:, ::-1])
    box = np.zeros((len(rows), 4), np.int64)                                        # top, bottom, left, right
    live = np.ones(len(rows), bool)
    for _ in range(2):
        k = np.flatnonzero(live)
        t, b, l_, r = box[k].T
        runs = np.stack([
            _first_line_runs(views[0][k], t, b, l_, r), _first_line_runs(views[1][k], b, t, l_, r),
            _first_line_runs(views[2][k], l_, r, t, b), _first_line_runs(views[3][k], r, l_, t, b)], axis=1)
        box[k] += runs
        t, b, l_, r = box.T
        # a second round inside the first border, where one was found and a box of 4 is left
        live[k] = runs.any(axis=1)
        live &= (s - t - b >= 4) & (s - l_ - r >= 4)
    t, b, l_, r = box.T
    keep_rows = ~(s - t - b < max(2, MIN_CONTENT * s))
    keep_cols = ~(s - l_ - r < max(2, MIN_CONTENT * s))
    box *= np.stack([keep_rows, keep_rows, keep_cols, keep_cols], axis=1)
    thin = (box[:, :2].max(axis=1) < MIN_BORDER * s) & (box[:, 2:].max(axis=1) < MIN_BORDER * s)
    box[thin] = 0
    out[rows] = box
    return out


def complete(features: dict[str, np.ndarray], chunk: int = 4096) -> dict[str, np.ndarray]:
    """What ``extract`` left to be measured over all images at once ("deferred": images that are
    their own 32x32 thumbnail): their flat border and inner view (as ``thumbnails`` makes them),
    and the content properties of every image (``props``, dsaudit.content.properties: the grey
    statistics of deferred images from their thumbnails, of the others from the worker's "grey",
    and the colour statistics of all from "colour").

    Returns "props" (N, len(PROPERTIES)) float32, "border" (N, 4) uint16 and, for the deferred
    images that have an inner view, "inner_rows" and "inner_views" (use ``apply_completed``): only
    those rows, so that the memoised result stays small."""
    thumbs = features["thumb"]
    n = len(thumbs)
    deferred = np.flatnonzero(features["deferred"][:, 0]) if "deferred" in features else np.zeros(0, np.int64)
    grey = features["grey"].astype(np.float64) if "grey" in features else np.zeros((n, len(properties.GREY)))
    border = features["border"].astype(np.int64) if "border" in features else np.zeros((n, 4), np.int64)
    colour = features["colour"] if "colour" in features else np.zeros((n, properties.COLOUR_THUMB,
                                                                          properties.COLOUR_THUMB, 3), np.uint8)
    from dsaudit.threads import blas_threads, parallel_map, workers

    colour_part = np.zeros((n, len(properties.COLOUR)))
    inner_parts: list[tuple[np.ndarray, np.ndarray]] = []

    def run(s: int) -> None:   # disjoint rows per chunk, on a thread pool
        colour_part[s:s + chunk] = properties.colour_stats(colour[s:s + chunk])
        rows = deferred[(deferred >= s) & (deferred < s + chunk)]
        if not len(rows):
            return
        small = thumbs[rows]
        grey[rows] = properties.grey_stats(small)
        box = flat_borders_batch(small)
        got_rows, got_views = [], []
        for k in np.flatnonzero(box.any(axis=1)):
            top, bottom, left, right = (int(v) for v in box[k])
            inner = _shrink(Image.fromarray(small[k]).crop((left, top, THUMB - right, THUMB - bottom)))
            if inner.std() < MIN_INNER_STD:   # as thumbnails: a sliver of edge, stretched, is no view
                box[k] = 0
            else:
                got_rows.append(rows[k])
                got_views.append(inner)
        border[rows] = box
        if got_rows:
            inner_parts.append((np.array(got_rows, np.int64), np.stack(got_views)))

    with blas_threads(1):
        parallel_map(run, list(range(0, n, chunk)), workers())
    inner_parts.sort(key=lambda part: int(part[0][0]))
    out = {"props": properties.combine(grey, colour_part), "border": border.astype(np.uint16)}
    if inner_parts:
        out["inner_rows"] = np.concatenate([p[0] for p in inner_parts])
        out["inner_views"] = np.concatenate([p[1] for p in inner_parts])
    return out


def apply_completed(features: dict[str, np.ndarray], done: dict[str, np.ndarray]) -> None:
    """Put ``complete``'s result into the stacked features (the inner views of deferred images
    into "inner", zeros elsewhere as for the worker's own)."""
    features["props"] = done["props"]
    features["border"] = done["border"]
    if "inner_rows" in done:
        if "inner" not in features:
            features["inner"] = np.zeros((len(features["thumb"]), THUMB, THUMB), np.uint8)
        features["inner"][done["inner_rows"]] = done["inner_views"]


# ---------------------------------------------------------------------------------------------
# Vectorised hashes over stacked thumbnails
# ---------------------------------------------------------------------------------------------

def _dct_matrix(n: int, k: int) -> np.ndarray:
    """First k rows of the orthonormal DCT-II matrix of size n."""
    x = np.arange(n)
    u = np.arange(k)[:, None]
    m = np.cos(np.pi * (2 * x + 1) * u / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_D8 = _dct_matrix(THUMB, 8)
_BITS = (np.uint64(1) << np.arange(64, dtype=np.uint64))


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """(..., 64) bool -> (...) uint64."""
    return (bits.astype(np.uint64) * _BITS).sum(axis=-1, dtype=np.uint64)


def dct_block(thumbs: np.ndarray) -> np.ndarray:
    """(N, 32, 32) -> (N, 8, 8) lowest DCT coefficients."""
    t = thumbs.astype(np.float32)
    d = _D8.astype(np.float32)
    return np.einsum("uy,nyx,vx->nuv", d, t, d, optimize=True)


def phash_from_dct(coef: np.ndarray) -> np.ndarray:
    """pHash bits from (N, 8, 8) DCT blocks: coefficient > median of the AC coefficients."""
    flat = coef.reshape(len(coef), 64)
    med = np.median(flat[:, 1:], axis=1, keepdims=True)
    return _pack_bits(flat > med)


def dihedral_dct(coef: np.ndarray, transpose: bool, flip_rows: bool, flip_cols: bool) -> np.ndarray:
    """DCT block of the transformed image, from the DCT block of the image (exact for DCT-II)."""
    c = coef.transpose(0, 2, 1) if transpose else coef
    sign = np.ones((8, 8), dtype=c.dtype)
    alt = (-1.0) ** np.arange(8)
    if flip_rows:
        sign = sign * alt[:, None]
    if flip_cols:
        sign = sign * alt[None, :]
    return c * sign


def dihedral_phashes(thumbs: np.ndarray) -> np.ndarray:
    """(N, 32, 32) -> (N, 8) uint64: pHash of each dihedral variant (order of DIHEDRAL)."""
    coef = dct_block(thumbs)
    out = np.empty((len(thumbs), len(DIHEDRAL)), dtype=np.uint64)
    medians: dict[tuple[bool, bool], np.ndarray] = {}
    for k, (_, tr, fr, fc) in enumerate(DIHEDRAL):
        c = dihedral_dct(coef, tr, fr, fc).reshape(len(coef), 64)
        # a transpose permutes the coefficients without changing their values: the variants
        # (tr, fr, fc) and (not tr, fc, fr) share one median, so only 4 of the 8 are computed
        key = (fc, fr) if tr else (fr, fc)
        if key not in medians:
            medians[key] = np.median(c[:, 1:], axis=1, keepdims=True)
        out[:, k] = _pack_bits(c > medians[key])
    return out


def apply_dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """Apply dihedral variant k to (..., H, W) arrays (same convention as dihedral_dct)."""
    _, tr, fr, fc = DIHEDRAL[k]
    out = np.swapaxes(img, -1, -2) if tr else img
    if fr:
        out = out[..., ::-1, :]
    if fc:
        out = out[..., :, ::-1]
    return out


def block_means(images: np.ndarray, f: int) -> np.ndarray:
    """(N, H, W) -> (N, H/f, W/f) float32 means of f x f blocks, as sums of strided views: a mean
    over two axes of a reshaped array was several times slower (the k-NN takes descriptors of every shifted
    version of every query, verification halves every detail image). For integer images the sums
    are exact, so the result is the same to the bit."""
    x = images.astype(np.float32, copy=False)
    rows = x[:, 0::f]
    for i in range(1, f):
        rows = rows + x[:, i::f]
    out = rows[:, :, 0::f]
    for i in range(1, f):
        out = out + rows[:, :, i::f]
    return out * np.float32(1 / (f * f))


def descriptors(thumbs: np.ndarray) -> np.ndarray:
    """(N, 32, 32) -> (N, 64) float32 unit vectors: 4x4 block means, zero mean per image."""
    n = len(thumbs)
    small = block_means(thumbs, 4).reshape(n, 64)
    small -= small.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(small, axis=1, keepdims=True)
    return small / np.maximum(norm, 1e-6)


def shifted(thumbs: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The thumbnails (N, S, S) translated by (dy, dx) pixels, edges replicated (themselves when
    not moved)."""
    if not dy and not dx:
        return thumbs
    size = thumbs.shape[1]
    rows = np.clip(np.arange(size) - dy, 0, size - 1)
    cols = np.clip(np.arange(size) - dx, 0, size - 1)
    return thumbs[:, rows][:, :, cols]


def shifted_descriptors(thumbs: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Descriptors of the thumbnails translated by (dy, dx) pixels (edges replicated)."""
    return descriptors(shifted(thumbs, dy, dx))


def squeezed_descriptors(thumbs: np.ndarray, axis: int, k: float) -> np.ndarray:
    """Descriptors of the thumbnails squeezed to k of their size along one axis (1: rows, 2:
    columns) around the centre, edges replicated: what an image looks like from its copy that was
    cut to k of that side and stretched back (a 4:3 picture cut to a square)."""
    c = (THUMB - 1) / 2.0
    src = np.clip(c + (np.arange(THUMB) - c) / k, 0, THUMB - 1)
    lo = np.minimum(np.floor(src).astype(np.int64), THUMB - 2)
    w = (src - lo).astype(np.float32)
    t = thumbs.astype(np.float32)
    if axis == 2:
        out = t[:, :, lo] * (1 - w) + t[:, :, lo + 1] * w
    else:
        out = t[:, lo, :] * (1 - w)[:, None] + t[:, lo + 1, :] * w[:, None]
    return descriptors(out)


# Band-pass detail: what verification correlates (similarity/verify.py) and smoothness measures.

def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


_BLUR_MATS: dict[tuple[int, float], np.ndarray] = {}


def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) matrix of a 1-D Gaussian blur with reflected borders (numpy 'reflect')."""
    key = (n, sigma)
    if key not in _BLUR_MATS:
        k = _gauss_kernel(sigma)
        r = len(k) // 2
        m = np.zeros((n, n), np.float64)
        for i in range(n):
            for t in range(-r, r + 1):
                j = i + t
                while j < 0 or j >= n:  # reflect (edge not repeated), as np.pad(mode="reflect")
                    j = -j if j < 0 else 2 * (n - 1) - j
                m[i, j] += k[t + r]
        _BLUR_MATS[key] = m.astype(np.float32)
    return _BLUR_MATS[key]


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (P, H, W) with reflected borders, as two matrix products."""
    my = _blur_matrix(x.shape[1], sigma)
    mx = _blur_matrix(x.shape[2], sigma)
    return np.matmul(np.matmul(my, x.astype(np.float32, copy=False)), mx.T)


def detail(thumbs: np.ndarray) -> np.ndarray:
    """Band-pass detail image: blur(0.7) - blur(3.0), float32."""
    t = thumbs.astype(np.float32)
    return _blur(t, 0.7) - _blur(t, 3.0)


def smoothness(thumbs: np.ndarray) -> np.ndarray:
    """(N,) lag-1 autocorrelation of the band-pass detail image: near 0.9 or above for images
    upscaled from a tiny original (few independent pixels, so chance matches are likelier)."""
    d = detail(thumbs)
    d -= d.mean(axis=(1, 2), keepdims=True)
    num = (d[:, 1:, :] * d[:, :-1, :]).sum(axis=(1, 2)) + (d[:, :, 1:] * d[:, :, :-1]).sum(axis=(1, 2))
    return (num / (2 * (d * d).sum(axis=(1, 2)) + 1e-6)).astype(np.float32)


def finalize(features: dict[str, np.ndarray], chunk: int = 4096) -> dict[str, np.ndarray]:
    thumbs = features.get("thumb")
    if thumbs is None or len(thumbs) == 0:
        return {"phash": np.zeros((0, len(DIHEDRAL)), np.uint64), "desc": np.zeros((0, 64), np.float32),
                "smooth": np.zeros(0, np.float32)}
    from dsaudit.threads import blas_threads, parallel_map, workers

    ph = np.empty((len(thumbs), len(DIHEDRAL)), dtype=np.uint64)
    desc = np.empty((len(thumbs), 64), dtype=np.float32)
    smooth = np.empty(len(thumbs), dtype=np.float32)

    def run(s: int) -> None:  # chunks are independent: fill disjoint rows, on a thread pool
        ph[s:s + chunk] = dihedral_phashes(thumbs[s:s + chunk])
        desc[s:s + chunk] = descriptors(thumbs[s:s + chunk])
        smooth[s:s + chunk] = smoothness(thumbs[s:s + chunk])

    n_workers = workers()
    with blas_threads(1):
        parallel_map(run, list(range(0, len(thumbs), chunk)), n_workers)
    return {"phash": ph, "desc": desc, "smooth": smooth}

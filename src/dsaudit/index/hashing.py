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
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

FEATURES_VERSION = "0"
THUMB = 32


def prepare(img: Image.Image) -> None:
    """Let large JPEGs decode at a reduced size: only a small thumbnail is needed."""
    if img.format == "JPEG" and min(img.size) >= 4 * THUMB * 4:
        img.draft("RGB" if img.mode not in ("L", "1") else "L", (THUMB * 4, THUMB * 4))


def extract(img: Image.Image) -> dict[str, np.ndarray]:
    gray = img.convert("L").resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    pixel = hashlib.blake2b(img.tobytes() + f"{img.mode}{img.size}".encode(), digest_size=8).digest()
    return {
        "thumb": np.asarray(gray, dtype=np.uint8),
        "pixel_hash": np.frombuffer(pixel, dtype=np.uint64).copy(),
    }


def finalize(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {}

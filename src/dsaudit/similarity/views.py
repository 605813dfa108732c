"""Views: what the near-duplicate engine compares for n images, in one value instead of six arrays.

The index holds, per decoded image, a grey 32x32 thumbnail, its 8 dihedral pHashes, a coarse
descriptor for the k-NN search, a smoothness score and, for images with a flat border, the thumbnail
of what is inside the border (a second view). ``matching.matches_with_views`` takes a Views and
returns the matches table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Views:
    """Per-image arrays of n images, row i of each array describing image i."""

    thumbs: np.ndarray                   # (n, 32, 32) uint8 grey thumbnails
    phash: np.ndarray                    # (n, 8) uint64 pHashes of the 8 dihedral variants
    desc: np.ndarray                     # (n, 64) float32 k-NN descriptors
    smooth: np.ndarray | None = None     # (n,) detail autocorrelation (hashing.smoothness)
    inner: np.ndarray | None = None      # (n, 32, 32) thumbnail inside a flat border, where has_inner
    has_inner: np.ndarray | None = None  # (n,) bool: the image has a second view

    def __len__(self) -> int:
        return len(self.thumbs)

    @classmethod
    def of_index(cls, features: Mapping[str, np.ndarray], positions: np.ndarray) -> "Views":
        """The views of the index rows at `positions` (``DatasetIndex.features`` arrays)."""
        # every row (a dataset of images only): the index's own arrays, not copies (at 1,000,000
        # images the copies were 2.4 GB: thumbnails, inner views, descriptors, hashes)
        whole = len(positions) == len(features["thumb"]) and bool(np.all(np.diff(positions) == 1)) \
            and (not len(positions) or positions[0] == 0)

        def take(name: str) -> np.ndarray | None:
            if name not in features:
                return None
            return features[name] if whole else features[name][positions]

        desc = take("desc")
        return cls(thumbs=take("thumb"), phash=take("phash"),
                   desc=desc if desc is not None else np.zeros((len(positions), 64), np.float32),
                   smooth=take("smooth"), inner=take("inner"),
                   has_inner=take("border").any(axis=1) if "border" in features else None)

    @classmethod
    def of_thumbs(cls, thumbs: np.ndarray, inner: np.ndarray | None = None,
                  has_inner: np.ndarray | None = None, smooth: bool = True) -> "Views":
        """Views of bare thumbnails, descriptors computed here (tests and benchmarks)."""
        from dsaudit.index.hashing import finalize

        feats = finalize({"thumb": thumbs})
        return cls(thumbs=thumbs, phash=feats["phash"], desc=feats["desc"],
                   smooth=feats["smooth"] if smooth else None, inner=inner, has_inner=has_inner)

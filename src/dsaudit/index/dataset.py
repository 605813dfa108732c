"""The index: one table of per-file records plus per-file feature arrays, built in one pass.

Checks read only this object. Every image was decoded once to build it; checks never open images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.index.layout import Layout

# Columns of DatasetIndex.table, in order. Feature arrays live in DatasetIndex.features instead.
TABLE_COLUMNS = (
    "path",        # display path relative to ROOT ("/"-separated); what findings report
    "abs_path",    # OS path to open (never shown)
    "split",       # "train" | "val" | "test" | "" (no split)
    "label",       # class name
    "group",       # group ID from the manifest or --group-regex, "" if none
    "order",       # position in loader order (folder walk) or manifest row order
    "ext",         # lower-case extension without the dot
    "bytes",       # file size
    "mtime_ns",
    "kind",        # "image" | "empty" | "non-image" | "broken-image" | "unreadable"
    "format",      # real format from magic bytes / decoder: "PNG", "JPEG", ... or "" if unknown
    "width",       # original pixel size (0 when unknown)
    "height",
    "mode",        # PIL mode of the stored image: "L", "RGB", "RGBA", "P", "I;16", ...
    "channels",
    "readable",    # decoded without error
    "truncated",   # the stream ends early (decoder error or missing end marker)
    "bomb",        # more pixels than integrity.max_pixels: never decoded
    "error",       # decoder or OS error text, "" if none
    "has_features",  # feature arrays hold real values for this row
)


@dataclass
class DatasetIndex:
    """What a scan knows about a dataset after the one pass over its files.

    `table` has one row per sample file (images and non-images alike) with TABLE_COLUMNS;
    `features` maps a feature name to an array whose first axis is aligned with table rows
    (rows where `has_features` is False hold zeros). `timings` records seconds per stage.
    """

    root: Path
    layout: Layout
    table: pd.DataFrame
    features: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    memo: Any = None  # index.memo.Memo when caching is on; see memoize()
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)  # how the scan ran, for the user (e.g. cache off)
    loader_split: Any = None  # loaders.keras.LoaderSplit: a loader's own split, listed from the folders (--keras-split)

    def memoize(self, name: str, key: str, compute):
        """Return compute(), reusing the stored value of an earlier scan of the same data when the
        index fingerprint and `key` (version + settings of the computation) match."""
        if self.memo is None or not self.fingerprint:
            return compute()
        return self.memo.get_or_compute(name, f"{self.fingerprint}:{key}", compute)

    @property
    def images(self) -> pd.DataFrame:
        """Rows that decoded (or at least parsed) as images with features."""
        return self.table[self.table["has_features"]]

    def split_names(self) -> list[str]:
        return list(self.layout.splits)

"""The content checks' shared view of the index: one frame of per-image properties and one compact
descriptor matrix: the ``content`` analysis, computed once per scan by the pipeline for the checks
that require it (``requires = (ContentAnalysis,)``) and read with ``ctx.result(ContentAnalysis)``.

Rows are the decoded images (``DatasetIndex.images``); the frame adds to the index columns the
properties measured in the index pass (``dsaudit.content.properties``) and a few derived from the table
(``log_area``, ``aspect``, ``bytes_per_pixel``). The descriptor is what the drift classifier, the
outlier distance and the neighbour label vote read: the grey 8x8 detail descriptor of the duplicate
search (``desc``), the 8x8 colour thumbnail and the properties, each standardised over the dataset,
reduced by PCA to at most ``DESCRIPTOR_DIMS`` dimensions (deterministic: full SVD).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.analysis import Analysis
from dsaudit.content.properties import PROPERTIES
from dsaudit.similarity.neighbors import blas_threads

DESCRIPTOR_DIMS = 48
DERIVED = ("log_area", "aspect", "bytes_per_pixel")
NUMERIC = PROPERTIES + DERIVED   # every numeric property the drift test compares


@dataclass(eq=False)
class ContentAnalysis(Analysis):
    name = "content"

    frame: pd.DataFrame        # one row per decoded image: path, split, label, format, properties
    descriptor: np.ndarray     # (n, d) float32, aligned with frame rows
    reference: np.ndarray      # bool (n,): rows of the reference split (train if any, else all)

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def compute(cls, index: Any, config: Any, results: Any = None, notify: Any = None) -> "ContentAnalysis":
        return build(index)


def reference_split(splits: pd.Series) -> np.ndarray:
    """Rows that relative thresholds are measured against: train if there is one, else every row.
    A shifted test split then cannot move the yardstick it is judged by."""
    train = (splits == "train").to_numpy()
    return train if train.any() else np.ones(len(splits), dtype=bool)


ROW_CHUNK = 4096   # rows of the float64 working block of the descriptor computation (about 9 MB)


def descriptors(features: dict[str, np.ndarray], props: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(n, <= DESCRIPTOR_DIMS) compact descriptors of the images at `rows` (see the module doc).
    The three blocks are weighted so that each counts about as much as the others.

    Computed over blocks of ROW_CHUNK rows in one reused float64 buffer (means, spreads, the
    covariance, the projection: four passes), never as one n x d float64 matrix: at 60,000 images
    that matrix (128 MB) cost more in first-touch page faults than the arithmetic."""
    blocks = []
    if "desc" in features:
        blocks.append(features["desc"][rows])
    if "colour" in features:
        blocks.append(features["colour"][rows].reshape(len(rows), -1))
    blocks.append(props)
    n = len(rows)
    widths = [b.shape[1] for b in blocks]
    buf = np.empty((min(n, ROW_CHUNK), sum(widths)))

    def chunks():
        for s in range(0, n, ROW_CHUNK):
            m = min(ROW_CHUNK, n - s)
            at = 0
            for b, w in zip(blocks, widths):
                buf[:m, at:at + w] = b[s:s + m]
                at += w
            yield s, buf[:m]

    mean = sum(c.sum(axis=0) for _, c in chunks()) / max(n, 1)
    spread = np.zeros(len(mean))
    for _, c in chunks():
        c -= mean
        spread += np.einsum("ij,ij->j", c, c)
    sd = np.sqrt(spread / max(n, 1))
    weight = 1.0 / (np.where(sd > 1e-9, sd, 1.0) * np.repeat(np.sqrt(np.maximum(widths, 1)), widths))

    def standardised():
        for s, c in chunks():
            c -= mean
            c *= weight
            yield s, c

    if n < 3:
        return np.concatenate([c.copy() for _, c in standardised()]).astype(np.float32) if n else \
            np.zeros((0, len(mean)), np.float32)
    dims = min(DESCRIPTOR_DIMS, len(mean), n - 1)
    # the covariance route (d x d, d about 270) is exact and far cheaper than an SVD of n x d; one
    # BLAS thread: on a loaded machine OpenBLAS' threads made these two steps 10-20x slower
    with blas_threads(1):
        cov = np.zeros((len(mean), len(mean)))
        for _, c in standardised():
            cov += c.T @ c
        cov /= n
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][:dims]
        vecs = vecs[:, order]
        vecs *= np.where(vecs[np.abs(vecs).argmax(axis=0), range(dims)] < 0, -1.0, 1.0)  # fixed signs
        out = np.empty((n, dims), np.float32)
        for s, c in standardised():
            out[s:s + len(c)] = c @ vecs
    return out


def build(index: Any) -> ContentAnalysis:
    t = index.table
    feats = index.features
    mask = t["has_features"].to_numpy() & (t["kind"] == "image").to_numpy()
    if "props" not in feats:
        mask = np.zeros(len(t), dtype=bool)
    rows = np.flatnonzero(mask)
    part = t.iloc[rows]
    frame = pd.DataFrame({
        "path": part["path"].astype(str).to_numpy(),
        "abs_path": part["abs_path"].astype(str).to_numpy(),
        "split": part["split"].astype(str).to_numpy(),
        "label": part["label"].astype(str).to_numpy(),
        "format": part["format"].astype(str).replace("", "unknown").to_numpy(),
        "width": part["width"].to_numpy(), "height": part["height"].to_numpy(),
        "bytes": part["bytes"].to_numpy(),
    })
    props = feats["props"][rows].astype(np.float64) if len(rows) else np.zeros((0, len(PROPERTIES)))
    for i, name in enumerate(PROPERTIES):
        frame[name] = props[:, i]
    w = np.maximum(frame["width"].to_numpy(dtype=float), 1.0)
    h = np.maximum(frame["height"].to_numpy(dtype=float), 1.0)
    frame["log_area"] = np.log(w * h)
    frame["aspect"] = w / h
    frame["bytes_per_pixel"] = frame["bytes"].to_numpy(dtype=float) / (w * h)
    extra = frame[["log_area", "bytes_per_pixel"]].to_numpy(dtype=float)
    desc = descriptors(feats, np.concatenate([props, extra], axis=1), rows) if len(rows) else \
        np.zeros((0, 0), np.float32)
    return ContentAnalysis(frame=frame, descriptor=desc, reference=reference_split(frame["split"]))


def content_analysis(ctx: Any) -> ContentAnalysis:
    """The shared analysis, as the pipeline computed it for the running check (which requires it)."""
    return ctx.result(ContentAnalysis)


def histogram(values: np.ndarray, groups: np.ndarray, bins: int = 30) -> dict[str, Any]:
    """Counts of `values` in `bins` equal bins over their 0.5-99.5 percentile range (the ends
    collect the rest), per group: what the report's score histograms and drift plots draw."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return {"edges": [], "counts": {}}
    lo, hi = np.percentile(values[finite], [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(values[finite].min()), float(values[finite].max()) + 1e-9
    edges = np.linspace(lo, hi, bins + 1)
    out: dict[str, Any] = {"edges": [round(float(e), 6) for e in edges], "counts": {}}
    for g in sorted(pd.unique(np.asarray(groups)).tolist()):
        v = np.clip(values[(groups == g) & finite], lo, hi)
        out["counts"][str(g) or "pool"] = np.histogram(v, bins=edges)[0].astype(int).tolist()
    return out

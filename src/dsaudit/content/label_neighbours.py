"""The neighbour vote on labels: for every image, how strongly its nearest look-alikes (content
descriptors, whole dataset) vote for another label. Measured here as an analysis; DSA430 judges it
(content.label_min_share) and benchmarks read the whole ranking (precision at k of planted flips).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from dsaudit.analysis import Analysis
from dsaudit.content.analysis import ContentAnalysis
from dsaudit.content.neighbours import dataset_neighbours
from dsaudit.similarity.ann import Approximation

MIN_IMAGES = 20   # below this (or with one label, or no descriptor) there is no vote


def neighbour_vote(labels: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(own share, top other label, its share) of each row's neighbours (rows of `idx`, -1 = none)."""
    classes, codes = np.unique(labels, return_inverse=True)
    valid = idx >= 0
    nb = np.where(valid, codes[np.maximum(idx, 0)], -1)
    counts = np.stack([((nb == c) & valid).sum(axis=1) for c in range(len(classes))], axis=1).astype(float)
    total = np.maximum(valid.sum(axis=1), 1)
    own = counts[np.arange(len(codes)), codes] / total
    other = counts.copy()
    other[np.arange(len(codes)), codes] = -1
    top = other.argmax(axis=1)
    return own, classes[top], other.max(axis=1) / total


@dataclass(frozen=True, eq=False)
class NeighbourLabelRanking(Analysis):
    """Rows of the content frame (ContentAnalysis.frame) ranked by how strongly their k nearest
    neighbours vote for another label: `share` of the top other label (`suggested`), ties broken by
    a lower share of the image's own label (`own`); `order` is the ranking, best first. Empty (k = 0)
    when there is nothing to vote on. `approximate`: what an approximate search kept, if it was one."""

    name = "label_neighbours"
    requires = (ContentAnalysis,)

    own: np.ndarray
    suggested: np.ndarray
    share: np.ndarray
    order: np.ndarray
    k: int
    approximate: Approximation | None = None

    def __len__(self) -> int:
        return len(self.order)

    @classmethod
    def compute(cls, index: Any, config: Any, results: Mapping[type, Analysis] = {},
                notify: Any = None) -> "NeighbourLabelRanking":
        a = results[ContentAnalysis]
        f = a.frame
        if len(a) < MIN_IMAGES or a.descriptor.shape[1] == 0 or f["label"].nunique() < 2:
            empty = np.zeros(0)
            return cls(empty, np.zeros(0, object), empty, np.zeros(0, np.int64), 0)
        cfg = config.content
        idx, _, approx = dataset_neighbours(a.descriptor, int(cfg.label_k), float(cfg.label_knn_max_pairs),
                                            int(config.seed))
        own, suggested, share = neighbour_vote(f["label"].to_numpy(), idx)
        return cls(own, suggested, share, np.lexsort((own, -share)), int(cfg.label_k), approx)

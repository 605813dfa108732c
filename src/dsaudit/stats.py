"""Small statistics the checks need, without importing scipy.stats (which alone costs about half a
second of start-up, longer than a whole cached rescan). scipy.special is light and exact."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import chdtrc


def chi2_independence(table) -> tuple[float, float, int, np.ndarray]:
    """Pearson's chi-square test of independence on a contingency table, without Yates' correction:
    the same numbers as scipy.stats.chi2_contingency(table, correction=False).
    Returns (chi2, p_value, dof, expected)."""
    observed = np.asarray(table, dtype=float)
    n = observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / n
    dof = int((observed.shape[0] - 1) * (observed.shape[1] - 1))
    if dof == 0:
        return 0.0, 1.0, 0, expected
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (observed - expected) ** 2 / expected, 0.0)
    chi2 = float(terms.sum())
    return chi2, float(chdtrc(dof, chi2)), dof, expected


def normal_cdf(z: float) -> float:
    """P(Z <= z) for a standard normal Z."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))

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


def hypergeom_sf(k: int, total: int, successes: int, draws: int) -> float:
    """P(X >= k) for X ~ Hypergeometric(total, successes, draws): the one-sided Fisher exact test of
    a 2x2 table (the same p-value as scipy.stats.fisher_exact(..., alternative="greater"))."""
    from scipy.special import gammaln

    hi = min(successes, draws)
    if k > hi:
        return 0.0
    x = np.arange(max(k, 0, draws - (total - successes)), hi + 1)

    def lchoose(n, r):
        return gammaln(n + 1) - gammaln(r + 1) - gammaln(n - r + 1)

    logp = lchoose(successes, x) + lchoose(total - successes, draws - x) - lchoose(total, draws)
    return float(min(1.0, np.exp(logp).sum()))


def ks_two_sample(x, y) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov distance and its asymptotic p-value (Kolmogorov distribution of
    D * sqrt(n m / (n + m))); scipy.stats.ks_2samp's exact p-value differs only for small samples."""
    from scipy.special import kolmogorov

    x, y = np.sort(np.asarray(x, float)), np.sort(np.asarray(y, float))
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return 0.0, 1.0
    grid = np.concatenate([x, y])
    d = float(np.abs(np.searchsorted(x, grid, side="right") / n
                     - np.searchsorted(y, grid, side="right") / m).max())
    return d, float(min(1.0, kolmogorov(d * math.sqrt(n * m / (n + m)))))


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata's default)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    sorted_v = values[order]
    first = np.concatenate([[True], sorted_v[1:] != sorted_v[:-1]])
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.concatenate([starts[1:], [len(values)]])
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = avg[group]
    return ranks

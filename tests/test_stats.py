"""dsaudit.stats gives the same numbers as scipy.stats (which it avoids importing for speed)."""

import numpy as np
import pytest
from scipy import stats as sps

from dsaudit.stats import chi2_independence, normal_cdf, normal_sf


@pytest.mark.parametrize("table", [[[10, 20], [30, 40]], [[5, 0, 7], [1, 9, 3]], [[100, 80, 60, 3], [90, 85, 70, 30]]])
def test_chi2_matches_scipy(table):
    chi2, p, dof, expected = chi2_independence(table)
    ref = sps.chi2_contingency(np.array(table), correction=False)
    assert chi2 == pytest.approx(ref[0]) and p == pytest.approx(ref[1]) and dof == ref[2]
    assert np.allclose(expected, ref[3])


@pytest.mark.parametrize("z", [-3.0, -0.5, 0.0, 1.2, 4.0])
def test_normal_tails_match_scipy(z):
    assert normal_cdf(z) == pytest.approx(sps.norm.cdf(z)) and normal_sf(z) == pytest.approx(sps.norm.sf(z))

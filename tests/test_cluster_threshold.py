"""The pair threshold from --pfa, the null spread estimate, and the calibration of the false-link rate."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from camid_gpu.cluster.threshold import comparison_level, null_summary, pair_threshold, robust_spread


def test_comparison_level_is_sidak():
    assert comparison_level(0.05, 1) == pytest.approx(0.05)
    assert comparison_level(1e-6, 1000) == pytest.approx(1e-9, rel=1e-6)
    assert 1 - (1 - comparison_level(0.5, 200)) ** 200 == pytest.approx(0.5)
    with pytest.raises(ValueError, match="pfa"):
        comparison_level(0.0, 10)


def test_pair_threshold_known_values():
    t = pair_threshold(0.05, 1, 10_000)
    assert t.z == pytest.approx(1.6448536, rel=1e-6)
    assert t.ncc == pytest.approx(1.6448536 / 100, rel=1e-6)
    assert t.pce == pytest.approx(1.6448536**2, rel=1e-6)
    assert t.null_source == "model"
    wide = pair_threshold(0.05, 1, 10_000, observed_std=0.015)
    assert wide.null_source == "observed" and wide.ncc == pytest.approx(1.6448536 * 0.015, rel=1e-6)
    # an observed spread narrower than the model never lowers the threshold
    assert pair_threshold(0.05, 1, 10_000, observed_std=0.001).ncc == t.ncc


def test_robust_spread_ignores_same_camera_pairs():
    rng = np.random.default_rng(0)
    null = rng.normal(0, 0.01, 4000)
    genuine = rng.uniform(0.03, 0.2, 2000)  # a third of the pairs from one big camera
    assert robust_spread(np.concatenate([null, genuine])) == pytest.approx(0.01, rel=0.05)
    assert robust_spread(null[:10]) is None  # too few pairs to trust


def test_null_summary_fields():
    v = np.random.default_rng(1).normal(0, 0.01, 500)
    s = null_summary(v, 10_000, 0.05)
    assert s["pairs"] == 500 and s["theory_std"] == 0.01 and s["above_threshold"] == 0
    assert s["robust_ratio"] == pytest.approx(1.0, abs=0.1)
    assert sum(s["histogram"]["counts"]) == 500


def test_false_link_rate_of_white_residuals_matches_alpha():
    """White N(0,1) rows of n pixels: the fraction of pairs above the threshold is alpha (within
    sampling error), at three levels."""
    from camid_gpu.cluster.similarity import normalise_rows

    rng = np.random.default_rng(2)
    n, rows = 4096, 300
    x = normalise_rows(rng.normal(size=(rows, n)))
    ncc = (x @ x.T)[np.triu_indices(rows, 1)]
    pairs = ncc.size
    for expected in (5, 15, 30):  # 1 - exp(-expected) must stay below 1 in float64
        pfa = -math.expm1(-expected)  # P(any false link) for `expected` false links on average
        t = pair_threshold(pfa, pairs, n)
        observed = int((ncc > t.ncc).sum())
        lo, hi = stats.poisson.ppf([0.0005, 0.9995], expected)
        assert lo <= observed <= hi, (expected, observed)

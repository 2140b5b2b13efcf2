"""The pair threshold from --pfa, the null spread estimate, and the calibration of the false-link rate."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from camid_gpu.cluster.threshold import (comparison_level, null_summary, pair_threshold, robust_spread, split_pfa,
                                         stage_thresholds)


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


# -- two stages: the pairs and the fingerprint refinement share --pfa ---------------------------------------
def test_pfa_shares_of_the_two_stages_add_up_to_pfa():
    """The shares of the expected false links -ln(1 - pfa) add to 1, so the stages' probabilities compose
    (Sidak) to --pfa exactly; their plain sum exceeds --pfa only by their product."""
    from camid_gpu.config import CLUSTER_PFA_PAIRS_SHARE

    for pfa in (1e-9, 1e-6, 1e-3, 0.05, 0.5, 0.95):
        split = split_pfa(pfa)
        (f_pairs, p_pairs), (f_refine, p_refine) = split["pairs"], split["refine"]
        assert f_pairs == CLUSTER_PFA_PAIRS_SHARE and f_pairs + f_refine == 1.0
        assert -math.expm1(math.log1p(-p_pairs) + math.log1p(-p_refine)) == pytest.approx(pfa, rel=1e-12)
        assert p_pairs + p_refine >= pfa * (1 - 1e-12)
        assert p_pairs + p_refine - pfa == pytest.approx(p_pairs * p_refine, rel=1e-6, abs=1e-300)
        both = stage_thresholds(pfa, 1000, 5000, 4096)
        assert {t.stage for t in both.values()} == {"pairs", "refine"}
        assert all(t.pfa == pfa for t in both.values())  # the run's --pfa, recorded with each stage's share
        assert both["pairs"].stage_pfa == p_pairs and both["refine"].stage_pfa == p_refine
        assert both["pairs"].share + both["refine"].share == 1.0
    with pytest.raises(ValueError, match="share"):
        split_pfa(1e-6, 1.0)  # the refinement must get a share: it compares too


def test_refine_threshold_is_at_least_the_pair_threshold_when_it_counts_more():
    """Equal shares (the default): the stage with more comparisons has the stricter threshold, NCC and PCE."""
    for spread in (None, 0.03):
        for pairs, refine in ((1, 1), (100, 100), (100, 101), (14_706, 36_324), (10, 10**7), (10**6, 10**9)):
            t = stage_thresholds(1e-6, pairs, refine, 1024, spread)
            assert t["refine"].z >= t["pairs"].z and t["refine"].ncc >= t["pairs"].ncc
            assert t["refine"].pce >= t["pairs"].pce
            if refine > pairs:
                assert t["refine"].z > t["pairs"].z
            # a stricter test than before for the pairs too: half the budget
            assert t["pairs"].z > pair_threshold(1e-6, pairs, 1024, spread).z


def test_both_stages_bound_the_whole_run_false_alarm_probability_by_pfa():
    """Every comparison of the run at its stage's level: for independent comparisons P(any false link) is
    1 - (1 - a1)^T1 (1 - a2)^T2 <= pfa (any T2' <= T2 made); for any dependence, Bonferroni's
    T1 a1 + T2 a2 <= -ln(1 - pfa). Checked numerically, then by simulation at a large pfa."""
    for pfa in (1e-6, 1e-3, 0.2):
        for pairs, refine in ((1, 1), (31_125, 36_324), (10, 10**6), (10**6, 10)):
            t = stage_thresholds(pfa, pairs, refine, 4096)
            a1, a2 = t["pairs"].alpha, t["refine"].alpha
            assert a1 == pytest.approx(stats.norm.sf(t["pairs"].z), rel=1e-9)  # Q(z) = alpha
            assert a2 == pytest.approx(stats.norm.sf(t["refine"].z), rel=1e-9)
            for made in (refine, refine // 2, 0):  # the refinement makes at most its bound
                p_any = -math.expm1(pairs * math.log1p(-a1) + made * math.log1p(-a2))
                assert p_any <= pfa * (1 + 1e-12)
            assert pairs * a1 + refine * a2 <= -math.log1p(-pfa) * (1 + 1e-12)
    # simulation: 250 pair and 400 refinement statistics per run, N(0, 1) under the null, pfa 0.3
    rng = np.random.default_rng(3)
    pfa, runs = 0.3, 4000
    t = stage_thresholds(pfa, 250, 400, 1)
    pairs = rng.standard_normal((runs, 250)).max(axis=1) > t["pairs"].z
    refine = rng.standard_normal((runs, 400)).max(axis=1) > t["refine"].z
    observed = float(np.mean(pairs | refine))
    assert abs(observed - pfa) < 4 * math.sqrt(pfa * (1 - pfa) / runs), observed
    # the old design: the refinement at the pair threshold of all of --pfa, uncounted
    old = pair_threshold(pfa, 250, 1).z
    old_any = np.mean((rng.standard_normal((runs, 250)).max(axis=1) > old)
                      | (rng.standard_normal((runs, 400)).max(axis=1) > old))
    assert old_any > pfa + 6 * math.sqrt(pfa * (1 - pfa) / runs), old_any  # it did break the guarantee

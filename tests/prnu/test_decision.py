"""The PCE decision (camid_gpu.prnu.decision): one rule for every record builder."""
from __future__ import annotations

import math

import numpy as np

from camid_gpu.prnu.decision import decide, exceeds, union_bound
from camid_gpu.prnu.search import SearchResult, search_record


def test_decide_picks_the_largest_pce_strictly_above_the_threshold():
    made = decide({"A": 70.0, "B": 250.0, "C": 60.0, "D": None, "E": math.nan}, 60.0)
    assert made.best == "B" and made.above == ["B", "A"] and made.decision == "B"
    none = decide({"A": 60.0, "B": 59.9}, 60.0)
    assert none.best == "A" and none.above == [] and none.decision is None
    assert decide({}, 60.0).best is None and decide({}, 60.0).decision is None


def test_a_non_finite_pce_is_never_a_match_nor_best_ahead_of_a_finite_one():
    made = decide({"inf": math.inf, "nan": math.nan, "low": 1.0}, 60.0)
    assert made.best == "low" and made.decision is None
    assert exceeds(np.array([math.inf, math.nan, 61.0, 60.0]), 60.0).tolist() == [False, False, True, False]
    assert not exceeds(None, 60.0) and exceeds(60.5, 60.0)


def test_equal_pces_keep_the_given_order():
    assert decide({"B": 80.0, "A": 80.0}, 60.0).above == ["B", "A"]


def test_search_record_never_attributes_an_infinite_pce():
    """Before the one decision, the scale/crop search counted +inf as above the threshold (and pce_record
    did not): an image with only an infinite score was attributed to that camera."""
    def result(name, value):
        return SearchResult(camera=name, pce=value, scale=0.8, offset=(1, 2), log10_p_fa=-3.0, positions_searched=10)

    rec = search_record([result("A", math.inf), result("B", 5.0)], 60.0)
    assert rec["decision"] is None and rec["above_threshold"] == [] and rec["best"] == "B"


def test_union_bound_over_tries():
    assert union_bound(-5.0, 1) == -5.0
    assert union_bound(-5.0, 4) == -5.0 + math.log10(4)
    assert union_bound(-0.1, 4) == 0.0  # at most 1
    assert union_bound(None, 4) is None and math.isinf(union_bound(-math.inf, 4))

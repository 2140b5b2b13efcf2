"""Known answers of the linkage stage: rotation candidates, comparison counts, average linkage that one false
pair cannot chain, and ML fingerprint sums that add."""
from __future__ import annotations

import numpy as np
import pytest

from camid_gpu.cluster.linkage import average_linkage, comparisons, image_similarity
from camid_gpu.prnu.fingerprint import FingerprintAccumulator
from conftest import natural_image


def test_image_similarity_takes_the_best_rotation_candidate():
    # rows: image 0 -> row 0; image 1 -> rows 1, 2 (two turns); image 2 -> row 3
    gram = np.eye(4, dtype=np.float32)
    gram[0, 2] = gram[2, 0] = 0.5
    gram[0, 1] = gram[1, 0] = -0.1
    gram[1, 3] = gram[3, 1] = 0.3
    sim, choice = image_similarity(gram, [[0], [1, 2], [3]])
    assert sim[0, 1] == np.float32(0.5) and tuple(choice[0, 1]) == (0, 1)
    assert sim[1, 2] == np.float32(0.3) and tuple(choice[1, 2]) == (0, 0)
    assert np.all(np.diag(sim) == 1) and np.array_equal(sim, sim.T)
    assert comparisons([[0], [1, 2], [3]]) == 2 + 1 + 2  # (0,1): 2 turns, (0,2): 1, (1,2): 2


def _two_cameras(false_pair: float, t: float = 0.01) -> tuple[np.ndarray, list[int], list[int]]:
    rng = np.random.default_rng(0)
    sim = rng.normal(0, 0.002, (12, 12))
    sim = (sim + sim.T) / 2
    a, b = list(range(6)), list(range(6, 12))
    for block in (a, b):
        sim[np.ix_(block, block)] = 0.05
    sim[0, 6] = sim[6, 0] = false_pair  # one false pair between the two cameras, above the threshold
    np.fill_diagonal(sim, 1)
    return sim, a, b


def test_average_linkage_is_not_chained_by_one_false_pair():
    t = 0.01
    sim, a, b = _two_cameras(0.03, t)
    clusters, tree = average_linkage(sim, sim > t, t)
    assert clusters == [a, b] and tree.shape == (11, 4)
    # a false pair stronger than the cameras' own pairs takes its image along, but never joins the cameras
    sim, a, b = _two_cameras(0.06, t)
    assert average_linkage(sim, sim > t, t)[0] == [a + [6], b[1:]]
    # a pair above the NCC threshold that the PCE did not confirm counts as 0
    linked = sim > t
    linked[0, 6] = linked[6, 0] = False
    assert average_linkage(sim, linked, t)[0] == [a, b]
    assert average_linkage(sim[:1, :1], linked[:1, :1], t)[0] == []


def test_fingerprint_sums_add():
    images = np.stack([natural_image(64, 80, seed=s, channels=3) for s in range(6)])
    whole = FingerprintAccumulator(backend="numpy")
    whole.add(images)
    left, right = FingerprintAccumulator(backend="numpy"), FingerprintAccumulator(backend="numpy")
    left.add(images[:2])
    right.add(images[2:])
    merged = left.merge(right)
    assert merged.count == 6
    np.testing.assert_allclose(merged.fingerprint(), whole.fingerprint(), atol=1e-6)
    empty = FingerprintAccumulator(backend="numpy")
    np.testing.assert_allclose(empty.merge(left).fingerprint(), left.fingerprint())


def _turned_gram(frames_of: list[list[int]], strength: float = 0.05) -> np.ndarray:
    """Row Gram of images whose candidate rows lie in the given frames: rows in one frame correlate."""
    frames = [f for fs in frames_of for f in fs]
    g = np.array([[strength if a == b else 0.0 for b in frames] for a in frames], dtype=np.float32)
    np.fill_diagonal(g, 1.0)
    return g


def test_member_turns_are_chosen_in_one_frame():
    """Portrait members turned 90 and 270 degrees (180 apart) agree equally in either turn with each other;
    the turns must still put every member in one frame, else the fingerprint mixes a pattern with its half turn."""
    from camid_gpu.cluster.linkage import member_candidates

    # four portrait images (two candidate rows each), stored turned one way (frames 0, 1) or the other (1, 0)
    frames_of = [[0, 1], [1, 0], [0, 1], [1, 0]]
    rows = [[0, 1], [2, 3], [4, 5], [6, 7]]
    chosen = member_candidates([0, 1, 2, 3], _turned_gram(frames_of), rows)
    assert len({frames_of[i][k] for i, k in chosen}) == 1, chosen
    # with a landscape member (one candidate, frame 0), every portrait member is put in its frame
    frames_of = [[0], [1, 0], [0, 1], [1, 0]]
    rows = [[0], [1, 2], [3, 4], [5, 6]]
    chosen = member_candidates([0, 1, 2, 3], _turned_gram(frames_of), rows)
    assert {frames_of[i][k] for i, k in chosen} == {0}, chosen


# -- the refinement at its own thresholds ------------------------------------------------------------------
def test_refine_comparisons_bound():
    from camid_gpu.cluster.linkage import refine_comparisons

    assert refine_comparisons(0, 50, 2, 20) == 0  # no cluster: nothing to compare with
    assert refine_comparisons(1, 0, 1, 20) == 0  # one cluster, no image: nothing either
    # C=3, S=4, R=1: rounds min(20, 7) = 7; per round (3-1)^2 merge + 3*4 attach comparisons
    assert refine_comparisons(3, 4, 1, 20) == 7 * (4 + 12)
    assert refine_comparisons(3, 4, 2, 20) == 2 * 7 * 16  # two turns per comparison with portrait frames
    assert refine_comparisons(29, 35, 1, 20) == 20 * (28 ** 2 + 29 * 35)  # max_rounds caps the rounds
    # a round's merge comparisons: the full matrix c(c-1)/2, then the merged row against the rest after each
    # of at most c-1 merges, (c-2) + ... + 0: together (c-1)^2
    for c in range(1, 12):
        assert c * (c - 1) // 2 + sum(c - k - 1 for k in range(1, c)) == (c - 1) ** 2


class _RowOps:
    """Fake refinement ops on synthetic unit rows: a fingerprint is the normalised sum of its members' rows,
    the PCE of white rows is ``n NCC^2``."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows

    def accumulate(self, members):
        return sum((self.rows[i] for i, _ in members), np.zeros(self.rows.shape[1]))

    def absorb(self, into, other):
        return into + other

    def fingerprint_row(self, acc):
        v = acc - acc.mean()
        return (v / np.linalg.norm(v)).astype(np.float32)

    def candidates(self, index):
        return 1

    def image_rows(self, index):
        return self.fingerprint_row(self.rows[index])[None]

    def pce(self, a, b):
        return float(a.size * float(a @ b) ** 2)

    def turn_row(self, row):
        return row[::-1].copy()


def _unit(v):
    v = v - v.mean()
    return v / np.linalg.norm(v)


def _planted(n: int, rho_merge: float, rho_attach: float):
    """Clusters {0, 1} and {2, 3} whose fingerprints correlate at exactly ``rho_merge``, and an image 4 whose
    row correlates with the first fingerprint at exactly ``rho_attach``."""
    g = np.random.default_rng(0).standard_normal((n, 5))
    p, w, e, u, x = np.linalg.qr(g - g.mean(axis=0))[0].T  # orthonormal and zero-mean
    q = rho_merge * p + np.sqrt(1 - rho_merge ** 2) * w
    image = rho_attach * p + np.sqrt(1 - rho_attach ** 2) * x
    return np.stack([p + 0.5 * e, p - 0.5 * e, q + 0.5 * u, q - 0.5 * u, image])


def test_a_fingerprint_pair_between_the_pair_and_the_refine_threshold_is_not_merged_any_more():
    """The refinement used the pair threshold (all of --pfa, its comparisons uncounted). A fingerprint pair,
    and an image against a fingerprint, that correlate above that threshold but below the refinement's own
    (its share of --pfa over its bound) are no longer merged or attached."""
    from camid_gpu.backend import get_backend
    from camid_gpu.cluster.linkage import Cluster, refine, refine_comparisons
    from camid_gpu.cluster.similarity import GramEngine
    from camid_gpu.cluster.threshold import pair_threshold, stage_thresholds

    n, pfa, pair_tests = 4096, 1e-6, 10_000
    refine_tests = refine_comparisons(30, 40, 1, 20)  # the whole run's bound: 30 clusters, 40 images left
    new = stage_thresholds(pfa, pair_tests, refine_tests, n)
    old = pair_threshold(pfa, pair_tests, n)  # what the refinement used before
    assert new["refine"].ncc > old.ncc
    rho = (old.ncc + new["refine"].ncc) / 2  # in between, in NCC and so in PCE (n NCC^2)
    assert old.pce < n * rho ** 2 < new["refine"].pce
    ops = _RowOps(_planted(n, rho, rho))
    engine = GramEngine(get_backend("numpy"))
    fa = ops.fingerprint_row(ops.accumulate([(0, 0), (1, 0)]))
    fb = ops.fingerprint_row(ops.accumulate([(2, 0), (3, 0)]))
    assert float(fa @ fb) == pytest.approx(rho, rel=1e-4)  # the planted correlations are what refine sees
    assert float(ops.image_rows(4)[0] @ fa) == pytest.approx(rho, rel=1e-4)

    def merge(threshold):
        clusters = [Cluster([(0, 0), (1, 0)], events=[{"kind": "pairs"}]),
                    Cluster([(2, 0), (3, 0)], events=[{"kind": "pairs"}])]
        return refine(clusters, [], ops, threshold, engine, tile=8, max_rounds=20)

    def attach(threshold):
        return refine([Cluster([(0, 0), (1, 0)], events=[{"kind": "pairs"}])], [4], ops, threshold, engine,
                      tile=8, max_rounds=20)

    # before: merged and attached, on evidence the guarantee did not cover
    merged, _, _ = merge(old)
    assert [c.images for c in merged] == [[0, 1, 2, 3]] and merged[0].events[1]["kind"] == "fingerprint-merge"
    grown, singles, _ = attach(old)
    assert [c.images for c in grown] == [[0, 1, 4]] and singles == []
    # now: neither
    kept, _, rounds = merge(new["refine"])
    assert [c.images for c in kept] == [[0, 1], [2, 3]] and rounds == 1
    assert all(len(c.events) == 1 for c in kept)
    alone, singles, rounds = attach(new["refine"])
    assert [c.images for c in alone] == [[0, 1]] and singles == [4] and rounds == 1
    # well above the refinement threshold both still happen
    ops.rows = _planted(n, 1.3 * new["refine"].ncc, 1.3 * new["refine"].ncc)
    assert [c.images for c in merge(new["refine"])[0]] == [[0, 1, 2, 3]]
    assert attach(new["refine"])[1] == []

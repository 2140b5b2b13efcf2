"""Known answers of the linkage stage: rotation candidates, comparison counts, average linkage that one false
pair cannot chain, and ML fingerprint sums that add."""
from __future__ import annotations

import numpy as np

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
    from camid_gpu.cluster.run import member_candidates

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

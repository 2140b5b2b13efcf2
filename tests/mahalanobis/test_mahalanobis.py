"""Method 2 (two-degree-of-freedom Mahalanobis classifier): arithmetic, selection, backends, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from camid_gpu import mahalanobis as M
from camid_gpu.backend import NumpyBackend, get_backend
from camid_gpu.prnu.residual import noise_extract, wiener_dft, zero_mean_total

NP = get_backend("numpy")


def torch_backend(dtype: str):
    pytest.importorskip("torch")
    return get_backend("torch", device="cpu", dtype=dtype)


# ---------------------------------------------------------------------------------------------
# a hand-made example: 3 cameras, 6 pixels
# ---------------------------------------------------------------------------------------------
# The disputed trace is all zeros and fingerprint j is -dif_j, so dif_j = T - F_j is written out
# below. Every dif has zero mean and uncorrelated components, so Sigma_j = diag(sum dx^2 / 5,
# sum dy^2 / 5) and MD_j^2 = dx^2 / var_x + dy^2 / var_y.
DX = {0: [2, -2, 1, -1, 0, 0], 1: [0, 0, 2, -2, 1, -1], "2a": [1, -1, 0, 0, 2, -2], "2b": [1, -1, 1, -1, 2, -2]}
DY = {0: [0, 0, 1, 1, -1, -1], 1: [1, 1, 0, 0, -1, -1], "2a": [-1, -1, 1, 1, 0, 0], "2b": [1, 1, -1, -1, 0, 0]}
# camera 0: var_x = 10/5 = 2, var_y = 4/5 = 0.8 -> MD^2 = dx^2/2 + 1.25 dy^2
MD2 = {
    0: [2.0, 2.0, 1.75, 1.75, 1.25, 1.25],
    1: [1.25, 1.25, 2.0, 2.0, 1.75, 1.75],
    "2a": [1.75, 1.75, 1.25, 1.25, 2.0, 2.0],
    # var_x = 12/5 = 2.4: every pixel is at 1/2.4 + 1.25 = 4/2.4 = 5/3
    "2b": [5 / 3] * 6,
}


def hand_example(third: str) -> tuple[np.ndarray, np.ndarray]:
    """(T (1, 2, 6), F (3, 2, 6)) with cameras 0, 1 and the third camera ``third``."""
    keys = (0, 1, third)
    dif = np.stack([np.stack([np.array(DX[k], float), np.array(DY[k], float)]) for k in keys])
    return np.zeros((1, 2, 6)), -dif


def test_hand_example_distances():
    for third in ("2a", "2b"):
        t, f = hand_example(third)
        md = M.mahalanobis_distances(NP, t, f)
        np.testing.assert_allclose(md[0] ** 2, [MD2[0], MD2[1], MD2[third]], rtol=1e-12)


def test_hand_example_cyclic_tie():
    # MD_0^2 <= MD_1^2 at pixels 2,3,4,5 -> (4, 2): camera 0 beats 1
    # MD_1^2 <= MD_2^2 at pixels 0,1,4,5 -> (4, 2): 1 beats 2
    # MD_2^2 <= MD_0^2 at pixels 0,1,2,3 -> (4, 2): 2 beats 0   (a rock-paper-scissors cycle)
    t, f = hand_example("2a")
    stats = M.pair_statistics(NP, t, f)
    expected_satisfied = [[6, 4, 2],
                          [2, 6, 4],
                          [4, 2, 6]]
    np.testing.assert_array_equal(stats.satisfied[0], expected_satisfied)
    np.testing.assert_array_equal(stats.unsatisfied[0], 6 - np.array(expected_satisfied))
    result = M.MahalanobisResult.from_statistics(stats, mode="flat", camera_names=["C01", "C02", "C03"])
    np.testing.assert_array_equal(result.membership, [[50.0, 50.0, 50.0]])
    assert result.associations == [("C01", "C02", "C03")]  # a three-way tie, reported as such
    assert result.to_dict()["images"][0]["tie"] is True


def test_hand_example_clear_winner():
    # camera 2b: MD^2 = 5/3 everywhere
    # 2 vs 0: 5/3 <= [2, 2, 1.75, 1.75, 1.25, 1.25] at 4 pixels -> beats; 2 vs 1: also 4 -> beats
    # 0 vs 1: 4 -> beats; 1 vs 0: 2 -> loses;  0 vs 2: 2; 1 vs 2: 2
    t, f = hand_example("2b")
    stats = M.pair_statistics(NP, t, f)
    np.testing.assert_array_equal(stats.satisfied[0], [[6, 4, 2], [2, 6, 2], [4, 4, 6]])
    result = M.MahalanobisResult.from_statistics(stats, mode="flat")
    np.testing.assert_array_equal(result.wins, [[1, 0, 2]])
    np.testing.assert_array_equal(result.membership, [[50.0, 0.0, 100.0]])
    assert result.associations == [("C03",)]
    np.testing.assert_array_equal(result.pairwise(0)[2, 0], [4, 2])
    assert result.membership_of(0) == {"C01": 50.0, "C02": 0.0, "C03": 100.0}


def test_hand_example_component_votes():
    # camera 0 vs 1, I0 alone: dx^2/2 = [2,2,.5,.5,0,0] vs [0,0,2,2,.5,.5] -> closer-or-equal at 2,3,4,5
    # PRNU alone: 1.25 dy^2 = [0,0,1.25,1.25,1.25,1.25] vs [1.25,1.25,0,0,1.25,1.25] -> at 0,1,4,5
    t, f = hand_example("2a")
    stats = M.pair_statistics(NP, t, f)
    assert stats.intensity_satisfied[0, 0, 1] == 4
    assert stats.prnu_satisfied[0, 0, 1] == 4
    np.testing.assert_allclose(stats.covariance[0, 0], [[2.0, 0.0], [0.0, 0.8]])


def test_identical_cameras_tie_and_equality_counts_as_satisfied():
    t, f = hand_example("2b")
    f = np.concatenate([f, f[1:2]])  # camera 3 is a copy of camera 1
    stats = M.pair_statistics(NP, t, f)
    assert stats.satisfied[0, 1, 3] == 6 and stats.satisfied[0, 3, 1] == 6  # equal distances: satisfied
    result = M.MahalanobisResult.from_statistics(stats, mode="flat")
    assert result.wins[0, 1] == result.wins[0, 3]


# ---------------------------------------------------------------------------------------------
# against a plain float64 reference
# ---------------------------------------------------------------------------------------------
def reference(t: np.ndarray, f: np.ndarray, mask: np.ndarray | None):
    """Explicit loops with np.cov and np.linalg.inv: MD (D, C, P) (NaN off the mask), counts."""
    d_count, c_count, p_count = t.shape[0], f.shape[0], f.shape[2]
    md = np.full((d_count, c_count, p_count), np.nan)
    covs = np.zeros((d_count, c_count, 2, 2))
    for d in range(d_count):
        for j in range(c_count):
            used = np.ones(p_count, bool) if mask is None else mask[d, j]
            dif = (t[d] - f[j]).T[used]  # (n, 2)
            covs[d, j] = np.cov(dif.T)
            inverse = np.linalg.inv(covs[d, j])
            for k, p in enumerate(np.flatnonzero(used)):
                md[d, j, p] = np.sqrt(dif[k] @ inverse @ dif[k])
    satisfied = np.zeros((d_count, c_count, c_count), np.int64)
    pixels = np.zeros_like(satisfied)
    for d in range(d_count):
        for q in range(c_count):
            for j in range(c_count):
                for p in range(p_count):
                    if np.isnan(md[d, q, p]) or np.isnan(md[d, j, p]):
                        continue
                    pixels[d, q, j] += 1
                    satisfied[d, q, j] += md[d, q, p] <= md[d, j, p]
    return md, covs, satisfied, pixels


def random_traces(rng, n_images=2, n_cameras=3, n_pixels=300):
    f = rng.normal(size=(n_cameras, 2, n_pixels)) * [[[30.0], [1.5]]] + [[[120.0], [0.0]]]
    t = rng.normal(size=(n_images, 2, n_pixels)) * [[[25.0], [1.0]]] + [[[115.0], [0.0]]]
    # a correlated component, so that the off-diagonal of Sigma matters
    t[:, 1] += 0.02 * (t[:, 0] - 115.0)
    return t, f


@pytest.mark.parametrize("masked", [False, True])
def test_covariance_distances_counts_match_reference(masked):
    rng = np.random.default_rng(7)
    t, f = random_traces(rng)
    mask = rng.random((2, 3, 300)) < 0.75 if masked else None
    md_ref, cov_ref, sat_ref, pix_ref = reference(t, f, mask)
    stats = M.pair_statistics(NP, t, f, mask)
    np.testing.assert_allclose(stats.covariance, cov_ref, rtol=1e-10)
    np.testing.assert_allclose(M.mahalanobis_distances(NP, t, f, mask), md_ref, rtol=1e-10, equal_nan=True)
    np.testing.assert_array_equal(stats.satisfied, sat_ref)
    np.testing.assert_array_equal(stats.pixels, pix_ref)
    # satisfied + unsatisfied = the pixels of the pair; the pair (q, j) uses |S_q ∩ S_j|
    np.testing.assert_array_equal(stats.satisfied + stats.unsatisfied, stats.pixels)
    if masked:
        both = (mask[:, :, None, :] & mask[:, None, :, :]).sum(-1)
        np.testing.assert_array_equal(stats.pixels, both)
        np.testing.assert_array_equal(stats.selected, mask.sum(-1))
    else:
        assert (stats.pixels == 300).all() and (stats.selected == 300).all()


def test_chunking_does_not_change_counts():
    rng = np.random.default_rng(8)
    t, f = random_traces(rng, n_images=5)
    whole = M.pair_statistics(NP, t, f)
    chunked = M.pair_statistics(NP, t, f, chunk_elements=1)  # one image at a time
    for name in ("satisfied", "intensity_satisfied", "prnu_satisfied", "pixels", "selected"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(chunked, name))


def test_invalid_covariance_is_infinitely_far():
    rng = np.random.default_rng(9)
    t, f = random_traces(rng, n_images=1, n_cameras=3, n_pixels=50)
    f[2] = t[0]  # dif = 0 for camera 2: zero covariance, cannot be inverted
    stats = M.pair_statistics(NP, t, f)
    assert stats.valid[0].tolist() == [True, True, False]
    assert stats.satisfied[0, 0, 2] == 50 and stats.satisfied[0, 2, 0] == 0
    result = M.MahalanobisResult.from_statistics(stats, mode="flat")
    assert result.to_dict()["images"][0]["valid"]["C03"] is False


def test_fused_kernel_seam_is_used(monkeypatch):
    import types

    from camid_gpu.mahalanobis import statistics

    calls = []

    class Recording(NumpyBackend):
        def cuda_kernel_device(self):
            return "a device"

    def fused(t, f, mask):
        calls.append(tuple(t.shape))
        return M._pair_counts_generic(NP, t, f, mask)

    on = {"a device": fused}.get
    monkeypatch.setattr(statistics, "MAHALANOBIS_KERNEL", types.SimpleNamespace(on=on))

    rng = np.random.default_rng(10)
    t, f = random_traces(rng, n_images=3)
    stats = M.pair_statistics(Recording(), t, f, chunk_elements=2 * 3 * 300)
    assert calls == [(2, 2, 300), (1, 2, 300)]
    np.testing.assert_array_equal(stats.satisfied, M.pair_statistics(NP, t, f).satisfied)
    assert M.pair_statistics(Recording(), t, f, use_kernel=False) is not None and len(calls) == 2


# ---------------------------------------------------------------------------------------------
# membership, association, effectiveness, one camera
# ---------------------------------------------------------------------------------------------
def test_membership_formula():
    rng = np.random.default_rng(11)
    pixels = 100
    satisfied = rng.integers(0, pixels + 1, size=(4, 5, 5))
    unsatisfied = pixels - satisfied
    member = M.membership(satisfied, unsatisfied)
    for d in range(4):
        for q in range(5):
            beaten = sum(satisfied[d, q, j] > unsatisfied[d, q, j] for j in range(5) if j != q)
            assert member[d, q] == 100.0 * beaten / 4
    # exactly half the pixels is not a win
    half = np.full((1, 2, 2), 50)
    np.testing.assert_array_equal(M.membership(half, half), [[0.0, 0.0]])
    assert M.associate(M.wins(half, half), ["A", "B"]) == [("A", "B")]


def synthetic_result(true_cameras):
    # image 0: C01 beats both; image 1: C01 and C02 beat each other and C03 (a tie at 100 %);
    # image 2: C02 beats both
    satisfied = np.array([
        [[10, 8, 8], [2, 10, 5], [2, 5, 10]],
        [[10, 6, 8], [6, 10, 8], [2, 2, 10]],
        [[10, 4, 5], [6, 10, 9], [5, 1, 10]],
    ])
    stats = M.PairStatistics(np.full((3, 3), 10), np.tile(np.eye(2), (3, 3, 1, 1)), np.ones((3, 3), bool),
                             np.full((3, 3, 3), 10), satisfied, satisfied.copy(), np.full((3, 3, 3), 5))
    return M.MahalanobisResult.from_statistics(stats, mode="aligned", camera_names=["C01", "C02", "C03"],
                                               image_names=["a", "b", "c"], true_cameras=true_cameras)


def test_associations_and_effectiveness():
    result = synthetic_result(["C01", "C01", "C02"])
    assert result.associations == [("C01",), ("C01", "C02"), ("C02",)]
    np.testing.assert_array_equal(result.membership, [[100, 0, 0], [100, 100, 0], [0, 100, 0]])
    eff = result.effectiveness()
    assert eff["C01"]["images"] == ["a", "b"] and eff["C01"]["effective"] == 1 and eff["C01"]["rate"] == 0.5
    assert eff["C02"]["rate"] == 1.0
    assert eff["C03"]["images"] == [] and np.isnan(eff["C03"]["rate"])
    assert eff["C01"]["mean_membership"] == {"C01": 100.0, "C02": 50.0, "C03": 0.0}
    doc = json.loads(result.to_json())
    assert doc["effectiveness"]["C03"]["rate"] is None
    assert doc["membership_matrix"][1] == [100.0, 100.0, 0.0]
    assert doc["images"][1]["associated"] == ["C01", "C02"] and doc["images"][1]["tie"] is True
    # with the intensity vote identical to the full vote and PRNU exactly at 0.5: intensity drives
    diag = result.diagnostics()
    assert diag["driver"] == "intensity" and diag["vote_agreement"]["intensity"] == 1.0
    assert diag["closer_fraction"]["prnu"] == 0.5
    with pytest.raises(ValueError, match="true_cameras"):
        synthetic_result(None).effectiveness()
    with pytest.raises(ValueError, match="C09"):
        synthetic_result(["C01", "C09", None])


def test_single_camera_is_vacuous():
    rng = np.random.default_rng(12)
    t, f = random_traces(rng, n_images=2, n_cameras=1)
    result = M.compare_traces(NP, t, f, camera_names=["only"])
    assert np.isnan(result.membership).all()
    assert result.associations == [(), ()]
    assert (result.satisfied[:, 0, 0] == 300).all()  # the camera against itself
    doc = json.loads(result.to_json())
    assert doc["membership_matrix"] == [[None], [None]] and "single camera" in doc["note"]
    assert doc["diagnostics"]["pairs"] == 0


# ---------------------------------------------------------------------------------------------
# natural-image selection
# ---------------------------------------------------------------------------------------------
def standardised_fingerprints(rng, mus, sigmas, shape=(4, 5)):
    """(C, 2, H, W) whose I0 has exactly the given mean and sample std."""
    prints = []
    for mu, sigma in zip(mus, sigmas):
        z = rng.normal(size=shape)
        z = (z - z.mean()) / z.std(ddof=1)
        prints.append(np.stack([mu + sigma * z, rng.normal(size=shape)]))
    return np.stack(prints)


def test_intensity_limits():
    rng = np.random.default_rng(13)
    prints = standardised_fingerprints(rng, [100.0, 50.0], [10.0, 4.0])
    np.testing.assert_allclose(M.intensity_limits(NP, prints), [[80.0, 120.0], [42.0, 58.0]])
    np.testing.assert_allclose(M.intensity_limits(NP, prints, n_sigma=1.0), [[90.0, 110.0], [46.0, 54.0]])


def test_aligned_selection_is_open_and_per_camera():
    # limits: camera 0 (10, 30), camera 1 (20, 50); I0 exactly on a limit is left out (open interval)
    i0 = np.array([10.0, 12.0, 18.0, 25.0, 33.0, 50.0, 21.0, 29.0])
    t = np.stack([i0, np.arange(8.0)])[None]  # (1, 2, 8)
    mask = M.select_aligned(NP, t, np.array([[10.0, 30.0], [20.0, 50.0]]))
    assert mask.shape == (1, 2, 8)
    assert mask[0, 0].tolist() == [False, True, True, True, False, False, True, True]
    assert mask[0, 1].tolist() == [False, False, False, True, True, False, True, True]


def test_compare_traces_aligned_end_to_end():
    rng = np.random.default_rng(14)
    prints = standardised_fingerprints(rng, [100.0, 60.0, 90.0], [10.0, 10.0, 20.0], shape=(8, 8))
    # disputed I0 spread over 40..140: each camera keeps a different subset
    t = np.stack([rng.uniform(40.0, 140.0, size=(8, 8)), rng.normal(size=(8, 8))])[None]
    result = M.compare_traces(NP, t, prints, natural=True)
    assert result.mode == "aligned"
    limits = M.intensity_limits(NP, prints)
    i0 = t[0, 0].ravel()
    sel = np.stack([(i0 > lo) & (i0 < hi) for lo, hi in limits])  # (C, P)
    np.testing.assert_array_equal(result.selected[0], sel.sum(-1))
    np.testing.assert_array_equal(result.pixels[0], (sel[:, None] & sel[None]).sum(-1))
    np.testing.assert_array_equal(result.satisfied + result.unsatisfied, result.pixels)
    _, cov_ref, sat_ref, _ = reference(t.reshape(1, 2, -1), prints.reshape(3, 2, -1), sel[None])
    np.testing.assert_allclose(result.covariance, cov_ref, rtol=1e-10)
    np.testing.assert_array_equal(result.satisfied, sat_ref)


# the paper-mode example: a 4x5 natural image, I0 = 0, 2, ..., 38 row-major; fingerprints 2x3 (P = 6)
PAPER_I0 = 2.0 * np.arange(20.0).reshape(4, 5)
PAPER_PRNU = 0.5 * np.arange(20.0).reshape(4, 5) - 3.0
PAPER_LIMITS = np.array([[10.0, 20.0], [15.0, 40.0]])


def test_paper_selection_row_major():
    traces, mask, lengths = M.select_paper(NP, PAPER_I0, PAPER_PRNU, PAPER_LIMITS, 6, order="C")
    # camera 0 keeps 12, 14, 16, 18 (positions 6..9): 4 < 6 pixels, so the fingerprint is cut to 4
    # camera 1 keeps 16..38 (positions 8..19): 12 > 6, so the natural vector is cut to 6
    assert lengths.tolist() == [4, 6]
    assert mask.tolist() == [[True] * 4 + [False] * 2, [True] * 6]
    np.testing.assert_array_equal(traces[0, 0, :4], [12.0, 14.0, 16.0, 18.0])
    np.testing.assert_array_equal(traces[0, 1, :4], PAPER_PRNU.ravel()[6:10])
    np.testing.assert_array_equal(traces[1, 0], PAPER_I0.ravel()[8:14])


def test_paper_selection_column_major():
    # MATLAB's x(:) scans columns: 0, 10, 20, 30, 2, 12, 22, 32, 4, ... so camera 1 keeps
    # 20, 30, 22, 32, 24, 34 first (row-major positions 10, 15, 11, 16, 12, 17)
    traces, _, lengths = M.select_paper(NP, PAPER_I0, PAPER_PRNU, PAPER_LIMITS, 6, order="F")
    assert lengths.tolist() == [4, 6]
    np.testing.assert_array_equal(traces[1, 0], [20.0, 30.0, 22.0, 32.0, 24.0, 34.0])
    np.testing.assert_array_equal(traces[1, 1], PAPER_PRNU.ravel()[[10, 15, 11, 16, 12, 17]])
    prints = np.arange(12.0).reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(M.scan_fingerprints(NP, prints, "F")[0, 0], [0, 3, 1, 4, 2, 5])
    np.testing.assert_array_equal(M.scan_fingerprints(NP, prints, "C")[0, 0], [0, 1, 2, 3, 4, 5])


@pytest.mark.parametrize("order", ["C", "F"])
def test_compare_paper_truncates_to_the_shorter(order):
    rng = np.random.default_rng(15)
    prints = standardised_fingerprints(rng, [40.0, 80.0], [10.0, 30.0], shape=(4, 4))
    images = [(rng.uniform(0, 160, size=(6, 9)), rng.normal(size=(6, 9))) for _ in range(2)]
    result = M.compare_paper(NP, images, prints, order=order)
    assert result.mode == "paper" and result.scan_order == order
    limits = M.intensity_limits(NP, prints)
    vectors = M.scan_fingerprints(NP, prints, order)
    for d, (i0, prnu) in enumerate(images):
        t, mask, lengths = M.select_paper(NP, i0, prnu, limits, 16, order)
        np.testing.assert_array_equal(result.selected[d], lengths)
        np.testing.assert_array_equal(result.pixels[d], np.minimum(lengths[:, None], lengths[None, :]))
        for j in range(2):
            n = lengths[j]
            dif = t[j, :, :n] - vectors[j, :, :n]
            np.testing.assert_allclose(result.covariance[d, j], np.cov(dif), rtol=1e-10)


def test_classify_images_modes():
    rng = np.random.default_rng(16)
    flats = [rng.integers(0, 256, size=(2, 16, 16)).astype(np.uint8) for _ in range(2)]
    prints = M.fingerprints(NP, flats)
    assert prints.shape == (2, 2, 16, 16)
    natural = [rng.integers(0, 256, size=(20, 24)).astype(np.uint8) for _ in range(3)]
    for natural_flag, mode in ((False, "aligned"), (True, "aligned"), (True, "paper")):
        result = M.classify_images(NP, natural, prints, natural=natural_flag, mode=mode, batch_size=2,
                                   true_cameras=["C01", "C02", None])
        assert result.satisfied.shape == (3, 2, 2)
        assert result.mode == ("flat" if not natural_flag else mode)
        np.testing.assert_array_equal(result.satisfied + result.unsatisfied, result.pixels)
        json.loads(result.to_json())
    # flat mode is compare_traces on the centre clipping
    i0, prnu = M.traces(NP, np.stack([img[2:18, 4:20] for img in natural]))
    direct = M.compare_traces(NP, M.trace_vectors(NP, i0, prnu), prints)
    via = M.classify_images(NP, natural, prints)
    np.testing.assert_array_equal(direct.satisfied, via.satisfied)


# ---------------------------------------------------------------------------------------------
# traces and fingerprints
# ---------------------------------------------------------------------------------------------
def test_traces_and_fingerprint():
    rng = np.random.default_rng(17)
    x = rng.integers(0, 256, size=(3, 32, 32)).astype(np.uint8)
    i0, prnu = M.traces(NP, x)
    eta = zero_mean_total(NP, noise_extract(NP, x.astype(float), 2.0, 4, "db4"))
    np.testing.assert_allclose(i0, x - eta, atol=1e-10)
    np.testing.assert_allclose(prnu, wiener_dft(NP, eta), atol=1e-10)
    fp = M.fingerprint(NP, x, batch_size=2)
    np.testing.assert_allclose(fp[0], i0.mean(0), atol=1e-10)
    np.testing.assert_allclose(fp[1], prnu.mean(0), atol=1e-10)
    single = M.fingerprint(NP, x[:1])  # R = 1 works
    np.testing.assert_allclose(single, np.stack([i0[0], prnu[0]]), atol=1e-10)
    np.testing.assert_array_equal(M.trace_vectors(NP, i0, prnu)[:, 0], i0.reshape(3, -1))


# ---------------------------------------------------------------------------------------------
# NumPy vs torch
# ---------------------------------------------------------------------------------------------
def structured_traces(rng, n_images=3, n_cameras=4, side=64):
    """Traces with camera-dependent structure, so the votes are not all near 50 %."""
    p = side * side
    base = rng.uniform(60.0, 200.0, size=(n_cameras, 1, p))
    prints = np.concatenate([base, rng.normal(size=(n_cameras, 1, p))], 1)
    truth = rng.integers(0, n_cameras, size=n_images)
    t = prints[truth] + rng.normal(size=(n_images, 2, p)) * [[[15.0], [1.0]]]
    return t, prints


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_and_torch_agree(dtype):
    # float64: identical counts (distances agree to ~1e-15; exact ties come from identical operations)
    # float32: a pixel whose two distances differ by less than float32 resolution (~1e-7 relative)
    # may flip; with 4096 continuous-valued pixels that is expected well under once per pair, so a
    # tolerance of 3 pixels per count is generous. Decisions (wins, associations) must be equal.
    tb = torch_backend(dtype)
    rng = np.random.default_rng(18)
    t, prints = structured_traces(rng)
    tolerance = 0 if dtype == "float64" else 3
    for natural in (False, True):
        a = M.compare_traces(NP, t, prints, natural=natural)
        b = M.compare_traces(tb, t, prints, natural=natural)
        if natural and dtype == "float32":
            # float32 limits can move a pixel sitting within ~1e-5 of mu +/- 2 sigma: none here
            assert np.abs(a.selected - b.selected).max() == 0
        np.testing.assert_array_equal(a.pixels, b.pixels)
        for name in ("satisfied", "intensity_satisfied", "prnu_satisfied"):
            assert np.abs(getattr(a, name) - getattr(b, name)).max() <= tolerance, name
        np.testing.assert_array_equal(a.wins, b.wins)
        assert a.associations == b.associations
        np.testing.assert_allclose(a.covariance, b.covariance, rtol=1e-4 if dtype == "float32" else 1e-10)


def test_numpy_and_torch_agree_from_pixels():
    # the whole chain (residual, Wiener, fingerprint, selection, counts) in torch float32 against
    # NumPy float64: the float32 traces differ by ~1e-5 relative, which moves a pixel or so per count
    tb = torch_backend("float32")
    rng = np.random.default_rng(20)
    flats = [rng.integers(0, 256, size=(2, 64, 64)).astype(np.uint8) for _ in range(3)]
    images = [np.clip(rng.normal(128, 40, size=(70, 72)), 0, 255).astype(np.uint8) for _ in range(3)]
    prints_np, prints_t = M.fingerprints(NP, flats), M.fingerprints(tb, flats)
    np.testing.assert_allclose(tb.to_numpy(prints_t), prints_np, atol=1e-3)
    for natural, mode in ((False, "aligned"), (True, "aligned"), (True, "paper")):
        a = M.classify_images(NP, images, prints_np, natural=natural, mode=mode)
        b = M.classify_images(tb, images, prints_t, natural=natural, mode=mode)
        assert np.abs(a.selected - b.selected).max() <= 3
        assert np.abs(a.satisfied - b.satisfied).max() <= 3
        clear = np.abs(a.satisfied - a.unsatisfied) > 6  # decisions away from a near-draw must agree
        np.testing.assert_array_equal((a.satisfied > a.unsatisfied)[clear], (b.satisfied > b.unsatisfied)[clear])


def test_numpy_and_torch_agree_paper_mode():
    tb = torch_backend("float32")
    rng = np.random.default_rng(19)
    prints = standardised_fingerprints(rng, [100.0, 120.0], [30.0, 20.0], shape=(16, 16))
    images = [(rng.uniform(0, 255, size=(20, 18)), rng.normal(size=(20, 18))) for _ in range(2)]
    a = M.compare_paper(NP, images, prints, order="F")
    b = M.compare_paper(tb, images, prints, order="F")
    np.testing.assert_array_equal(a.selected, b.selected)
    assert np.abs(a.satisfied - b.satisfied).max() <= 3
    np.testing.assert_array_equal(a.wins, b.wins)


# ---------------------------------------------------------------------------------------------
# input validation: the errors name the shape
# ---------------------------------------------------------------------------------------------
def test_validation_errors_name_the_shape():
    f = np.zeros((3, 2, 7))
    with pytest.raises(ValueError, match=r"disputed.*\(5, 3, 7\)"):
        M.pair_statistics(NP, np.zeros((5, 3, 7)), f)
    with pytest.raises(ValueError, match=r"disputed.*\(1, 2, 6\)"):
        M.pair_statistics(NP, np.zeros((1, 2, 6)), f)
    with pytest.raises(ValueError, match=r"fingerprints.*\(3, 7\)"):
        M.pair_statistics(NP, np.zeros((1, 2, 7)), np.zeros((3, 7)))
    with pytest.raises(ValueError, match=r"mask.*\(1, 3, 7\).*\(1, 2, 7\)"):
        M.pair_statistics(NP, np.zeros((1, 2, 7)), f, np.ones((1, 2, 7), bool))
    with pytest.raises(ValueError, match=r"clips.*\(8, 8\)"):
        M.traces(NP, np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"flats.*\(0, 8, 8\)"):
        M.fingerprint(NP, np.zeros((0, 8, 8)))
    with pytest.raises(ValueError, match=r"\(2, 2, 4, 4\).*\(3, 2, 5\)"):
        M.compare_traces(NP, np.zeros((2, 2, 4, 4)), np.zeros((3, 2, 5)))
    with pytest.raises(ValueError, match=r"fingerprints: expected \(C, 2, H, W\).*\(3, 2, 5\)"):
        M.classify_images(NP, [np.zeros((8, 8))], np.zeros((3, 2, 5)))
    with pytest.raises(ValueError, match=r"D01.*\(8, 8, 3\)"):
        M.classify_images(NP, [np.zeros((8, 8, 3))], np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"limits.*\(2, 3\)"):
        M.select_aligned(NP, np.zeros((1, 2, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"i0 and prnu.*\(4, 5\).*\(4, 4\)"):
        M.select_paper(NP, np.zeros((4, 5)), np.zeros((4, 4)), PAPER_LIMITS, 6)
    with pytest.raises(ValueError, match="order"):
        M.scan_fingerprints(NP, np.zeros((1, 2, 2, 2)), "K")
    with pytest.raises(ValueError, match="camera_names: expected 3 names, got 2"):
        M.compare_traces(NP, np.zeros((1, 2, 7)), f, camera_names=["a", "b"])
    with pytest.raises(ValueError, match="mode"):
        M.classify_images(NP, [np.zeros((8, 8))], np.zeros((1, 2, 4, 4)), natural=True, mode="whole")
    with pytest.raises(ValueError, match=r"satisfied/unsatisfied.*\(2, 3\)"):
        M.membership(np.zeros((2, 3)), np.zeros((2, 3)))


def test_result_is_its_pair_statistics_with_names():
    """MahalanobisResult extends PairStatistics (one declaration of the arrays); take_images keeps the type."""
    t, f = hand_example("2b")
    stats = M.PairStatistics.concatenate([M.pair_statistics(NP, t, f)] * 2)
    result = M.MahalanobisResult.from_statistics(stats, mode="flat", image_names=["a", "b"])
    assert isinstance(result, M.PairStatistics)
    for name, array in stats.arrays().items():
        assert getattr(result, name) is array
    one = result.take_images(slice(1, 2))
    assert type(one) is M.MahalanobisResult and one.image_names == ("a", "b")  # names are the caller's
    np.testing.assert_array_equal(one.satisfied, stats.satisfied[1:2])
    np.testing.assert_array_equal(one.unsatisfied, stats.unsatisfied[1:2])


def test_summarise_diagnostics_known_answer():
    """One summary for the evaluation and the report: means over usable images, drivers counted."""
    per_image = [
        {"closer_fraction": {"full": 0.5, "intensity": 0.75, "prnu": 0.25},
         "vote_agreement": {"intensity": 1.0, "prnu": 0.5}, "driver": "intensity"},
        {"closer_fraction": {"full": 0.75, "intensity": 0.25, "prnu": None},
         "vote_agreement": {"intensity": 0.0, "prnu": 1.0}, "driver": "prnu"},
        {"closer_fraction": None, "vote_agreement": None, "driver": "undetermined"},  # no pair counted
    ]
    assert M.summarise_diagnostics(per_image) == {
        "images": 2,
        "closer_fraction": {"full": 0.625, "intensity": 0.5, "prnu": 0.25},
        "vote_agreement_with_full": {"intensity": 0.5, "prnu": 0.75},
        "driver_counts": {"intensity": 1, "prnu": 1}}
    assert M.summarise_diagnostics(per_image[2:]) == {"images": 0}

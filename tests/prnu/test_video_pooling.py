"""The video statistics (camid_gpu.prnu.video): the aligned test's P_FA bound holds under the null, frames that
are not independent are not counted as independent evidence, and the PCE equivalent of a P_FA."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from camid_gpu.backend import get_backend
from camid_gpu.prnu.video import VideoPool, equivalent_pce, frame_products, hybrid_scales, sum_of_maxima_log10_p


def test_the_aligned_bound_is_conservative_under_the_null():
    rng = np.random.default_rng(0)
    shifts, frames = 289, 8
    maxima = rng.standard_normal((20000, frames, shifts)).max(axis=2).sum(axis=1)
    for quantile in (0.99, 0.999):
        t = float(np.quantile(maxima, quantile))
        assert 10 ** sum_of_maxima_log10_p(t, np.ones(frames), shifts) >= 1 - quantile
    # the mean of the null gives no evidence; far above it, a tiny probability
    assert sum_of_maxima_log10_p(float(maxima.mean()), np.ones(frames), shifts) > -0.5
    assert sum_of_maxima_log10_p(float(maxima.mean()) + 30, np.ones(frames), shifts) < -20


def test_equivalent_pce_matches_the_one_shift_probability():
    assert abs(equivalent_pce(float(special.log_ndtr(-math.sqrt(60.0))) / math.log(10)) - 60.0) < 1e-6
    assert equivalent_pce(-0.1) == 0.0
    assert equivalent_pce(-400.0) > 1800


def test_a_still_scene_is_not_counted_as_independent_frames():
    """Eight copies of one frame against a fingerprint that, by chance, correlates with it at one shift (z ~ 5 in
    one frame: a 1-in-10^4 event, not a match): their sum is one frame's evidence, not eight. Counted as eight
    independent frames it was PCE 119, a false match."""
    bk = get_backend("numpy", dtype="float32")
    frame = np.random.default_rng(1).integers(30, 220, (96, 128), dtype=np.uint8)
    product = bk.to_numpy(frame_products(bk, frame[None], 2.0, 4, "db4")[0])[0]
    noise = np.random.default_rng(10).standard_normal((96, 128)).astype(np.float32)
    k = ((noise + 0.03 * np.roll(product / product.std(), (3, 2), (0, 1))) * 0.01).astype(np.float32)
    single = VideoPool(bk, [("other", k)], sigma=2.0, levels=4, wavelet="db4", align_range=8)
    single.add(frame[None], ["I"])
    assert single.per_frame[0]["other"].shift == (3, 2) and single.per_frame[0]["other"].z > 4.5
    pool = VideoPool(bk, [("other", k)], sigma=2.0, levels=4, wavelet="db4", align_range=8)
    pool.add(np.stack([frame] * 8), ["I"] * 8)
    score = pool.scores()["other"]
    assert score["pce"] < 1.2 * single.scores()["other"]["pce"] < 30, score
    # the same eight frames in batches of two (a smaller memory budget, a larger frame): still one frame's evidence
    batched = VideoPool(bk, [("other", k)], sigma=2.0, levels=4, wavelet="db4", align_range=8)
    for _ in range(4):
        batched.add(np.stack([frame] * 2), ["I"] * 2)
    assert batched.scores()["other"]["pce"] < 1.2 * single.scores()["other"]["pce"] < 30


def test_hybrid_scales_span_the_fitting_scale_and_the_crop():
    grid = hybrid_scales((720, 1280), (3000, 4000), 0.002, 0.03)
    assert grid[0] == 0.32 and grid[-1] == 1.0 and abs(grid[-2] - 0.3296) < 1e-9
    assert hybrid_scales((800, 1000), (600, 800), 0.002, 0.03).size == 0  # larger than the sensor


def test_frame_peaks_equal_the_pce_of_a_shift_search():
    from camid_gpu.prnu.pce import pce
    from camid_gpu.prnu.video import frame_peaks

    bk = get_backend("numpy", dtype="float32")
    corr = np.random.default_rng(0).standard_normal((3, 2, 60, 80)).astype(np.float32)
    corr[1, 0, 57, 3] += 9.0  # a peak at shift (-3, 3), wrapped
    mine = frame_peaks(bk, bk.asarray(corr), 8)
    reference = pce(bk, bk.roll(bk.asarray(corr), (8, 8)), (16, 16))
    np.testing.assert_allclose(mine["pce"], reference["pce"], rtol=1e-4)
    np.testing.assert_allclose(mine["log10_p_fa"], reference["log10_p_fa"], rtol=1e-4)
    np.testing.assert_array_equal(mine["shift"], reference["peak_shift"] - 8)
    assert tuple(mine["shift"][1, 0]) == (-3, 3)


def test_a_non_finite_pooled_test_is_an_error_not_a_clean_answer():
    """A fingerprint of zeros gives the correlation planes no energy: the test was NaN, which min() dropped and
    read as 'no match' (log10 P_FA 0). It is refused, so the video gets a per-file error."""
    bk = get_backend("numpy", dtype="float32")
    frame = np.random.default_rng(2).integers(30, 220, (96, 128), dtype=np.uint8)
    pool = VideoPool(bk, [("flat", np.zeros((96, 128), np.float32))], sigma=2.0, levels=4, wavelet="db4",
                     align_range=0)
    with pytest.raises(ValueError, match="no energy"):
        pool.add(frame[None], ["I"])

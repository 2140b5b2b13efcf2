"""The Python API refuses what the command line refuses (issue 23 item 13): degenerate inputs gave all-zero
fingerprints, NaN scores or all-zero residuals; bad counts gave bare Python errors. Every message names the
argument; NumPy whole numbers are whole numbers."""
from __future__ import annotations

import numpy as np
import pytest

from camid_gpu.backend import get_backend
from camid_gpu.prnu.fingerprint import estimate_fingerprint
from camid_gpu.prnu.pce import pce_scores
from camid_gpu.prnu.residual import extract_residual


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(20, 235, (3, 48, 48)).astype(np.uint8)


def test_estimate_fingerprint_refuses_constant_images_and_a_single_image(images):
    with pytest.raises(ValueError, match=r"reference images\[1\] is constant"):
        estimate_fingerprint(np.stack([images[0], np.full((48, 48), 128, np.uint8)]), backend="numpy")
    with pytest.raises(ValueError, match=r"1 given, at least 2 are needed"):
        estimate_fingerprint(images[:1], backend="numpy")
    with pytest.raises(ValueError, match=r"constant"):  # uint16 on its own scale
        estimate_fingerprint(np.full((2, 48, 48), 40000, np.uint16), backend="numpy")


def test_estimate_fingerprint_checks_its_options(images):
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1, got 2.5"):
        estimate_fingerprint(images, batch_size=2.5, backend="numpy")
    with pytest.raises(ValueError, match=r"sigma"):
        estimate_fingerprint(images, sigma=float("inf"), backend="numpy")
    k = estimate_fingerprint(images, levels=np.int64(3), batch_size=np.int64(2), backend="numpy")
    np.testing.assert_array_equal(k, estimate_fingerprint(images, levels=3, batch_size=2, backend="numpy"))


@pytest.mark.parametrize("value", [1e300, -1e300, 1e6])
def test_extract_residual_refuses_absurd_floats_instead_of_zeros(value, images):
    bad = images.astype(np.float64)
    bad[0, 3, 4] = value
    with pytest.raises(ValueError, match=r"0\.\.255 scale.*at most 65535 in magnitude"):
        extract_residual(bad, backend="numpy")


def test_extract_residual_counts_and_levels(images):
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1, got 2.5"):
        extract_residual(images, batch_size=2.5, backend="numpy")
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1, got 0"):
        extract_residual(images, batch_size=0, backend="numpy")
    got = extract_residual(images, levels=np.int64(3), batch_size=np.int64(2), backend="numpy")
    np.testing.assert_array_equal(got, extract_residual(images, levels=3, backend="numpy"))


@pytest.fixture
def scoring():
    rng = np.random.default_rng(1)
    return (get_backend("numpy"), rng.standard_normal((2, 32, 32)), rng.uniform(50, 200, (2, 32, 32)),
            rng.standard_normal((3, 32, 32)) * 0.01)


def test_pce_scores_refuses_zero_inputs(scoring):
    bk, res, inten, fps = scoring
    with pytest.raises(ValueError, match=r"residuals\[0\] is constant"):
        pce_scores(bk, np.zeros_like(res), inten, fps)
    zero_k = fps.copy()
    zero_k[2] = 0
    with pytest.raises(ValueError, match=r"intensities\[0\] x fingerprints\[2\] is constant"):
        pce_scores(bk, res, inten, zero_k, camera_chunk=2)
    with pytest.raises(ValueError, match=r"intensities\[1\] x fingerprints\[0\] is constant"):
        pce_scores(bk, res, np.stack([inten[0], np.zeros((32, 32))]), fps)
    assert np.all(np.isfinite(pce_scores(bk, res, inten, fps).pce))


def test_pce_scores_refuses_tiny_images_2d_inputs_and_a_zero_chunk(scoring):
    bk, res, inten, fps = scoring
    with pytest.raises(ValueError, match=r"larger than the peak neighbourhood \(11x11.*1x1"):
        pce_scores(bk, res[:, :1, :1], inten[:, :1, :1], fps[:, :1, :1])
    with pytest.raises(ValueError, match=r"residuals must be a batch \(N, H, W\), got shape \(32, 32\)"):
        pce_scores(bk, res[0], inten[0], fps)
    with pytest.raises(ValueError, match=r"camera_chunk must be a whole number >= 1, got 0"):
        pce_scores(bk, res, inten, fps, camera_chunk=0)
    one = pce_scores(bk, res, inten, fps, camera_chunk=np.int64(1)).pce
    np.testing.assert_allclose(one, pce_scores(bk, res, inten, fps).pce)

"""Residual engine: parity of both backends with a plain float64 reference of the Binghamton spec."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import pywt

from camid_gpu.backend import get_backend
from camid_gpu.prnu.residual import (
    extract_residual,
    noise_extract,
    padding,
    wiener_dft,
    zero_mean_total,
)

from camid_gpu.selftest import spec
from conftest import HAVE_TORCH, natural_image, requires_torch


# The plain float64 reference of the spec lives in the package (camid selftest uses it too).
ref_noise_extract, ref_zero_mean_total, ref_wiener, ref_residual = (
    spec.noise_extract, spec.zero_mean_total, spec.wiener_dft, spec.residual)


# ---------------------------------------------------------------------------------------------
BACKENDS = ["numpy", pytest.param("torch", marks=requires_torch)]


@pytest.mark.parametrize("size", [(1, 16), (17, 16), (16, 15), (257, 389), (1000, 1000)])
@pytest.mark.parametrize("levels", [1, 4])
def test_padding_rule(size, levels):
    for n in size:
        before, after = padding(n, levels)
        assert (n + before + after) % 2**levels == 0
        assert before + after >= 2 and before - after in (0, 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,seed", [((57, 83), 1), ((64, 64), 2), ((37, 50, 3), 3)])
def test_residual_matches_float64_reference(backend, shape, seed):
    img = natural_image(shape[0], shape[1], seed=seed, channels=shape[2] if len(shape) == 3 else 0)
    expected = ref_residual(img)
    got = extract_residual(img[None], backend=backend, device="cpu" if backend == "torch" else None)[0]
    assert got.dtype == np.float32 and got.shape == shape[:2]
    assert np.abs(got - expected).max() <= 1e-3
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] >= 0.99999


def test_numpy_backend_is_float64_exact():
    img = natural_image(40, 45, seed=7).astype(np.float64)
    bk = get_backend("numpy")
    got = zero_mean_total(bk, noise_extract(bk, img[None], sigma=2.0))[0]
    expected = ref_zero_mean_total(ref_noise_extract(img, 2.0))
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_wiener_matches_reference():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 2, (2, 48, 40))
    x[:, ::8, :] += 10.0  # a periodic artefact for the Wiener filter to suppress
    bk = get_backend("numpy")
    got = wiener_dft(bk, x)
    for k in range(2):
        np.testing.assert_allclose(got[k], ref_wiener(x[k], x[k].std(ddof=1)), atol=1e-9)
    # the artefact's spectral peak (row frequency 48/8 = 6) is suppressed, the flat part kept
    gain = np.abs(np.fft.fft2(got[0])) / np.abs(np.fft.fft2(x[0]))
    assert gain[6, 0] < 0.5 and abs(np.median(gain) - 1) < 1e-6


@requires_torch
@pytest.mark.parametrize("shape", [(257, 389), (1000, 1000)])
def test_backend_parity_issue_sizes(shape):
    """The issue's acceptance: numpy vs torch(CPU) within 1e-3 and correlation >= 0.99999."""
    imgs = np.stack([natural_image(*shape, seed=11), np.random.default_rng(0).integers(0, 256, shape, np.uint8)])
    a = extract_residual(imgs, backend="numpy", wiener=True)
    b = extract_residual(imgs, backend="torch", device="cpu", wiener=True)
    assert np.abs(a - b).max() <= 1e-3
    for k in range(2):
        assert np.corrcoef(a[k].ravel(), b[k].ravel())[0, 1] >= 0.99999


def test_torch_backends_match_numpy_primitives(torch_backend):
    """Every backend primitive used by the algorithms agrees with the numpy backend."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 10, (3, 32, 48))
    np_bk, tb = get_backend("numpy"), torch_backend
    tol = 1e-4 if "32" in str(tb.dtype) else 1e-10
    t = tb.asarray(x)
    for size in (3, 9):
        np.testing.assert_allclose(tb.to_numpy(tb.box_mean(t, size)), np_bk.box_mean(x, size), atol=tol)
    a_np, d_np = np_bk.wavedec2(x, "db4", 3)
    a_t, d_t = tb.wavedec2(t, "db4", 3)
    np.testing.assert_allclose(tb.to_numpy(a_t), a_np, atol=tol * 10)
    for dn, dt in zip(d_np, d_t):
        np.testing.assert_allclose(tb.to_numpy(dt), dn, atol=tol * 10)
    np.testing.assert_allclose(tb.to_numpy(zero_mean_total(tb, t)), zero_mean_total(np_bk, x), atol=tol)
    np.testing.assert_allclose(tb.to_numpy(wiener_dft(tb, t)), wiener_dft(np_bk, x), atol=tol * 10)


@requires_torch
@pytest.mark.parametrize("wavelet", ["db1", "db2", "db4", "sym4", "coif2"])
@pytest.mark.parametrize("levels", [1, 2, 4])
@pytest.mark.parametrize("shape", [(32, 48), (64, 16)])
def test_torch_dwt_matches_pywt_float64(wavelet, levels, shape):
    """ptwt-style grid: pytorch-wavelets' periodization equals pywt's to float64 precision."""
    bk = get_backend("torch", device="cpu", dtype="float64")
    x = np.random.default_rng(levels).normal(size=(2, *shape))
    approx, details = bk.wavedec2(bk.asarray(x), wavelet, levels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        coeffs = pywt.wavedec2(x, wavelet, mode="periodization", level=levels, axes=(-2, -1))
    np.testing.assert_allclose(bk.to_numpy(approx), coeffs[0], atol=1e-12)
    for j, bands in enumerate(reversed(coeffs[1:])):
        np.testing.assert_allclose(bk.to_numpy(details[j]), np.stack(bands, -3), atol=1e-12)
    np.testing.assert_allclose(bk.to_numpy(bk.waverec2(approx, details, wavelet)), x, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_residual_of_constant_image_is_zero(backend):
    img = np.full((1, 40, 56), 128, np.uint8)
    assert np.abs(extract_residual(img, backend=backend)).max() < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_equals_one_at_a_time(backend):
    imgs = np.stack([natural_image(48, 40, seed=s) for s in range(5)])
    batch = extract_residual(imgs, backend=backend, batch_size=3)
    single = np.concatenate([extract_residual(imgs[i:i + 1], backend=backend) for i in range(5)])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_uint16_is_scaled_to_255():
    img8 = natural_image(40, 40, seed=4)
    img16 = (img8.astype(np.uint32) * 257).astype(np.uint16)  # exact 8->16 bit mapping
    np.testing.assert_allclose(extract_residual(img16[None], backend="numpy"),
                               extract_residual(img8[None], backend="numpy"), atol=1e-4)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((10, 10), np.uint8), r"pass images\[None\]"),
    (np.zeros((1, 10, 10, 4), np.uint8), r"shape \(1, 10, 10, 4\)"),
    (np.zeros((1, 10, 10), np.int64), "dtype must be uint8, uint16 or floating"),
    (np.full((1, 10, 10), np.nan), "NaN"),
    (np.zeros((0, 10, 10), np.uint8), "empty"),
])
def test_bad_arrays_are_named(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        extract_residual(bad, backend="numpy")


def test_bad_parameters():
    img = np.zeros((1, 20, 20), np.uint8)
    with pytest.raises(ValueError, match="backend must be one of"):
        extract_residual(img, backend="jax")
    with pytest.raises(ValueError, match="wavelet"):
        extract_residual(img, wavelet="nope", backend="numpy")
    with pytest.raises(ValueError, match="sigma"):
        extract_residual(img, sigma=0, backend="numpy")


def test_auto_backend_without_cuda_is_numpy():
    from conftest import cuda_available

    if cuda_available():
        pytest.skip("CUDA present: auto picks torch")
    assert get_backend("auto").name == "numpy"
    assert HAVE_TORCH or get_backend("auto").name == "numpy"


@pytest.mark.parametrize("sigma", [float("inf"), float("nan"), 0.0, -1.0, 1e300])
def test_extract_residual_refuses_a_sigma_outside_the_scale(sigma):
    # inf gave NaN residuals from the Python API (the command line already refused it)
    with pytest.raises(ValueError, match=r"sigma \(--sigma\) must be a finite number in \(0, 255\]"):
        extract_residual(np.zeros((1, 32, 32), np.uint8), sigma=sigma, backend="numpy")

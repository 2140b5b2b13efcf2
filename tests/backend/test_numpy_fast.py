"""The NumPy backend's host kernels, threads and float32 path against its float64 reference path.

The reference is ``NumpyBackend("float64", use_kernels=False, workers=1)``: the plain primitives on one
thread. The fused strip Mihcak shrink is a different implementation of the same math: on float64
arrays it must agree with the plain primitives to float64 rounding, on float32 to float32 rounding;
threads must not change a bit; float32 residuals must stay within 1e-3 of the reference.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from camid_gpu.backend import host_kernels
from camid_gpu.backend import NumpyBackend, get_backend
from camid_gpu.config import API_PRECISION, PRECISION, RunConfig
from camid_gpu.prnu.residual import (
    MIHCAK_WINDOWS,
    extract_residual,
    mihcak_shrink,
    noise_extract,
    residual_native,
    wiener_dft,
)

from conftest import natural_image

REFERENCE = NumpyBackend(dtype="float64", use_kernels=False, workers=1)
FAST = NumpyBackend(dtype="float32", workers=2)
DEFAULT64 = NumpyBackend(dtype="float64", workers=2)


def plain_shrink(c: np.ndarray, nv, windows) -> np.ndarray:
    """Mihcak's shrink from scipy's zero-padded uniform_filter, one window at a time (float64)."""
    c = c.astype(np.float64)
    window = (1,) * (c.ndim - 2)
    variance = None
    for w in windows:
        local = np.maximum(ndimage.uniform_filter(c * c, window + (w, w), mode="constant") - nv, 0)
        variance = local if variance is None else np.minimum(variance, local)
    return c * nv / (variance + nv)


def coefficients(shape, seed=0) -> np.ndarray:
    """Wavelet-like coefficients: small noise with a strong patch (so windows straddle an edge)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(0, 3, shape)
    c[..., : max(1, shape[-2] // 3), : max(1, shape[-1] // 2)] *= 25
    return c


@pytest.fixture(params=[1, 3], ids=["1thread", "3threads"])
def pool(request):
    return host_kernels.WorkerPool(request.param)


@pytest.fixture
def small_strips(monkeypatch):
    """Strips of 8 rows on these small planes, so planes span several strips and a partial last one."""
    monkeypatch.setattr(host_kernels, "STRIP_BYTES", 1)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 7), (1, 9, 1), (2, 5, 4), (3, 17, 16), (2, 3, 30, 23),
                                   (1, 64, 8)])
@pytest.mark.parametrize("windows", [(1,), (3,), (5,), (7,), (9,), (11,), MIHCAK_WINDOWS, (9, 3)])
def test_fused_shrink_matches_uniform_filter(shape, windows, pool, small_strips):
    """Every window alone (isolating its box mean) and together, odd and even plane sizes, planes
    smaller than the window, several strips per plane; float64 to rounding, float32 to 1e-6."""
    c = coefficients(shape, seed=len(shape) + shape[-1])
    expected = plain_shrink(c, 9.0, windows)
    got = host_kernels.mihcak_shrink(pool, c, 9.0, windows)
    assert got.dtype == np.float64 and got.shape == shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    got32 = host_kernels.mihcak_shrink(pool, c.astype(np.float32), 9.0, windows)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_fused_shrink_per_plane_noise_variance(pool, small_strips):
    c = coefficients((3, 2, 20, 13), seed=4)
    nv = np.random.default_rng(1).uniform(0.5, 40, (3, 2, 1, 1))
    np.testing.assert_allclose(host_kernels.mihcak_shrink(pool, c, nv, MIHCAK_WINDOWS),
                               plain_shrink(c, nv, MIHCAK_WINDOWS), rtol=1e-12, atol=1e-12)
    nv3 = nv[:, :1]  # broadcasting over the second axis
    np.testing.assert_allclose(host_kernels.mihcak_shrink(pool, c, nv3, MIHCAK_WINDOWS),
                               plain_shrink(c, nv3, MIHCAK_WINDOWS), rtol=1e-12, atol=1e-12)


def test_fused_shrink_is_the_backend_kernel_unless_switched_off():
    for kernel in (host_kernels.mihcak_shrink, host_kernels.wiener_dft):
        assert REFERENCE.host_kernel(kernel) is None
        assert FAST.host_kernel(kernel) is not None and DEFAULT64.host_kernel(kernel) is not None
    assert FAST.cuda_kernel_device() is None  # no CUDA kernel (the Mahalanobis counts) on the host
    c = coefficients((2, 3, 24, 18), seed=2)
    np.testing.assert_allclose(mihcak_shrink(DEFAULT64, c, 4.0), mihcak_shrink(REFERENCE, c, 4.0), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("windows", [(), (4,), (3, 0)])
def test_fused_shrink_rejects_bad_windows(windows):
    with pytest.raises(ValueError, match="odd positive"):
        host_kernels.mihcak_shrink(host_kernels.WorkerPool(1), np.zeros((1, 4, 4)), 1.0, windows)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 6), (1, 7, 1), (1, 2, 2), (2, 9, 8), (1, 16, 15),
                                   (2, 3, 31, 24), (1, 40, 33)])
def test_fused_wiener_matches_plain(shape, pool, small_strips):
    """Half-spectrum WienerInDFT against the plain full-spectrum one: odd and even sides (the mirrored
    columns and the self-conjugate ones), single rows and columns, per-plane noise variances."""
    rng = np.random.default_rng(shape[-1] + shape[-2])
    x = rng.normal(0, 2, shape)
    x[..., ::4, :] += 6.0  # a periodic artefact, so that the shrink has something to suppress
    nv = rng.uniform(0.5, 6, shape[:-2] + (1, 1))
    expected = wiener_dft(REFERENCE, x, np.sqrt(nv))
    scale = max(1.0, np.abs(expected).max())
    got = host_kernels.wiener_dft(pool, x, nv, MIHCAK_WINDOWS)
    assert got.dtype == np.float64 and got.shape == shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * scale)
    got32 = host_kernels.wiener_dft(pool, x.astype(np.float32), nv.astype(np.float32), MIHCAK_WINDOWS)
    assert got32.dtype == np.float32 and got32.shape == shape
    np.testing.assert_allclose(got32, expected, rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("backend", [REFERENCE, DEFAULT64, FAST], ids=["reference", "float64", "float32"])
def test_wiener_of_a_constant_is_zero(backend):
    """sigma = 0 (a flat residual): every gain is 0 or 0/0; the result is 0, not NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):  # the plain twin divides 0 by 0 here
        out = wiener_dft(backend, backend.asarray(np.full((2, 12, 10), 5.0)))
    assert np.all(out == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threaded_dwt_equals_batched_pywt(dtype):
    """One plane per thread gives exactly the numbers of pywt's batched call (the reference)."""
    x = np.random.default_rng(3).normal(0, 20, (2, 3, 48, 80)).astype(dtype)
    threaded = NumpyBackend(np.dtype(dtype).name, use_kernels=False, workers=2)
    a_ref, d_ref = REFERENCE.wavedec2(x, "db4", 3)
    a, d = threaded.wavedec2(x, "db4", 3)
    assert a.dtype == dtype and a.shape == a_ref.shape
    np.testing.assert_array_equal(a, a_ref)
    for got, expected in zip(d, d_ref):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(threaded.waverec2(a, d, "db4"), REFERENCE.waverec2(a_ref, d_ref, "db4"))


@pytest.mark.parametrize("wavelet", ["db1", "db2", "db4", "sym4", "coif2"])
@pytest.mark.parametrize("levels", [1, 2, 4])
@pytest.mark.parametrize("shape", [(1, 64, 48), (2, 3, 96, 40), (1, 128, 8), (1, 48, 17), (2, 36, 36)])
def test_block_matrix_dwt_matches_pywt(wavelet, levels, shape):
    """The host-kernel DWT (column transform as banded block products) against pywt in float64 and
    float32, on every block size (heights 2^k * odd), and pywt itself where it does not apply."""
    x = np.random.default_rng(levels).normal(0, 20, shape)
    a_ref, d_ref = REFERENCE.wavedec2(x, wavelet, levels)
    for dtype, tol in ((np.float64, 1e-11), (np.float32, 2e-4)):
        a, d = DEFAULT64.wavedec2(x.astype(dtype), wavelet, levels)
        assert a.dtype == dtype and a.shape == a_ref.shape
        np.testing.assert_allclose(a, a_ref, rtol=0, atol=tol)
        for got, expected in zip(d, d_ref):
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
        back = DEFAULT64.waverec2(a, d, wavelet)
        assert back.dtype == dtype
        np.testing.assert_allclose(back, REFERENCE.waverec2(a_ref, d_ref, wavelet), rtol=0, atol=tol)
        # an odd width comes back one wider (as from pywt); pywt's sym4/coif2 filters round-trip to ~1e-10
        np.testing.assert_allclose(back[..., :shape[-1]], x, rtol=0, atol=max(tol, 1e-9))


def test_dwt_fits_needs_even_heights_at_least_the_filter():
    assert host_kernels.dwt_fits(2016, "db4", 4) and host_kernels.dwt_fits(64, "db4", 4)
    assert not host_kernels.dwt_fits(120, "db4", 4)  # the last level's input, 15 rows, is odd
    assert not host_kernels.dwt_fits(48, "db4", 4)  # the last level's input, 6 rows, is shorter than db4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("use_kernels", [True, False])
def test_thread_count_does_not_change_a_bit(dtype, use_kernels):
    """Reproducibility: 1 or 3 workers give bit-identical residuals (work is split, never reordered);
    so the plain primitives on threads are still bit for bit the reference."""
    img = np.stack([natural_image(150, 170, seed=8, channels=3), natural_image(150, 170, seed=9, channels=3)])
    one = extract_residual(img, backend=NumpyBackend(dtype, use_kernels, workers=1), wiener=True)
    three = extract_residual(img, backend=NumpyBackend(dtype, use_kernels, workers=3), wiener=True)
    np.testing.assert_array_equal(one, three)
    if dtype == "float64" and not use_kernels:
        np.testing.assert_array_equal(three, extract_residual(img, backend=REFERENCE, wiener=True))


@pytest.mark.parametrize("shape", [(57, 83), (256, 200), (131, 97, 3)])
def test_fast_paths_match_float64_reference(shape):
    """Residuals (with WienerInDFT) of the float32 path within 1e-3 of the reference on the 0..255
    scale, of the float64 host kernels within 1e-8."""
    img = natural_image(shape[0], shape[1], seed=shape[0], channels=shape[2] if len(shape) == 3 else 0)
    batch = np.stack([img, np.random.default_rng(1).integers(0, 256, img.shape, np.uint8)])
    reference = extract_residual(batch, backend=REFERENCE, wiener=True)
    fast = extract_residual(batch, backend=FAST, wiener=True)
    assert np.abs(fast - reference).max() <= 1e-3
    for k in range(2):
        assert np.corrcoef(fast[k].ravel(), reference[k].ravel())[0, 1] >= 0.99999
    native = residual_native(DEFAULT64, batch)
    assert native.dtype == np.float64
    np.testing.assert_allclose(wiener_dft(DEFAULT64, native), wiener_dft(REFERENCE, residual_native(REFERENCE, batch)),
                               rtol=0, atol=1e-8)


def test_fast_path_on_float64_arrays_stays_float64():
    """Native float64 arrays keep their precision on the fast path (only asarray picks float32)."""
    img = natural_image(40, 45, seed=7).astype(np.float64)[None]
    got = noise_extract(FAST, img, sigma=2.0)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, noise_extract(REFERENCE, img, sigma=2.0), atol=1e-9)
    np.testing.assert_allclose(wiener_dft(FAST, got), wiener_dft(REFERENCE, got), atol=1e-9)


def test_backend_options_and_description():
    assert get_backend("numpy").dtype == np.dtype(API_PRECISION["numpy"]) == np.float64
    assert RunConfig().precision == PRECISION == "float32"  # batch runs: the other half of config's one rule
    assert get_backend("numpy").use_kernels
    assert get_backend("numpy", dtype="float64").dtype == np.float64
    assert get_backend("numpy", dtype="float32").asarray(np.zeros(2, np.uint8)).dtype == np.float32
    assert DEFAULT64.describe() == get_backend("numpy").describe() == "numpy on cpu"
    assert REFERENCE.describe() == "numpy on cpu, plain primitives"
    assert FAST.describe() == "numpy on cpu, float32"
    with pytest.raises(ValueError, match="dtype must be"):
        get_backend("numpy", dtype="float16")
    with pytest.raises(ValueError, match="dtype must be"):
        NumpyBackend(dtype="half")
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        NumpyBackend(workers=0)


def test_pool_is_remade_in_a_forked_child(monkeypatch):
    """A forked process inherits the pool object but not its threads: a new pid gets a new pool."""
    pool = host_kernels.WorkerPool(2)
    assert pool.map(lambda k: k * k, range(4)) == [0, 1, 4, 9]
    first = pool._pool
    monkeypatch.setattr(host_kernels.os, "getpid", lambda: -12345)
    assert pool.map(lambda k: k + 1, range(3)) == [1, 2, 3]
    assert pool._pool is not first


def test_split_covers_every_item_once():
    for count in (1, 2, 5, 17):
        for parts in (1, 2, 3, 40):
            ranges = host_kernels.split(count, parts)
            assert [i for r in ranges for i in r] == list(range(count))
            assert all(len(r) > 0 for r in ranges) and len(ranges) <= parts


def test_float32_path_gives_the_same_decisions():
    """Fingerprints, residuals and PCE of three synthetic cameras on the float32 path: the float64
    reference's decisions, and its PCE values to 1e-3."""
    from camid_gpu.prnu.fingerprint import estimate_fingerprint
    from camid_gpu.prnu.pce import pce_scores
    from camid_gpu.selftest.spec import camera_images

    rng = np.random.default_rng(4)
    ks = [rng.normal(0, 0.01, (160, 192)) for _ in range(3)]
    refs = [camera_images(k, 8, rng) for k in ks]
    disputed = np.concatenate([camera_images(k, 1, rng, flat=False) for k in ks])
    scores = {}
    for bk in (REFERENCE, FAST):
        fps = np.stack([estimate_fingerprint(r, backend=bk) for r in refs])
        res = extract_residual(disputed, sigma=2.0, wiener=True, backend=bk)
        scores[bk.dtype.name] = pce_scores(bk, bk.asarray(res), bk.asarray(disputed), bk.asarray(fps)).pce
    ref, fast = scores["float64"], scores["float32"]
    np.testing.assert_array_equal(fast > 60, ref > 60)
    assert (np.diag(ref) > 60).all() and (ref[~np.eye(3, dtype=bool)] < 60).all()
    np.testing.assert_allclose(fast, ref, rtol=1e-3, atol=1e-2)

"""Every ``camid_gpu/kernels/*.cu`` executed on the CPU against its torch twin, and the per-device self-check.

The kernels are compiled as host C++ through ``camid_gpu/kernels/host_emulation.h`` (``g++ -fopenmp``: a thread
block is an OpenMP team of blockDim threads) and launched by the same drivers and the same launch
geometry (the ``launch_plan`` beside each launcher) as on a GPU; only the launcher differs (``host_kernels.HostLauncher``
instead of CuPy). Skipped, with the reason, when no C++ compiler with OpenMP is found, unless
``CAMID_REQUIRE_HOST_KERNELS`` is set (``.ci/run`` sets it after making sure g++ is there).
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from camid_gpu._cuda import loader as cuda
from camid_gpu.mahalanobis import kernel as maha_kernel
from camid_gpu.mahalanobis import statistics
from camid_gpu.pipeline.kernels import fused_kernels, kernels_status
from camid_gpu.prnu import mihcak_kernel, residual

from conftest import HAVE_TORCH

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="torch extra not installed")

RTOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.fixture(scope="session")
def host():
    import host_kernels

    cxx, why = host_kernels.find_compiler()
    if cxx is None:
        if os.environ.get("CAMID_REQUIRE_HOST_KERNELS"):
            pytest.fail(f"CAMID_REQUIRE_HOST_KERNELS is set but {why}")
        pytest.skip(why)
    return host_kernels.load(cxx, Path(tempfile.gettempdir()) / f"camid-host-kernels-{os.getuid()}")


def twin_backend(dtype: str):
    from camid_gpu.backend import TorchBackend

    return TorchBackend("cpu", dtype=dtype, use_kernels=False)


def assert_close(got, want, rtol):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    scale = float(np.abs(want).max(initial=0.0)) or 1.0
    err = float(np.abs(got - want).max(initial=0.0)) / scale
    assert err <= rtol, f"relative error {err:.3g} > {rtol:g}"


# ---------------------------------------------------------------------------------------------
# launch geometry (pure Python: the one source both launchers use)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 37, 53), (70000, 16, 16), (2, 1, 1000)])
def test_mihcak_plan_covers_every_pixel_and_plane(shape):
    n, h, w = shape
    plan = mihcak_kernel.launch_plan(shape)
    assert sum(launch.count for launch in plan) == n
    assert [launch.first for launch in plan] == list(range(0, n, cuda.MAX_GRID_YZ))
    for launch in plan:
        gx, gy, gz = launch.grid
        assert gx * mihcak_kernel.MIHCAK_TILE >= w and gy * mihcak_kernel.MIHCAK_TILE >= h and gz == launch.count <= cuda.MAX_GRID_YZ
        assert (gx - 1) * mihcak_kernel.MIHCAK_TILE < w and (gy - 1) * mihcak_kernel.MIHCAK_TILE < h
        assert np.prod(launch.block) <= 1024 and launch.shared_mem == 0


@pytest.mark.parametrize("n_cameras", range(1, maha_kernel.MAHAL_MAX_CAMERAS + 1))
def test_mahalanobis_plan_fits_every_device(n_cameras):
    plan = maha_kernel.launch_plan((3, n_cameras, 12345), max_grid_yz=2)
    assert [launch.function for launch in plan] == ["mahalanobis_sums", "mahalanobis_counts"] * 2
    assert [launch.first for launch in plan] == [0, 0, 2, 2]
    for launch in plan:
        assert launch.block == (maha_kernel.MAHAL_THREADS, 1, 1)
        assert launch.shared_mem <= 48 * 1024  # what a kernel gets without opting in
    counts = plan[1]
    assert counts.shared_mem == counts.tile * n_cameras * 25
    # one thread's pair slots cover every (q, j) pair (the .cu file also refuses to compile otherwise)
    assert cuda.KERNEL_DEFINES["MAHAL_PAIRS_PER_THREAD"] * maha_kernel.MAHAL_THREADS >= n_cameras ** 2
    with pytest.raises(ValueError, match="cameras"):
        maha_kernel.launch_plan((1, maha_kernel.MAHAL_MAX_CAMERAS + 1, 10))


def test_compile_options_carry_every_define():
    options = cuda.compile_options()
    for name, value in cuda.KERNEL_DEFINES.items():
        assert f"-D{name}={value}" in options
    from camid_gpu.mahalanobis import FUSED_MAX_CAMERAS

    assert FUSED_MAX_CAMERAS == maha_kernel.MAHAL_MAX_CAMERAS  # more cameras fall back to the twin, not fail


# ---------------------------------------------------------------------------------------------
# mihcak_shrink.cu
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 37, 53), (2, 3, 16, 16), (1, 5, 130), (2, 40, 1), (2, 1, 33), (1, 1, 1)],
                         ids=["partial-tiles", "lead-dims-exact-tile", "thin", "one-column", "one-row", "one-pixel"])
def test_mihcak_matches_twin(host, dtype, shape):
    import torch

    from camid_gpu.prnu.residual import mihcak_shrink

    twin = twin_backend(dtype)
    rng = np.random.default_rng(11)
    coeffs = twin.asarray(rng.normal(size=shape) * 4.0)
    per_plane = twin.asarray(rng.uniform(1.0, 9.0, size=shape[:-2] + (1, 1)))
    for noise_var in (4.0, torch.tensor([2.5], dtype=coeffs.dtype), per_plane):
        got = mihcak_kernel.run_mihcak_shrink(host, coeffs, noise_var, (3, 5, 7, 9))
        want = mihcak_shrink(twin, coeffs, noise_var, (3, 5, 7, 9))
        assert got.shape == want.shape and got.dtype == want.dtype
        assert_close(got, want, RTOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mihcak_every_window_mask(host, dtype):
    from camid_gpu.prnu.residual import mihcak_shrink

    twin = twin_backend(dtype)
    rng = np.random.default_rng(12)
    coeffs = twin.asarray(rng.normal(size=(2, 21, 19)) * 4.0)
    per_plane = twin.asarray(rng.uniform(1.0, 9.0, size=(2, 1, 1)))
    subsets = [s for k in range(1, 5) for s in itertools.combinations((3, 5, 7, 9), k)]
    assert len(subsets) == 15
    for windows in subsets:
        got = mihcak_kernel.run_mihcak_shrink(host, coeffs, per_plane, windows)
        assert_close(got, mihcak_shrink(twin, coeffs, per_plane, windows), RTOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mihcak_planes_beyond_one_launch(host, dtype):
    """Planes past the grid's z limit go to further launches with a plane offset (limit lowered to 3)."""
    from camid_gpu.prnu.residual import mihcak_shrink

    twin = twin_backend(dtype)
    rng = np.random.default_rng(13)
    coeffs = twin.asarray(rng.normal(size=(7, 18, 20)) * 4.0)
    per_plane = twin.asarray(rng.uniform(1.0, 9.0, size=(7, 1, 1)))  # a wrong offset picks a wrong variance
    launcher = host.with_grid_limit(3)
    got = mihcak_kernel.run_mihcak_shrink(launcher, coeffs, per_plane, (3, 5, 7, 9))
    assert [(launch.first, launch.count) for launch in launcher.launches] == [(0, 3), (3, 3), (6, 1)]
    assert_close(got, mihcak_shrink(twin, coeffs, per_plane, (3, 5, 7, 9)), RTOL[dtype])


def test_mihcak_float64_is_exact_to_rounding(host):
    """The issue's figure: float64 agrees with the twin to ~1e-14 on partial tiles and odd sizes."""
    from camid_gpu.prnu.residual import mihcak_shrink

    twin = twin_backend("float64")
    coeffs = twin.asarray(np.random.default_rng(14).normal(size=(2, 29, 45)) * 4.0)
    got = mihcak_kernel.run_mihcak_shrink(host, coeffs, 9.0, (3, 5, 7, 9))
    assert_close(got, mihcak_shrink(twin, coeffs, 9.0, (3, 5, 7, 9)), 1e-14)


# ---------------------------------------------------------------------------------------------
# mahalanobis.cu
# ---------------------------------------------------------------------------------------------
def mahalanobis_inputs(dtype, n_images, n_cameras, n_pixels, per_camera, masked, seed=5):
    import torch

    twin = twin_backend(dtype)
    rng = np.random.default_rng(seed)
    prints = twin.asarray(rng.normal(size=(n_cameras, 2, n_pixels)) * [[[25.0], [1.0]]] + [[[120.0], [0.0]]])
    shape = (n_images, n_cameras, 2, n_pixels) if per_camera else (n_images, 2, n_pixels)
    disputed = twin.asarray(rng.normal(size=shape) * 20.0 + 110.0)
    mask = torch.as_tensor(rng.random((n_images, n_cameras, n_pixels)) < 0.8) if masked else None
    return twin, disputed, prints, mask


def assert_matches_twin(got, want, dtype):
    (n, cov, counts), (n_w, cov_w, counts_w) = got, want
    np.testing.assert_array_equal(n, n_w)
    np.testing.assert_array_equal(counts[..., 0], counts_w[..., 0])
    np.testing.assert_allclose(cov, cov_w, rtol=1e-4 if dtype == "float32" else 1e-9)
    # float64: identical; float32: the twin's float32 distances may flip a near-tie, a handful at most
    assert np.abs(counts - counts_w).max() <= (0 if dtype == "float64" else 5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_cameras,n_pixels", [(1, 1000), (2, 255), (5, 3001), (17, 700), (64, 257)])
@pytest.mark.parametrize("per_camera,masked", [(False, False), (False, True), (True, True)],
                         ids=["flat", "flat-masked", "paper-masked"])
def test_mahalanobis_matches_twin(host, dtype, n_cameras, n_pixels, per_camera, masked):
    from camid_gpu.mahalanobis import _pair_counts_generic

    n_images = 1 if n_cameras == 64 else 2  # 64 cameras: 128 emulated blocks of 256 threads per image
    twin, disputed, prints, mask = mahalanobis_inputs(dtype, n_images, n_cameras, n_pixels, per_camera, masked)
    got = maha_kernel.run_mahalanobis_counts(host, disputed, prints, mask)
    assert_matches_twin(got, _pair_counts_generic(twin, disputed, prints, mask), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mahalanobis_images_beyond_one_launch(host, dtype):
    from camid_gpu.mahalanobis import _pair_counts_generic

    twin, disputed, prints, mask = mahalanobis_inputs(dtype, 5, 3, 600, True, True, seed=6)
    launcher = host.with_grid_limit(2)
    got = maha_kernel.run_mahalanobis_counts(launcher, disputed, prints, mask)
    assert [launch.first for launch in launcher.launches] == [0, 0, 2, 2, 4, 4]
    assert_matches_twin(got, _pair_counts_generic(twin, disputed, prints, mask), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mahalanobis_unusable_cameras(host, dtype):
    """A camera with one selected pixel (no covariance) and one whose differences are constant (a
    singular covariance) are invalid: at distance +inf, in the kernel as in the twin."""
    import torch

    from camid_gpu.mahalanobis import PairStatistics, _pair_counts_generic

    twin, disputed, prints, mask = mahalanobis_inputs(dtype, 2, 4, 900, False, True, seed=8)
    mask[:, 1] = False
    mask[:, 1, 17] = True  # camera 1: a single pixel
    prints[2] = disputed[0] - torch.tensor([[3.0], [0.5]], dtype=prints.dtype)  # camera 2: constant for image 0
    got = maha_kernel.run_mahalanobis_counts(host, disputed, prints, mask)
    want = _pair_counts_generic(twin, disputed, prints, mask)
    assert got[0][0, 1] == 1 and np.isnan(got[1][0, 1]).all()
    valid = PairStatistics.from_counts(*got).valid
    assert not valid[0, 1] and not valid[0, 2] and valid[0, 0] and valid[1, 2]
    assert_matches_twin(got, want, dtype)


def test_mahalanobis_block_sums_are_deterministic_and_exact(host):
    """Pass 1 reduces in a fixed order (no float atomics): two runs agree to the bit, and the
    covariances are those of a plain float64 computation."""
    twin, disputed, prints, _ = mahalanobis_inputs("float64", 2, 3, 2500, False, False, seed=7)
    first = maha_kernel.run_mahalanobis_counts(host, disputed, prints)
    second = maha_kernel.run_mahalanobis_counts(host, disputed, prints)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    d, p = disputed.numpy(), prints.numpy()
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(first[1][i, j], np.cov(d[i] - p[j]), rtol=1e-12)
    assert (first[0] == 2500).all()


def test_emulator_refuses_what_a_gpu_refuses(host):
    import torch

    out = torch.zeros(4)
    args = (out, out, out, np.int32(1), np.int32(1), np.int32(0), np.int32(2), np.int32(0))
    for launch, message in (
        (cuda.Launch("mihcak_shrink", (1, 1, 1), (33, 32, 1), 0, 0, 1), "block"),
        (cuda.Launch("mihcak_shrink", (1, 1, 70000), (16, 16, 1), 0, 0, 1), "grid"),
        (cuda.Launch("mihcak_shrink", (1, 1, 1), (16, 16, 1), 49 * 1024, 0, 1), "shared memory"),
    ):
        with pytest.raises(RuntimeError, match=message):
            host("mihcak_shrink.cu", "mihcak_shrink_f32", launch, args)


def test_sources_refuse_to_compile_without_the_defines(host, tmp_path):
    """The constants live only in cuda.KERNEL_DEFINES: a .cu file compiled without them stops."""
    import subprocess

    import host_kernels

    cxx, _ = host_kernels.find_compiler()
    for filename in cuda.kernel_files():
        (tmp_path / filename).write_text(cuda.kernel_source(filename))
        (tmp_path / "host_emulation.h").write_text(cuda.kernel_source("host_emulation.h"))
        (tmp_path / "entry.cpp").write_text(f'#include "host_emulation.h"\n#include "{filename}"\n')
        proc = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", "-fopenmp", "-I", str(tmp_path),
                               str(tmp_path / "entry.cpp")], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "compile_options()" in proc.stderr, filename


# ---------------------------------------------------------------------------------------------
# self-check on first use per device (exercised on the CPU with the emulated kernels)
# ---------------------------------------------------------------------------------------------
def emulated(host):
    return {"mihcak_shrink": lambda c, nv, w: mihcak_kernel.run_mihcak_shrink(host, c, nv, w),
            "mahalanobis_counts": lambda d, p, m=None: maha_kernel.run_mahalanobis_counts(host, d, p, m)}


@pytest.fixture
def fresh_checks(monkeypatch):
    """A process where no self-check ran yet, where CuPy and a CUDA device seem present."""
    monkeypatch.setattr(cuda, "_CHECKS", {})
    monkeypatch.setattr(cuda, "cupy_available", lambda: True)
    monkeypatch.setattr(cuda, "_torch_cuda_available", lambda: True)


@pytest.mark.parametrize("name", sorted(cuda.KERNEL_SOURCES))
def test_self_check_verifies_correct_kernels(host, fresh_checks, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernel = {k.name: k for k in fused_kernels()}[name]
        check = cuda.self_check(kernel, "cpu", fused=emulated(host)[name])
    assert check.verified and str(check) == "verified"


def test_planted_wrong_kernel_falls_back_once_and_says_so(host, fresh_checks, monkeypatch):
    import torch

    from camid_gpu.backend import TorchBackend
    from camid_gpu.prnu.residual import mihcak_shrink

    good = emulated(host)

    def wrong_shrink(coeffs, noise_var, windows):
        out = good["mihcak_shrink"](coeffs, noise_var, windows)
        out[..., 5, 7] += 1e-3  # one wrong pixel per plane
        return out

    wrong = dataclasses.replace(residual.MIHCAK_KERNEL, launcher=wrong_shrink)
    right = dataclasses.replace(statistics.MAHALANOBIS_KERNEL, launcher=good["mahalanobis_counts"])
    monkeypatch.setattr(residual, "MIHCAK_KERNEL", wrong)
    monkeypatch.setattr(statistics, "MAHALANOBIS_KERNEL", right)
    with pytest.warns(cuda.KernelFallbackWarning, match="mihcak_shrink.*disagrees with its twin"):
        assert wrong.on("cpu") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per (process, device): not again
        assert wrong.on("cpu") is None
        assert right.on("cpu") is good["mahalanobis_counts"]
    with pytest.raises(RuntimeError, match="self-check"):
        wrong.on("cpu", required=True)

    # a backend that would launch kernels: the shrink runs on the twin, and the manifest line says so
    bk = TorchBackend("cpu", dtype="float64", use_kernels=False)
    bk.use_kernels = True
    coeffs = bk.asarray(np.random.default_rng(1).normal(size=(2, 20, 20)))
    twin = TorchBackend("cpu", dtype="float64", use_kernels=False)
    torch.testing.assert_close(mihcak_shrink(bk, coeffs, 4.0), mihcak_shrink(twin, coeffs, 4.0), rtol=0, atol=0)
    status = kernels_status(bk)
    assert status.startswith("fallback (mihcak_shrink: mihcak_shrink float32") and "relative error" in status
    assert cuda.kernel_checks() == {"mahalanobis_counts@cpu": "verified",
                                    "mihcak_shrink@cpu": f"fallback ({cuda._CHECKS[('mihcak_shrink', 'cpu')].reason})"}


def test_failing_kernel_falls_back(fresh_checks, monkeypatch):
    def broken(*args):
        raise RuntimeError("CUDA_ERROR_NO_BINARY_FOR_GPU\nmore lines")

    monkeypatch.setattr(residual, "MIHCAK_KERNEL", dataclasses.replace(residual.MIHCAK_KERNEL, launcher=broken))
    monkeypatch.setattr(statistics, "MAHALANOBIS_KERNEL",
                        dataclasses.replace(statistics.MAHALANOBIS_KERNEL, launcher=broken))
    with pytest.warns(cuda.KernelFallbackWarning) as record:
        status = kernels_status(types.SimpleNamespace(use_kernels=True, torch_device=_cpu()))
    assert len(record) == 2
    assert status == ("fallback (mahalanobis_counts: RuntimeError: CUDA_ERROR_NO_BINARY_FOR_GPU; "
                      "mihcak_shrink: RuntimeError: CUDA_ERROR_NO_BINARY_FOR_GPU)")


def test_kernels_not_used_without_cuda_kernels():
    from camid_gpu.backend import get_backend

    assert kernels_status(get_backend("numpy")) == "not used"
    assert kernels_status(get_backend("torch", device="cpu")) == "not used"


def _cpu():
    import torch

    return torch.device("cpu")

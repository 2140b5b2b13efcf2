"""The fused CUDA kernels: they compile everywhere, and on a GPU they match their generic twins.

(a) Without a GPU: every ``camid_gpu/kernels/*.cu`` is compiled to PTX by NVRTC from the ``nvidia-cuda-nvrtc``
    wheel (through ctypes), or by ``nvcc --ptx`` when the wheel is missing; the test skips only when
    neither exists. The kernels that ``camid_gpu._cuda.loader`` launches must be in the source and the PTX,
    compiled with the constants of ``loader.KERNEL_DEFINES`` (the sources define none of their own).
(b) ``@pytest.mark.gpu`` (CUDA + CuPy, skipped cleanly otherwise): fused vs generic results, and
    the DLPack hand-over being zero-copy.
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from camid_gpu._cuda import loader as cuda
from camid_gpu.mahalanobis import kernel as maha_kernel
from camid_gpu.mahalanobis.statistics import MAHALANOBIS_KERNEL
from camid_gpu.pipeline.kernels import fused_kernels
from camid_gpu.prnu import mihcak_kernel
from camid_gpu.prnu.residual import MIHCAK_KERNEL
from camid_gpu.errors import MissingExtraError

ARCH = "compute_90"
NVRTC_OPTIONS = (f"--gpu-architecture={ARCH}",) + cuda.compile_options()


# ---------------------------------------------------------------------------------------------
# (a) compilation without a GPU
# ---------------------------------------------------------------------------------------------
def find_libnvrtc() -> str | None:
    """libnvrtc inside the installed ``nvidia-cuda-nvrtc`` wheel (nvidia/cu13/lib, or the older
    nvidia/cuda_nvrtc/lib layout), or None."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = []
    for base in spec.submodule_search_locations:
        found += glob.glob(os.path.join(base, "*", "lib", "libnvrtc.so*"))
    found = sorted(p for p in found if "builtins" not in os.path.basename(p))
    return found[0] if found else None


def compile_with_nvrtc(library: str, source: str, name: str) -> str:
    """PTX of ``source`` through NVRTC's C API; AssertionError with the compile log on failure."""
    lib = ctypes.CDLL(library)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    program = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None)
    assert rc == 0, f"nvrtcCreateProgram({name}): {lib.nvrtcGetErrorString(rc).decode()}"
    try:
        options = (ctypes.c_char_p * len(NVRTC_OPTIONS))(*(o.encode() for o in NVRTC_OPTIONS))
        rc = lib.nvrtcCompileProgram(program, len(NVRTC_OPTIONS), options)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(program, log)
        assert rc == 0, f"NVRTC failed on {name} ({lib.nvrtcGetErrorString(rc).decode()}):\n{log.value.decode()}"
        lib.nvrtcGetPTXSize(program, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        assert lib.nvrtcGetPTX(program, ptx) == 0
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def compile_with_nvcc(nvcc: str, path: str, tmp_path) -> str:
    out = tmp_path / (os.path.basename(path) + ".ptx")
    proc = subprocess.run([nvcc, "--ptx", f"-arch={ARCH}", *cuda.compile_options(), path, "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"nvcc failed on {path}:\n{proc.stdout}\n{proc.stderr}"
    return out.read_text()


def compile_to_ptx(filename: str, tmp_path) -> str:
    source = cuda.kernel_source(filename)
    library = find_libnvrtc()
    if library is not None:
        return compile_with_nvrtc(library, source, filename)
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        if os.environ.get("CI"):  # CI installs the wheel: a kernel must never go uncompiled there
            pytest.fail("CI: neither the nvidia-cuda-nvrtc wheel nor nvcc is available to compile kernels")
        pytest.skip("neither the nvidia-cuda-nvrtc wheel nor nvcc is installed")
    path = tmp_path / filename
    path.write_text(source)
    return compile_with_nvcc(nvcc, str(path), tmp_path)


def test_kernel_files_are_shipped():
    files = cuda.kernel_files()
    assert "mihcak_shrink.cu" in files and "mahalanobis.cu" in files
    assert {f for f, _ in cuda.KERNEL_SOURCES.values()} <= set(files)


@pytest.mark.parametrize("filename", cuda.kernel_files())
def test_kernel_compiles_to_ptx(filename, tmp_path):
    ptx = compile_to_ptx(filename, tmp_path)
    entries = set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx))
    assert entries, f"{filename}: no kernel in the PTX"
    expected = {fn for f, fns in cuda.KERNEL_SOURCES.values() if f == filename for fn in fns}
    assert expected <= entries, f"{filename}: PTX lacks {sorted(expected - entries)} (has {sorted(entries)})"


@pytest.mark.parametrize("name", sorted(cuda.KERNEL_SOURCES))
def test_expected_kernels_are_in_the_source(name):
    filename, functions = cuda.KERNEL_SOURCES[name]
    source = cuda.kernel_source(filename)
    for function in functions:
        pattern = r'extern\s+"C"\s+__global__\s+void\s+(__launch_bounds__\([^)]*\)\s+)?' + function + r"\s*\("
        assert re.search(pattern, source), f"{filename} has no extern \"C\" __global__ {function}"


# ---------------------------------------------------------------------------------------------
# host-side logic that needs no GPU
# ---------------------------------------------------------------------------------------------
def test_fused_kernel_without_cupy_is_none_and_required_raises(monkeypatch):
    monkeypatch.setattr(cuda, "_import_cupy", lambda: None)
    assert MIHCAK_KERNEL.on() is None
    assert MAHALANOBIS_KERNEL.on() is None
    with pytest.raises(MissingExtraError) as info:
        MAHALANOBIS_KERNEL.on(required=True)
    assert info.value.extra == "cuda" and info.value.package == "cupy"
    with pytest.raises(MissingExtraError, match=r"camid_gpu\[cuda\]"):
        cuda.require_cupy()


def test_every_fused_kernel_has_a_source():
    assert [k.name for k in fused_kernels()] == sorted(cuda.KERNEL_SOURCES)


def test_torch_cpu_backend_has_no_kernels():
    pytest.importorskip("torch")
    from camid_gpu.backend import get_backend, host_kernels

    bk = get_backend("torch", device="cpu")
    assert bk.cuda_kernel_device() is None and bk.host_kernel(host_kernels.mihcak_shrink) is None


def test_window_mask():
    assert mihcak_kernel.window_mask((3, 5, 7, 9)) == 0b11110
    assert mihcak_kernel.window_mask((5,)) == 0b100
    for bad in ((4,), (11,), (1,), ()):
        with pytest.raises(ValueError):
            mihcak_kernel.window_mask(bad)


def test_covariance_from_sums_matches_numpy():
    rng = np.random.default_rng(3)
    dif = rng.normal(size=(500, 2)) * [40.0, 0.5] + [120.0, 0.01]
    sums = np.array([len(dif), dif[:, 0].sum(), dif[:, 1].sum(), (dif[:, 0] ** 2).sum(), (dif[:, 1] ** 2).sum(),
                     (dif[:, 0] * dif[:, 1]).sum()])
    n, cov = maha_kernel._covariance_from_sums(sums[None])
    assert n[0] == 500
    np.testing.assert_allclose(cov[0], np.cov(dif.T), rtol=1e-9)
    n, cov = maha_kernel._covariance_from_sums(np.array([[1.0, 2.0, 3.0, 4.0, 9.0, 6.0]]))
    assert n[0] == 1 and np.isnan(cov).all()  # one pixel: no covariance, marked invalid downstream


# ---------------------------------------------------------------------------------------------
# (b) on a GPU
# ---------------------------------------------------------------------------------------------
def _gpu_ready() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available()) and cuda.cupy_available()


needs_gpu = pytest.mark.skipif(not _gpu_ready(), reason="needs torch with CUDA and CuPy")


@pytest.fixture(scope="module")
def gpu_backends():
    from camid_gpu.backend import TorchBackend

    return {dtype: (TorchBackend("cuda", dtype=dtype), TorchBackend("cuda", dtype=dtype, use_kernels=False))
            for dtype in ("float32", "float64")}


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 37, 53), (2, 3, 16, 16), (1, 5, 130)])
def test_fused_mihcak_matches_twin(gpu_backends, dtype, shape):
    import torch

    from camid_gpu.prnu.residual import mihcak_shrink

    fused_bk, twin_bk = gpu_backends[dtype]
    assert MIHCAK_KERNEL.on(fused_bk.cuda_kernel_device()) is not None and twin_bk.cuda_kernel_device() is None
    rng = np.random.default_rng(11)
    coeffs = fused_bk.asarray(rng.normal(size=shape) * 4.0)
    per_plane = torch.as_tensor(rng.uniform(1.0, 9.0, size=shape[:-2] + (1, 1)), device="cuda",
                                dtype=coeffs.dtype)
    for noise_var in (4.0, per_plane):
        for windows in ((3, 5, 7, 9), (5,), (9, 3)):
            got = mihcak_shrink(fused_bk, coeffs, noise_var, windows)
            want = mihcak_shrink(twin_bk, coeffs, noise_var, windows)
            assert got.shape == want.shape and got.dtype == want.dtype
            rtol = 1e-5 if dtype == "float32" else 1e-12
            torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * float(want.abs().max()))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_cameras,per_camera,masked", [(1, False, False), (4, False, True), (4, True, True),
                                                         (17, False, True), (64, False, False)])
def test_fused_mahalanobis_matches_twin(gpu_backends, dtype, n_cameras, per_camera, masked):
    import torch

    from camid_gpu.mahalanobis import pair_statistics

    fused_bk, twin_bk = gpu_backends[dtype]
    assert MAHALANOBIS_KERNEL.on(fused_bk.cuda_kernel_device()) is not None
    rng = np.random.default_rng(5)
    n_images, n_pixels = 3, 3001
    prints = fused_bk.asarray(rng.normal(size=(n_cameras, 2, n_pixels)) * [[[25.0], [1.0]]] + [[[120.0], [0.0]]])
    shape = (n_images, n_cameras, 2, n_pixels) if per_camera else (n_images, 2, n_pixels)
    disputed = fused_bk.asarray(rng.normal(size=shape) * 20.0 + 110.0)
    mask = torch.as_tensor(rng.random((n_images, n_cameras, n_pixels)) < 0.8, device="cuda") if masked else None
    got = pair_statistics(fused_bk, disputed, prints, mask)
    want = pair_statistics(twin_bk, disputed, prints, mask)
    np.testing.assert_array_equal(got.selected, want.selected)
    np.testing.assert_array_equal(got.pixels, want.pixels)
    np.testing.assert_array_equal(got.valid, want.valid)
    np.testing.assert_allclose(got.covariance, want.covariance, rtol=1e-4 if dtype == "float32" else 1e-9)
    # float64: identical up to near-ties of 1e-15; float32: the twin's distances carry ~1e-7 relative
    # error, so a pixel whose two distances are that close may flip (a handful in 3000)
    tolerance = 0 if dtype == "float64" else 5
    for name in ("satisfied", "intensity_satisfied", "prnu_satisfied"):
        assert np.abs(getattr(got, name) - getattr(want, name)).max() <= tolerance, name


@pytest.mark.gpu
@needs_gpu
def test_dlpack_round_trip_is_zero_copy():
    import torch

    tensor = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4)
    view = cuda.to_cupy(tensor)
    assert view.data.ptr == tensor.data_ptr()
    assert view.shape == (3, 4)
    view[1, 2] = -7.0  # a write through CuPy is seen by torch: the same memory
    torch.cuda.synchronize()
    assert float(tensor[1, 2]) == -7.0
    back = torch.from_dlpack(view)
    assert back.data_ptr() == tensor.data_ptr()


@pytest.mark.gpu
@needs_gpu
def test_fused_kernels_compile_once_per_device():
    import torch

    device = torch.cuda.current_device()
    first = cuda.compiled_module("mahalanobis.cu", device)
    assert cuda.compiled_module("mahalanobis.cu", device) is first

"""Fused CUDA kernels (``kernels/*.cu``) through CuPy, for the torch backend on CUDA.

The CUDA C sources ship inside the package ``camid_gpu.kernels`` (the repository's ``kernels/``
folder) and are read with :mod:`importlib.resources`. Each file is compiled by NVRTC through
``cupy.RawModule`` the first time one of its kernels runs on a device, once per process and device
(the cache is guarded by a lock, so concurrent first calls compile once).

Tensors cross from torch to CuPy through DLPack (:func:`to_cupy`): no copy, same memory. Kernels are
launched on torch's *current* stream of the tensors' device, so they are ordered with the torch work
around them without any synchronisation. Outputs are allocated by torch.

One source for everything the sources and their launchers share: the compile-time constants
(:data:`KERNEL_DEFINES`, passed as ``-D`` options; the ``.cu`` files define none) and the launch
geometry (:func:`launch_plan`). The drivers (:func:`run_mihcak_shrink`, :func:`run_mahalanobis_counts`)
take a :class:`Launcher`: CuPy here, a host emulation of the same sources in the tests
(``kernels/host_emulation.h``), which run every kernel on the CPU against its twin.

Self-check: the first time a process uses a fused kernel on a device (:func:`get_fused` with
``device``), it runs the kernel and its twin on a small deterministic input (:func:`self_check`); on a
mismatch it warns once (:class:`KernelFallbackWarning`) and the twin is used. The run manifest records
the outcome (:func:`kernels_status`: "verified", "fallback (reason)" or "not used").

Public API
----------
``get_fused(name, *, device=None, required=False)``
    The fused implementation of ``name`` or None. None when CuPy is not installed (or does not
    import), when torch sees no CUDA device, for a name without a fused kernel, or when the kernel
    failed its self-check on ``device``: callers then use the generic "twin" written with the
    backend primitives. With ``required=True`` each of those is an error instead
    (:class:`~camid_gpu.errors.MissingExtraError` for a missing CuPy).
``mihcak_shrink(coeffs, noise_var, windows)``
    ``kernels/mihcak_shrink.cu``; same contract as :func:`camid_gpu.residual.mihcak_shrink`.
``mahalanobis_counts(disputed, fingerprints, mask=None)``
    ``kernels/mahalanobis.cu``; same contract as the generic twin in :mod:`camid_gpu.mahalanobis`.
``launch_plan(name, shape)``, ``compile_options()``, ``self_check(name, device)``, ``kernels_status(bk)``,
``require_cupy()``, ``cupy_available()``, ``kernel_source(filename)``, ``compiled_function(...)``,
``to_cupy(tensor)``.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.resources
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from camid_gpu.errors import MissingExtraError

#: the package that holds the .cu sources
KERNEL_PACKAGE = "camid_gpu.kernels"

#: source file and ``extern "C"`` kernels (one per dtype) behind each fused name
KERNEL_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "mihcak_shrink": ("mihcak_shrink.cu", ("mihcak_shrink_f32", "mihcak_shrink_f64")),
    "mahalanobis_counts": (
        "mahalanobis.cu",
        ("mahalanobis_sums_f32", "mahalanobis_sums_f64", "mahalanobis_counts_f32", "mahalanobis_counts_f64"),
    ),
}

#: Compile-time constants of ``kernels/*.cu``, passed to NVRTC (and to the host emulation the tests
#: build) as ``-D`` options, so that the sources and their launchers cannot disagree: the ``.cu``
#: files only check that they are defined.
KERNEL_DEFINES: dict[str, int] = {
    "MIHCAK_TILE": 16,  # a block shrinks a TILE x TILE output tile
    "MIHCAK_HALO": 4,  # border staged around it: the radius of the largest (9x9) window
    "MAHAL_THREADS": 256,  # threads per block of both Mahalanobis kernels
    "MAHAL_MAX_CAMERAS": 64,  # most cameras the fused Mahalanobis kernel takes
    "MAHAL_PAIRS_PER_THREAD": 16,  # (q, j) camera pairs one thread owns: MAX_CAMERAS^2 / THREADS
}
MIHCAK_TILE = KERNEL_DEFINES["MIHCAK_TILE"]
MIHCAK_MAX_RADIUS = KERNEL_DEFINES["MIHCAK_HALO"]
MAHAL_THREADS = KERNEL_DEFINES["MAHAL_THREADS"]
MAHAL_MAX_CAMERAS = KERNEL_DEFINES["MAHAL_MAX_CAMERAS"]

#: NVRTC options besides the defines. No headers are included by the sources, so no include path.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17",)

# pass 2 stages tile*C pixels x cameras in shared memory: 25 bytes each, about 25 KiB at this size
_MAHAL_TILE_ELEMENTS = 1024
#: gridDim.y and gridDim.z limit of every CUDA device
MAX_GRID_YZ = 65535


def compile_options() -> tuple[str, ...]:
    """NVRTC options of every ``kernels/*.cu``: :data:`COMPILE_OPTIONS` and one ``-DNAME=value`` per
    :data:`KERNEL_DEFINES` entry."""
    return COMPILE_OPTIONS + tuple(f"-D{name}={value}" for name, value in KERNEL_DEFINES.items())


_MODULES: dict[tuple[str, int], Any] = {}
_FUNCTIONS: dict[tuple[str, str, int], Any] = {}
_MODULES_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------
# CuPy, sources, compilation
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _import_cupy() -> Any | None:
    try:
        return importlib.import_module("cupy")
    except Exception:  # noqa: BLE001 - an installed CuPy for another CUDA can fail in many ways
        return None


def cupy_available() -> bool:
    """True when CuPy is installed and imports (never raises)."""
    return _import_cupy() is not None


def require_cupy(feature: str = "the fused CUDA kernels") -> Any:
    """The ``cupy`` module, or :class:`MissingExtraError` naming the ``cuda`` extra."""
    cp = _import_cupy()
    if cp is None:
        raise MissingExtraError("cupy", "cuda", feature)
    return cp


def _torch() -> Any:
    from camid_gpu.backend import import_optional

    return import_optional("torch", "torch", "the fused CUDA kernels")


def _torch_cuda_available() -> bool:
    from camid_gpu.backend import torch_cuda_available

    return torch_cuda_available()


def kernel_source(filename: str) -> str:
    """The text of ``kernels/<filename>`` as installed in the package ``camid_gpu.kernels``."""
    return importlib.resources.files(KERNEL_PACKAGE).joinpath(filename).read_text(encoding="utf-8")


def kernel_files() -> list[str]:
    """Names of every ``.cu`` file shipped in ``camid_gpu.kernels``, sorted."""
    root = importlib.resources.files(KERNEL_PACKAGE)
    return sorted(entry.name for entry in root.iterdir() if entry.name.endswith(".cu"))


def compiled_module(filename: str, device_index: int) -> Any:
    """``cupy.RawModule`` of ``kernels/<filename>`` for CUDA device ``device_index`` (cached)."""
    key = (filename, int(device_index))
    module = _MODULES.get(key)
    if module is not None:
        return module
    cp = require_cupy()
    with _MODULES_LOCK:
        module = _MODULES.get(key)
        if module is None:
            with cp.cuda.Device(device_index):
                module = cp.RawModule(code=kernel_source(filename), options=compile_options())
                # compile and load now, under the lock and on the right device, not at first launch
                module.compile()
            _MODULES[key] = module
    return module


def compiled_function(filename: str, function: str, device_index: int) -> Any:
    """The ``cupy.RawKernel`` ``function`` of ``kernels/<filename>`` on device ``device_index`` (cached)."""
    key = (filename, function, int(device_index))
    kernel = _FUNCTIONS.get(key)
    if kernel is None:
        module = compiled_module(filename, device_index)
        cp = require_cupy()
        with _MODULES_LOCK, cp.cuda.Device(device_index):
            kernel = _FUNCTIONS.get(key)
            if kernel is None:
                kernel = module.get_function(function)
                _FUNCTIONS[key] = kernel
    return kernel


def to_cupy(tensor: Any) -> Any:
    """A CuPy view of a CUDA torch tensor through DLPack: no copy, the same device memory."""
    cp = require_cupy()
    return cp.from_dlpack(tensor.detach())


@contextlib.contextmanager
def _torch_stream(device: Any) -> Iterator[None]:
    """Make CuPy launch on torch's current stream of ``device`` (ordered with torch's work)."""
    cp = require_cupy()
    torch = _torch()
    stream = torch.cuda.current_stream(device)
    with cp.cuda.Device(device.index), cp.cuda.ExternalStream(stream.cuda_stream):
        yield


def _suffix(dtype: Any) -> str:
    torch = _torch()
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"the fused kernels take float32 or float64 tensors, got {dtype}")


def _check_cuda(name: str, tensor: Any) -> None:
    torch = _torch()
    if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cuda":
        where = tensor.device if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{name}: the fused kernels take CUDA torch tensors, got {where}")


# ---------------------------------------------------------------------------------------------
# launch geometry (the one source of it) and launchers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """One kernel launch: ``function`` (the ``extern "C"`` name without its ``_f32``/``_f64``
    suffix), ``grid`` and ``block`` dimensions, dynamic ``shared_mem`` bytes, the ``first`` plane or
    image it covers and their ``count``, and (Mahalanobis pass 2) the pixels per ``tile``."""

    function: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int
    first: int
    count: int
    tile: int = 0


def launch_plan(name: str, shape: Sequence[int], *, max_grid_yz: int = MAX_GRID_YZ) -> tuple[Launch, ...]:
    """Every launch the fused ``name`` makes, in order, for a problem of ``shape``.

    The single source of grid, block and shared-memory sizes: the CuPy launchers below and the
    host emulation the tests run on the CPU both take their geometry from here.

    Parameters
    ----------
    name : "mihcak_shrink" with ``shape = (planes, h, w)``, or "mahalanobis_counts" with
        ``shape = (images, cameras, pixels)``; for the latter the launches alternate pass 1
        (``mahalanobis_sums``) and pass 2 (``mahalanobis_counts``) per chunk of images.
    max_grid_yz : the device's gridDim.y/z limit (65535 on every CUDA device); planes or images
        beyond it go to further launches (``first`` is passed to the kernel as its offset).
    """
    if name == "mihcak_shrink":
        n_planes, h, w = (int(v) for v in shape)
        grid_x, grid_y = math.ceil(w / MIHCAK_TILE), math.ceil(h / MIHCAK_TILE)
        if grid_y > max_grid_yz:
            raise ValueError(f"mihcak_shrink: planes of {h} rows exceed the grid limit ({max_grid_yz} tiles)")
        return tuple(Launch("mihcak_shrink", (grid_x, grid_y, min(max_grid_yz, n_planes - first)),
                            (MIHCAK_TILE, MIHCAK_TILE, 1), 0, first, min(max_grid_yz, n_planes - first))
                     for first in range(0, n_planes, max_grid_yz))
    if name == "mahalanobis_counts":
        n_images, n_cameras, n_pixels = (int(v) for v in shape)
        if not 1 <= n_cameras <= MAHAL_MAX_CAMERAS:  # cameras are gridDim.y of pass 1
            raise ValueError(f"the fused Mahalanobis kernel takes 1 to {MAHAL_MAX_CAMERAS} cameras, got {n_cameras}")
        blocks_sums = max(1, min(math.ceil(n_pixels / MAHAL_THREADS), 64))
        tile = max(1, _MAHAL_TILE_ELEMENTS // n_cameras)
        blocks_counts = max(1, min(math.ceil(n_pixels / tile), 1024))
        shared = tile * n_cameras * (3 * 8 + 1)  # three double distances and one selection flag each
        plan = []
        for first in range(0, n_images, max_grid_yz):
            count = min(max_grid_yz, n_images - first)
            plan.append(Launch("mahalanobis_sums", (blocks_sums, n_cameras, count), (MAHAL_THREADS, 1, 1), 0,
                               first, count))
            plan.append(Launch("mahalanobis_counts", (blocks_counts, count, 1), (MAHAL_THREADS, 1, 1), shared,
                               first, count, tile))
        return tuple(plan)
    raise KeyError(f"no fused kernel named {name!r}; known: {sorted(KERNEL_SOURCES)}")


class Launcher(Protocol):
    """Runs one :class:`Launch` of ``kernels/<filename>``'s ``function`` with ``args``: torch
    tensors (contiguous; passed as pointers), ``np.int32`` and ``np.int64`` scalars, in the
    kernel's parameter order. ``max_grid_yz`` is the device's grid limit."""

    max_grid_yz: int

    def __call__(self, filename: str, function: str, launch: Launch, args: Sequence[Any]) -> None: ...


class CupyLauncher:
    """Launches through CuPy (NVRTC-compiled, cached) on torch's current stream of ``device``."""

    max_grid_yz = MAX_GRID_YZ

    def __init__(self, device: Any):
        self.device = device

    def __call__(self, filename: str, function: str, launch: Launch, args: Sequence[Any]) -> None:
        torch = _torch()
        kernel = compiled_function(filename, function, self.device.index)
        with _torch_stream(self.device):
            native = tuple(to_cupy(a) if isinstance(a, torch.Tensor) else a for a in args)
            kernel(launch.grid, launch.block, native, shared_mem=launch.shared_mem)


# ---------------------------------------------------------------------------------------------
# mihcak_shrink
# ---------------------------------------------------------------------------------------------
def window_mask(windows: Sequence[int]) -> int:
    """Bit ``r`` set for each ``(2r+1) x (2r+1)`` window; windows must be odd, 3..9, at least one."""
    mask = 0
    for size in windows:
        size = int(size)
        if size % 2 != 1 or not 3 <= size <= 2 * MIHCAK_MAX_RADIUS + 1:
            raise ValueError(f"the fused mihcak_shrink takes odd windows from 3 to 9, got {tuple(windows)}")
        mask |= 1 << (size // 2)
    if mask == 0:
        raise ValueError("mihcak_shrink needs at least one window")
    return mask


def mihcak_shrink(coeffs: Any, noise_var: float | Any, windows: Sequence[int] = (3, 5, 7, 9)) -> Any:
    """Fused Mihcak shrink of CUDA planes; the contract of :func:`camid_gpu.residual.mihcak_shrink`.

    Parameters
    ----------
    coeffs : torch.Tensor (..., h, w), float32 or float64, on CUDA (any leading shape).
    noise_var : a float, a one-element tensor, or a tensor broadcasting to (..., 1, 1): one
        variance per plane (as WienerInDFT's per-image ``sigma**2``).
    windows : odd box sizes from 3 to 9.

    Returns
    -------
    torch.Tensor shaped and typed like ``coeffs``:
    ``coeffs * nv / (v + nv)``, ``v = min_w max(0, boxmean_w(coeffs**2) - nv)`` (zero-padded means).
    """
    _check_cuda("coeffs", coeffs)
    return run_mihcak_shrink(CupyLauncher(coeffs.device), coeffs, noise_var, windows)


def run_mihcak_shrink(launcher: Launcher, coeffs: Any, noise_var: float | Any,
                      windows: Sequence[int] = (3, 5, 7, 9)) -> Any:
    """:func:`mihcak_shrink` through any :class:`Launcher` (tensors on the launcher's device)."""
    torch = _torch()
    if coeffs.ndim < 2:
        raise ValueError(f"coeffs: expected (..., h, w), got shape {tuple(coeffs.shape)}")
    suffix = _suffix(coeffs.dtype)
    mask = window_mask(windows)
    lead, (h, w) = tuple(coeffs.shape[:-2]), tuple(coeffs.shape[-2:])
    planes = coeffs.detach().contiguous().reshape(-1, h, w)
    n_planes = planes.shape[0]

    if isinstance(noise_var, (int, float, np.floating, np.integer)):
        nv = torch.full((1,), float(noise_var), dtype=coeffs.dtype, device=coeffs.device)
        per_plane = 0
    else:
        nv = torch.as_tensor(noise_var, device=coeffs.device).to(coeffs.dtype)
        if nv.numel() == 1:
            nv = nv.reshape(1).contiguous()
            per_plane = 0
        else:
            try:
                nv = torch.broadcast_to(nv, lead + (1, 1))
            except RuntimeError as exc:
                raise ValueError(f"noise_var of shape {tuple(nv.shape)} is neither a scalar nor one value "
                                 f"per plane of coeffs {tuple(coeffs.shape)}") from exc
            nv = nv.reshape(n_planes).contiguous()
            per_plane = 1

    out = torch.empty_like(planes)
    if out.numel() == 0:
        return out.reshape(coeffs.shape)
    for launch in launch_plan("mihcak_shrink", (n_planes, h, w), max_grid_yz=launcher.max_grid_yz):
        launcher("mihcak_shrink.cu", f"{launch.function}_{suffix}", launch,
                 (planes, nv, out, np.int32(h), np.int32(w), np.int32(per_plane), np.int32(mask),
                  np.int32(launch.first)))
    return out.reshape(coeffs.shape)


# ---------------------------------------------------------------------------------------------
# mahalanobis_counts
# ---------------------------------------------------------------------------------------------
def _check_mahalanobis_inputs(disputed: Any, fingerprints: Any, mask: Any | None) -> tuple[int, int, int]:
    if fingerprints.ndim != 3 or fingerprints.shape[1] != 2:
        raise ValueError(f"fingerprints: expected (C, 2, P), got shape {tuple(fingerprints.shape)}")
    n_cameras, _, n_pixels = fingerprints.shape
    if disputed.ndim == 3:
        ok = disputed.shape[1:] == (2, n_pixels)
    else:
        ok = disputed.ndim == 4 and disputed.shape[1:] == (n_cameras, 2, n_pixels)
    if not ok:
        raise ValueError(f"disputed: expected (D, 2, {n_pixels}) or (D, {n_cameras}, 2, {n_pixels}), "
                         f"got shape {tuple(disputed.shape)}")
    if disputed.dtype != fingerprints.dtype:
        raise TypeError(f"disputed ({disputed.dtype}) and fingerprints ({fingerprints.dtype}) differ in dtype")
    if disputed.device != fingerprints.device:
        raise ValueError(f"disputed ({disputed.device}) and fingerprints ({fingerprints.device}) are on "
                         f"different devices")
    n_images = disputed.shape[0]
    if mask is not None:
        if tuple(mask.shape) != (n_images, n_cameras, n_pixels):
            raise ValueError(f"mask: expected ({n_images}, {n_cameras}, {n_pixels}), got shape {tuple(mask.shape)}")
    if n_cameras > MAHAL_MAX_CAMERAS:
        raise ValueError(f"the fused Mahalanobis kernel takes at most {MAHAL_MAX_CAMERAS} cameras, got {n_cameras}")
    return n_images, n_cameras, n_pixels


def mahalanobis_counts(disputed: Any, fingerprints: Any, mask: Any | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused pair statistics of the Mahalanobis classifier (``kernels/mahalanobis.cu``).

    Parameters
    ----------
    disputed : torch.Tensor (D, 2, P) or (D, C, 2, P) (one trace per camera, "paper" mode); CUDA,
        float32 or float64; component 0 is I0, 1 is the PRNU.
    fingerprints : torch.Tensor (C, 2, P), same device and dtype; C <= 64.
    mask : optional bool/uint8 tensor (D, C, P): pixel p takes part for camera j.

    Returns
    -------
    The contract of the generic twin ``camid_gpu.mahalanobis._pair_counts_generic``:
    ``n`` (D, C) int64 pixels behind each covariance; ``cov`` (D, C, 2, 2) float64 unbiased
    covariances of ``disputed - fingerprint``; ``counts`` (D, C, C, 4) int64 per (d, q, j): pixels
    selected for both q and j, and among them those with MD_q <= MD_j (full 2x2 form), with the I0
    component alone closer-or-equal, and with the PRNU component alone closer-or-equal.
    """
    _check_cuda("disputed", disputed)
    _check_cuda("fingerprints", fingerprints)
    if mask is not None:
        _check_cuda("mask", mask)
    return run_mahalanobis_counts(CupyLauncher(disputed.device), disputed, fingerprints, mask)


def run_mahalanobis_counts(launcher: Launcher, disputed: Any, fingerprints: Any, mask: Any | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mahalanobis_counts` through any :class:`Launcher` (tensors on the launcher's device)."""
    torch = _torch()
    from camid_gpu.mahalanobis import quadratic_coefficients  # the single rule for inverses and validity

    n_images, n_cameras, n_pixels = _check_mahalanobis_inputs(disputed, fingerprints, mask)
    suffix = _suffix(disputed.dtype)
    device = disputed.device
    per_camera = 1 if disputed.ndim == 4 else 0
    traces = disputed.detach().contiguous()
    prints = fingerprints.detach().contiguous()
    if mask is None:
        flags = torch.zeros((1,), dtype=torch.uint8, device=device)  # never read (has_mask = 0)
        has_mask = 0
    else:
        flags = mask.detach().to(torch.uint8).contiguous()
        has_mask = 1

    n_out = np.zeros((n_images, n_cameras), dtype=np.int64)
    cov_out = np.full((n_images, n_cameras, 2, 2), np.nan)
    counts_out = np.zeros((n_images, n_cameras, n_cameras, 4), dtype=np.int64)
    if n_images == 0 or n_pixels == 0:
        return n_out, cov_out, counts_out

    plan = launch_plan("mahalanobis_counts", (n_images, n_cameras, n_pixels), max_grid_yz=launcher.max_grid_yz)
    for sums_launch, counts_launch in zip(plan[0::2], plan[1::2]):
        first, last = sums_launch.first, sums_launch.first + sums_launch.count
        t = traces[first:last]
        m = flags[first:last] if has_mask else flags
        partial = torch.zeros((sums_launch.count, n_cameras, sums_launch.grid[0], 6), dtype=torch.float64,
                              device=device)
        launcher("mahalanobis.cu", f"{sums_launch.function}_{suffix}", sums_launch,
                 (t, prints, m, partial, np.int32(n_cameras), np.int64(n_pixels), np.int32(per_camera),
                  np.int32(has_mask)))
        sums = partial.sum(dim=2).cpu().numpy()  # (chunk, C, 6) float64; waits for the kernel
        n, cov = _covariance_from_sums(sums)
        coef = torch.as_tensor(quadratic_coefficients(n, cov), dtype=torch.float64, device=device).contiguous()
        counts = torch.zeros((counts_launch.count, n_cameras, n_cameras, 4), dtype=torch.int64, device=device)
        launcher("mahalanobis.cu", f"{counts_launch.function}_{suffix}", counts_launch,
                 (t, prints, m, coef, counts, np.int32(n_cameras), np.int64(n_pixels), np.int32(per_camera),
                  np.int32(has_mask), np.int32(counts_launch.tile)))
        n_out[first:last] = n
        cov_out[first:last] = cov
        counts_out[first:last] = counts.cpu().numpy()
    return n_out, cov_out, counts_out


def _covariance_from_sums(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(…, 6) float64 sums ``n, Σdx, Σdy, Σdx², Σdy², Σdxdy`` -> (n int64, unbiased 2x2 covariances).

    Covariances of fewer than two pixels are NaN (they are then marked invalid).
    """
    n = sums[..., 0]
    safe_n = np.maximum(n, 1.0)
    sxx = sums[..., 3] - sums[..., 1] * sums[..., 1] / safe_n
    syy = sums[..., 4] - sums[..., 2] * sums[..., 2] / safe_n
    sxy = sums[..., 5] - sums[..., 1] * sums[..., 2] / safe_n
    denom = np.where(n >= 2, n - 1.0, np.nan)
    cov = np.stack([np.stack([sxx, sxy], -1), np.stack([sxy, syy], -1)], -2) / denom[..., None, None]
    return np.rint(n).astype(np.int64), cov


# ---------------------------------------------------------------------------------------------
# self-check: the first use per (process, device) compares every kernel with its twin
# ---------------------------------------------------------------------------------------------
class KernelFallbackWarning(RuntimeWarning):
    """A fused kernel disagreed with its twin (or failed) on this device; the twin is used instead."""


@dataclass(frozen=True)
class KernelCheck:
    """Outcome of :func:`self_check` for one fused kernel on one device."""

    name: str
    device: str
    verified: bool
    reason: str = ""

    def __str__(self) -> str:
        return "verified" if self.verified else f"fallback ({self.reason})"


_CHECKS: dict[tuple[str, str], KernelCheck] = {}
_CHECKS_LOCK = threading.Lock()
#: the deterministic self-check inputs are drawn from this seed
SELF_CHECK_SEED = 20240611


def _mismatch(got: Any, want: Any, rtol: float) -> float | None:
    """Largest error of ``got`` relative to ``max|want|`` when it exceeds ``rtol`` (or NaN appears)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
    err = float(np.abs(got - want).max(initial=0.0)) / scale
    return err if not err <= rtol else None  # "not <=" also catches NaN


def _check_mihcak_shrink(fused: Callable[..., Any], device: Any) -> str | None:
    """Mismatch description, or None when ``fused`` matches the twin in both dtypes."""
    from camid_gpu.backend import TorchBackend
    from camid_gpu.residual import mihcak_shrink as shrink

    rng = np.random.default_rng(SELF_CHECK_SEED)
    coeffs = rng.normal(size=(3, 37, 53)) * 4.0  # partial tiles on both axes, odd sizes
    per_plane = rng.uniform(1.0, 9.0, size=(3, 1, 1))
    for dtype, rtol in (("float32", 1e-5), ("float64", 1e-12)):
        twin = TorchBackend(str(device), dtype=dtype, use_kernels=False)
        c, nv = twin.asarray(coeffs), twin.asarray(per_plane)
        for noise_var, windows in ((4.0, (3, 5, 7, 9)), (nv, (5,)), (nv, (9, 3))):
            got = twin.to_numpy(fused(c, noise_var, windows))
            want = twin.to_numpy(shrink(twin, c, noise_var, windows))
            err = _mismatch(got, want, rtol)
            if err is not None:
                per = "per-plane" if noise_var is nv else "scalar"
                return (f"mihcak_shrink {dtype}, windows {windows}, {per} noise variance: relative error "
                        f"{err:.3g} > {rtol:g}")
    return None


def _check_mahalanobis_counts(fused: Callable[..., Any], device: Any) -> str | None:
    """Mismatch description, or None when ``fused`` matches the twin in both dtypes and modes."""
    torch = _torch()
    from camid_gpu.backend import TorchBackend
    from camid_gpu.mahalanobis import _pair_counts_generic

    rng = np.random.default_rng(SELF_CHECK_SEED)
    n_images, n_cameras, n_pixels = 2, 5, 1201  # pixels not a multiple of the block
    prints = rng.normal(size=(n_cameras, 2, n_pixels)) * [[[25.0], [1.0]]] + [[[120.0], [0.0]]]
    flat = rng.normal(size=(n_images, 2, n_pixels)) * 20.0 + 110.0
    paper = rng.normal(size=(n_images, n_cameras, 2, n_pixels)) * 20.0 + 110.0
    selection = rng.random((n_images, n_cameras, n_pixels)) < 0.8
    # float32 distances carry ~1e-7 relative error: a near-tie may flip, a handful in this many pixels
    for dtype, cov_rtol, flips in (("float32", 1e-4, 5), ("float64", 1e-9, 1)):
        twin = TorchBackend(str(device), dtype=dtype, use_kernels=False)
        p = twin.asarray(prints)
        for mode, disputed, masked in (("flat", flat, False), ("paper", paper, True)):
            t = twin.asarray(disputed)
            mask = torch.as_tensor(selection, device=twin.torch_device) if masked else None
            n, cov, counts = fused(t, p, mask)
            n_w, cov_w, counts_w = _pair_counts_generic(twin, t, p, mask)
            where = f"mahalanobis_counts {dtype}, {mode} mode{', masked' if masked else ''}"
            if not np.array_equal(n, n_w) or not np.array_equal(counts[..., 0], counts_w[..., 0]):
                return f"{where}: pixel counts differ"
            err = _mismatch(cov, cov_w, cov_rtol)
            if err is not None:
                return f"{where}: covariance relative error {err:.3g} > {cov_rtol:g}"
            worst = int(np.abs(np.asarray(counts, np.int64) - counts_w).max())
            if worst > flips:
                return f"{where}: closer-or-equal counts differ by {worst} pixels (> {flips})"
    return None


_CHECKERS: dict[str, Callable[[Callable[..., Any], Any], str | None]] = {
    "mihcak_shrink": _check_mihcak_shrink,
    "mahalanobis_counts": _check_mahalanobis_counts,
}


def self_check(name: str, device: Any, fused: Callable[..., Any] | None = None) -> KernelCheck:
    """Run the fused ``name`` and its twin on a small deterministic input on ``device``, once.

    The first call per (process, ``name``, device) runs the check (float32 and float64; partial
    tiles, scalar and per-plane variances, several windows; both Mahalanobis modes, a mask, a pixel
    count that is not a multiple of the block) and caches the outcome; later calls return it. On a
    mismatch beyond tolerance, or an exception from the kernel (compilation included), the outcome
    is a fallback and a :class:`KernelFallbackWarning` is issued, once: callers then use the twin.
    ``fused`` defaults to the registered CUDA implementation (tests plant others).
    """
    torch = _torch()
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    key = (name, str(dev))
    with _CHECKS_LOCK:
        check = _CHECKS.get(key)
        if check is not None:
            return check
        try:
            problem = _CHECKERS[name](fused if fused is not None else _FUSED[name], dev)
        except Exception as exc:  # noqa: BLE001 - any failure of the kernel on this device means: use the twin
            problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
        check = KernelCheck(name, str(dev), problem is None, problem or "")
        _CHECKS[key] = check
    if not check.verified:
        warnings.warn(KernelFallbackWarning(
            f"the fused CUDA kernel {name!r} disagrees with its twin on {check.device} ({check.reason}); "
            f"camid uses the twin (same results, slower) and records the fallback in the run manifest"),
            stacklevel=3)
    return check


def kernel_checks() -> dict[str, str]:
    """``{"name@device": "verified" | "fallback (reason)"}`` of every self-check run so far."""
    with _CHECKS_LOCK:
        return {f"{name}@{device}": str(check) for (name, device), check in sorted(_CHECKS.items())}


def kernels_status(bk: Any) -> str:
    """What the run manifest records under ``kernels`` for backend ``bk``.

    "not used" when ``bk`` does not launch fused kernels (NumPy, torch on the CPU, ``use_kernels``
    off, no CuPy); otherwise every kernel is self-checked on the backend's device (cached) and the
    result is "verified" or "fallback (name: reason; ...)".
    """
    device = getattr(bk, "torch_device", None)  # use_kernels is only ever on for CUDA devices
    if not getattr(bk, "use_kernels", False) or device is None or not cupy_available():
        return "not used"
    failed = [f"{name}: {check.reason}" for name in sorted(_FUSED)
              if not (check := self_check(name, device)).verified]
    return f"fallback ({'; '.join(failed)})" if failed else "verified"


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
_FUSED: dict[str, Callable[..., Any]] = {
    "mihcak_shrink": mihcak_shrink,
    "mahalanobis_counts": mahalanobis_counts,
}


def get_fused(name: str, *, device: Any | None = None, required: bool = False) -> Callable[..., Any] | None:
    """The fused CUDA implementation of ``name`` ("mihcak_shrink", "mahalanobis_counts") or None.

    None (use the generic twin) when CuPy is not installed or does not import, when torch sees no
    CUDA device, or when ``name`` has no fused kernel. With ``required=True`` these raise instead:
    :class:`~camid_gpu.errors.MissingExtraError` (extra ``cuda``) without CuPy, RuntimeError without
    a CUDA device, KeyError for an unknown name.

    With ``device`` (the torch device the kernel will run on), the first call per (process, name,
    device) runs :func:`self_check`: when the kernel disagrees with its twin there (or fails to
    compile), the result is None (the twin is used; a :class:`KernelFallbackWarning` was issued
    once), or RuntimeError with ``required=True``.
    """
    if name not in _FUSED:
        if required:
            raise KeyError(f"no fused kernel named {name!r}; known: {sorted(_FUSED)}")
        return None
    if not cupy_available():
        if required:
            raise MissingExtraError("cupy", "cuda", f"the fused CUDA kernel {name!r}")
        return None
    if not _torch_cuda_available():
        if required:
            raise RuntimeError(f"the fused CUDA kernel {name!r} needs a CUDA device, and torch sees none")
        return None
    if device is not None:
        check = self_check(name, device)
        if not check.verified:
            if required:
                raise RuntimeError(f"the fused CUDA kernel {name!r} failed its self-check on {check.device}: "
                                   f"{check.reason}")
            return None
    return _FUSED[name]

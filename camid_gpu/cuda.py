"""Fused CUDA kernels (``kernels/*.cu``) through CuPy, for the torch backend on CUDA.

The CUDA C sources ship inside the package ``camid_gpu.kernels`` (the repository's ``kernels/``
folder) and are read with :mod:`importlib.resources`. Each file is compiled by NVRTC through
``cupy.RawModule`` the first time one of its kernels runs on a device, once per process and device
(the cache is guarded by a lock, so concurrent first calls compile once).

Tensors cross from torch to CuPy through DLPack (:func:`to_cupy`): no copy, same memory. Kernels are
launched on torch's *current* stream of the tensors' device, so they are ordered with the torch work
around them without any synchronisation. Outputs are allocated by torch.

Public API
----------
``get_fused(name, *, required=False)``
    The fused implementation of ``name`` or None. None when CuPy is not installed (or does not
    import), when torch sees no CUDA device, or for a name without a fused kernel: callers then use
    the generic "twin" written with the backend primitives. With ``required=True`` each of those is
    an error instead (:class:`~camid_gpu.errors.MissingExtraError` for a missing CuPy).
``mihcak_shrink(coeffs, noise_var, windows)``
    ``kernels/mihcak_shrink.cu``; same contract as :func:`camid_gpu.residual.mihcak_shrink`.
``mahalanobis_counts(disputed, fingerprints, mask=None)``
    ``kernels/mahalanobis.cu``; same contract as the generic twin in :mod:`camid_gpu.mahalanobis`.
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
from typing import Any, Callable, Iterator, Sequence

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

#: NVRTC options. No headers are included by the sources, so no include path is needed.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17",)

# must match the #defines of the .cu sources
MIHCAK_TILE = 16
MIHCAK_MAX_RADIUS = 4
MAHAL_THREADS = 256
#: most cameras the fused Mahalanobis kernel takes (MAHAL_MAX_CAMERAS in mahalanobis.cu)
MAHAL_MAX_CAMERAS = 64
# pass 2 stages tile*C pixels x cameras in shared memory: 25 bytes each, about 25 KiB at this size
_MAHAL_TILE_ELEMENTS = 1024
_MAX_GRID_YZ = 65535

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
                module = cp.RawModule(code=kernel_source(filename), options=COMPILE_OPTIONS)
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
    torch = _torch()
    _check_cuda("coeffs", coeffs)
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
    kernel = compiled_function("mihcak_shrink.cu", f"mihcak_shrink_{suffix}", coeffs.device.index)
    grid_x = math.ceil(w / MIHCAK_TILE)
    grid_y = math.ceil(h / MIHCAK_TILE)
    with _torch_stream(coeffs.device):
        src, var, dst = to_cupy(planes), to_cupy(nv), to_cupy(out)
        for first in range(0, n_planes, _MAX_GRID_YZ):
            count = min(_MAX_GRID_YZ, n_planes - first)
            kernel((grid_x, grid_y, count), (MIHCAK_TILE, MIHCAK_TILE, 1),
                   (src, var, dst, np.int32(h), np.int32(w), np.int32(per_plane), np.int32(mask),
                    np.int32(first)))
    return out.reshape(coeffs.shape)


# ---------------------------------------------------------------------------------------------
# mahalanobis_counts
# ---------------------------------------------------------------------------------------------
def _check_mahalanobis_inputs(disputed: Any, fingerprints: Any, mask: Any | None) -> tuple[int, int, int]:
    _check_cuda("disputed", disputed)
    _check_cuda("fingerprints", fingerprints)
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
        _check_cuda("mask", mask)
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

    sums_kernel = compiled_function("mahalanobis.cu", f"mahalanobis_sums_{suffix}", device.index)
    counts_kernel = compiled_function("mahalanobis.cu", f"mahalanobis_counts_{suffix}", device.index)
    blocks_sums = max(1, min(math.ceil(n_pixels / MAHAL_THREADS), 64))
    tile = max(1, _MAHAL_TILE_ELEMENTS // n_cameras)
    n_tiles = math.ceil(n_pixels / tile)
    blocks_counts = max(1, min(n_tiles, 1024))
    shared = tile * n_cameras * (3 * 8 + 1)

    for first in range(0, n_images, _MAX_GRID_YZ):
        last = min(n_images, first + _MAX_GRID_YZ)
        chunk = last - first
        t = traces[first:last]
        m = flags[first:last] if has_mask else flags
        partial = torch.zeros((chunk, n_cameras, blocks_sums, 6), dtype=torch.float64, device=device)
        with _torch_stream(device):
            sums_kernel((blocks_sums, n_cameras, chunk), (MAHAL_THREADS, 1, 1),
                        (to_cupy(t), to_cupy(prints), to_cupy(m), to_cupy(partial), np.int32(n_cameras),
                         np.int64(n_pixels), np.int32(per_camera), np.int32(has_mask)))
        sums = partial.sum(dim=2).cpu().numpy()  # (chunk, C, 6) float64; waits for the kernel
        n, cov = _covariance_from_sums(sums)
        coef = torch.as_tensor(quadratic_coefficients(n, cov), dtype=torch.float64, device=device).contiguous()
        counts = torch.zeros((chunk, n_cameras, n_cameras, 4), dtype=torch.int64, device=device)
        with _torch_stream(device):
            counts_kernel((blocks_counts, chunk, 1), (MAHAL_THREADS, 1, 1),
                          (to_cupy(t), to_cupy(prints), to_cupy(m), to_cupy(coef), to_cupy(counts),
                           np.int32(n_cameras), np.int64(n_pixels), np.int32(per_camera), np.int32(has_mask),
                           np.int32(tile)),
                          shared_mem=shared)
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
# registry
# ---------------------------------------------------------------------------------------------
_FUSED: dict[str, Callable[..., Any]] = {
    "mihcak_shrink": mihcak_shrink,
    "mahalanobis_counts": mahalanobis_counts,
}


def get_fused(name: str, *, required: bool = False) -> Callable[..., Any] | None:
    """The fused CUDA implementation of ``name`` ("mihcak_shrink", "mahalanobis_counts") or None.

    None (use the generic twin) when CuPy is not installed or does not import, when torch sees no
    CUDA device, or when ``name`` has no fused kernel. With ``required=True`` these raise instead:
    :class:`~camid_gpu.errors.MissingExtraError` (extra ``cuda``) without CuPy, RuntimeError without
    a CUDA device, KeyError for an unknown name. Compilation happens at the first call of the
    returned function, not here; a compile error then propagates (it is a bug, not a fallback).
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
    return _FUSED[name]

"""Launcher of the fused Mahalanobis pair statistics (``camid_gpu/kernels/mahalanobis.cu``), the CUDA twin of
``camid_gpu.mahalanobis.statistics._pair_counts_generic``, and its self-check against that twin:
:func:`fused_kernel` describes both, and ``mahalanobis.statistics.MAHALANOBIS_KERNEL`` holds the description
beside the twin.

:func:`launch_plan` is the one source of the kernels' launch geometry: :func:`run_mahalanobis_counts`
launches what it lists through any :class:`~camid_gpu._cuda.loader.Launcher` (CuPy on a GPU, the host
emulation in the tests).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu._cuda.loader import (KERNEL_DEFINES, MAX_GRID_YZ, CupyLauncher, FusedKernel, Launch, Launcher, _check_cuda,
                                    _suffix, _torch, mismatch)
from camid_gpu.mahalanobis.covariance import quadratic_coefficients  # the single rule for inverses and validity

MAHAL_THREADS = KERNEL_DEFINES["MAHAL_THREADS"]
#: most cameras the fused Mahalanobis kernel takes
MAHAL_MAX_CAMERAS = KERNEL_DEFINES["MAHAL_MAX_CAMERAS"]
# pass 2 stages tile*C pixels x cameras in shared memory: 25 bytes each, about 25 KiB at this size
_MAHAL_TILE_ELEMENTS = 1024
#: the deterministic self-check input is drawn from this seed
SELF_CHECK_SEED = 20240611


def launch_plan(shape: Sequence[int], *, max_grid_yz: int = MAX_GRID_YZ) -> tuple[Launch, ...]:
    """Every launch for ``shape = (images, cameras, pixels)``, in order: per chunk of images, pass 1
    (``mahalanobis_sums``, grid (blocks, C, images)) then pass 2 (``mahalanobis_counts``, grid
    (blocks, images), ``tile`` pixels per step and their distances in dynamic shared memory).

    Images are gridDim.z (pass 1) and gridDim.y (pass 2): beyond ``max_grid_yz`` (65535 on every CUDA
    device) they go to further chunks, each told its first image (``first``).
    """
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
    """Fused pair statistics of the Mahalanobis classifier (``camid_gpu/kernels/mahalanobis.cu``).

    Parameters
    ----------
    disputed : torch.Tensor (D, 2, P) or (D, C, 2, P) (one trace per camera, "paper" mode); CUDA,
        float32 or float64; component 0 is I0, 1 is the PRNU.
    fingerprints : torch.Tensor (C, 2, P), same device and dtype; C <= 64.
    mask : optional bool/uint8 tensor (D, C, P): pixel p takes part for camera j.

    Returns
    -------
    The contract of the generic twin ``camid_gpu.mahalanobis.statistics._pair_counts_generic``:
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
    """:func:`mahalanobis_counts` through any :class:`~camid_gpu._cuda.loader.Launcher` (tensors on its device)."""
    torch = _torch()
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

    plan = launch_plan((n_images, n_cameras, n_pixels), max_grid_yz=launcher.max_grid_yz)
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


def check_against_twin(fused: Callable[..., Any], device: Any, twin: Callable[..., Any]) -> str | None:
    """Self-check: a mismatch description, or None when ``fused`` matches ``twin`` (``statistics``'
    ``_pair_counts_generic(bk, disputed, fingerprints, mask)``) on ``device`` in both dtypes and modes (a
    mask, a pixel count that is not a multiple of the block)."""
    torch = _torch()
    from camid_gpu.backend import TorchBackend

    _pair_counts_generic = twin

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
            err = mismatch(cov, cov_w, cov_rtol)
            if err is not None:
                return f"{where}: covariance relative error {err:.3g} > {cov_rtol:g}"
            worst = int(np.abs(np.asarray(counts, np.int64) - counts_w).max())
            if worst > flips:
                return f"{where}: closer-or-equal counts differ by {worst} pixels (> {flips})"
    return None


def fused_kernel(twin: Callable[..., Any]) -> FusedKernel:
    """The fused pair statistics (:func:`mahalanobis_counts`), self-checked against ``twin`` on each device
    before their first use there. The twin is passed in (``statistics`` holds the result beside it)."""
    return FusedKernel("mahalanobis_counts", mahalanobis_counts, functools.partial(check_against_twin, twin=twin))

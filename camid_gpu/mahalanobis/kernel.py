"""Launcher of the fused Mahalanobis pair statistics (``kernels/mahalanobis.cu``), the CUDA twin of
``camid_gpu.mahalanobis.statistics._pair_counts_generic``; registered as ``"mahalanobis_counts"``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from camid_gpu._cuda.loader import (
    _MAX_GRID_YZ,
    _check_cuda,
    _suffix,
    _torch,
    _torch_stream,
    compiled_function,
    register_fused,
    to_cupy,
)

# must match the #defines of mahalanobis.cu
MAHAL_THREADS = 256
#: most cameras the fused Mahalanobis kernel takes (MAHAL_MAX_CAMERAS in mahalanobis.cu)
MAHAL_MAX_CAMERAS = 64
# pass 2 stages tile*C pixels x cameras in shared memory: 25 bytes each, about 25 KiB at this size
_MAHAL_TILE_ELEMENTS = 1024


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
    from camid_gpu.mahalanobis.statistics import quadratic_coefficients  # the single rule for inverses and validity

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


register_fused("mahalanobis_counts", mahalanobis_counts)

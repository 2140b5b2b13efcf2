"""Launcher of the fused Mihcak shrink (``kernels/mihcak_shrink.cu``), the CUDA twin of
:func:`camid_gpu.prnu.residual.mihcak_shrink`; registered as ``"mihcak_shrink"`` with the loader.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

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

# must match the #defines of mihcak_shrink.cu
MIHCAK_TILE = 16
MIHCAK_MAX_RADIUS = 4


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
    """Fused Mihcak shrink of CUDA planes; the contract of :func:`camid_gpu.prnu.residual.mihcak_shrink`.

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


register_fused("mihcak_shrink", mihcak_shrink)

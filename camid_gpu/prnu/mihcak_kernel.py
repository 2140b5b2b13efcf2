"""Launcher of the fused Mihcak shrink (``camid_gpu/kernels/mihcak_shrink.cu``), the CUDA twin of
:func:`camid_gpu.prnu.residual.mihcak_shrink`, and its self-check against that twin: :func:`fused_kernel`
describes both, and ``prnu.residual.MIHCAK_KERNEL`` holds the description beside the twin.

:func:`launch_plan` is the one source of the kernel's launch geometry: :func:`run_mihcak_shrink`
launches what it lists through any :class:`~camid_gpu._cuda.loader.Launcher` (CuPy on a GPU, the
host emulation in the tests).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu._cuda.loader import (KERNEL_DEFINES, MAX_GRID_YZ, CupyLauncher, FusedKernel, Launch, Launcher, _check_cuda,
                                    _suffix, _torch, mismatch)

MIHCAK_TILE = KERNEL_DEFINES["MIHCAK_TILE"]
MIHCAK_MAX_RADIUS = KERNEL_DEFINES["MIHCAK_HALO"]
#: the deterministic self-check input is drawn from this seed
SELF_CHECK_SEED = 20240611


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


def launch_plan(shape: Sequence[int], *, max_grid_yz: int = MAX_GRID_YZ) -> tuple[Launch, ...]:
    """Every launch of ``mihcak_shrink_*`` for ``shape = (planes, h, w)``, in order.

    One block per ``MIHCAK_TILE`` square tile; planes are gridDim.z, so planes beyond ``max_grid_yz``
    (65535 on every CUDA device) go to further launches, each told its first plane (``first``).
    """
    n_planes, h, w = (int(v) for v in shape)
    grid_x, grid_y = math.ceil(w / MIHCAK_TILE), math.ceil(h / MIHCAK_TILE)
    if grid_y > max_grid_yz:
        raise ValueError(f"mihcak_shrink: planes of {h} rows exceed the grid limit ({max_grid_yz} tiles)")
    return tuple(Launch("mihcak_shrink", (grid_x, grid_y, min(max_grid_yz, n_planes - first)),
                        (MIHCAK_TILE, MIHCAK_TILE, 1), 0, first, min(max_grid_yz, n_planes - first))
                 for first in range(0, n_planes, max_grid_yz))


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
    _check_cuda("coeffs", coeffs)
    return run_mihcak_shrink(CupyLauncher(coeffs.device), coeffs, noise_var, windows)


def run_mihcak_shrink(launcher: Launcher, coeffs: Any, noise_var: float | Any,
                      windows: Sequence[int] = (3, 5, 7, 9)) -> Any:
    """:func:`mihcak_shrink` through any :class:`~camid_gpu._cuda.loader.Launcher` (tensors on its device)."""
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
    for launch in launch_plan((n_planes, h, w), max_grid_yz=launcher.max_grid_yz):
        launcher("mihcak_shrink.cu", f"{launch.function}_{suffix}", launch,
                 (planes, nv, out, np.int32(h), np.int32(w), np.int32(per_plane), np.int32(mask),
                  np.int32(launch.first)))
    return out.reshape(coeffs.shape)


def check_against_twin(fused: Callable[..., Any], device: Any, twin: Callable[..., Any]) -> str | None:
    """Self-check: a mismatch description, or None when ``fused`` matches ``twin`` (``prnu.residual``'s
    ``mihcak_shrink(bk, coeffs, noise_var, windows)``) on ``device`` in both dtypes (partial tiles on both
    axes, scalar and per-plane variances, several windows)."""
    from camid_gpu.backend import TorchBackend

    shrink = twin
    rng = np.random.default_rng(SELF_CHECK_SEED)
    coeffs = rng.normal(size=(3, 37, 53)) * 4.0
    per_plane = rng.uniform(1.0, 9.0, size=(3, 1, 1))
    for dtype, rtol in (("float32", 1e-5), ("float64", 1e-12)):
        twin = TorchBackend(str(device), dtype=dtype, use_kernels=False)
        c, nv = twin.asarray(coeffs), twin.asarray(per_plane)
        for noise_var, windows in ((4.0, (3, 5, 7, 9)), (nv, (5,)), (nv, (9, 3))):
            got = twin.to_numpy(fused(c, noise_var, windows))
            want = twin.to_numpy(shrink(twin, c, noise_var, windows))
            err = mismatch(got, want, rtol)
            if err is not None:
                per = "per-plane" if noise_var is nv else "scalar"
                return (f"mihcak_shrink {dtype}, windows {windows}, {per} noise variance: relative error "
                        f"{err:.3g} > {rtol:g}")
    return None


def fused_kernel(twin: Callable[..., Any]) -> FusedKernel:
    """The fused shrink (:func:`mihcak_shrink`), self-checked against ``twin`` on each device before its first
    use there. The twin is passed in (``prnu.residual`` holds the result beside its ``mihcak_shrink``)."""
    return FusedKernel("mihcak_shrink", mihcak_shrink, functools.partial(check_against_twin, twin=twin))

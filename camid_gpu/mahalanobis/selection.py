"""Natural-image pixel selection of method 2 ("aligned" and the paper's scan-order mode).

The method and its notation: see :mod:`camid_gpu.mahalanobis`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from camid_gpu.backend import Array, Backend
from camid_gpu.mahalanobis.constants import SCAN_ORDERS, SELECTION_SIGMAS


# ---------------------------------------------------------------------------------------------
# natural-image pixel selection
# ---------------------------------------------------------------------------------------------
def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _as_traces(bk: Backend, x: Any, name: str) -> Array:
    """Native (N, 2, P) from (N, 2, P) or (N, 2, H, W); ValueError naming the shape otherwise."""
    x = bk.asarray(x)
    if x.ndim == 4 and x.shape[1] == 2:
        x = x.reshape(x.shape[0], 2, -1)
    if x.ndim != 3 or x.shape[1] != 2 or x.shape[0] < 1 or x.shape[2] < 1:
        raise ValueError(f"{name}: expected (N, 2, P) or (N, 2, H, W) traces (I0, PRNU) with N, P >= 1, "
                         f"got shape {tuple(x.shape)}")
    return x


def intensity_limits(bk: Backend, fingerprints: Any, n_sigma: float = SELECTION_SIGMAS) -> np.ndarray:
    """Selection limits (C, 2) float64: ``mu_j -/+ n_sigma * sigma_j`` of each fingerprint's I0.

    ``mu_j`` and ``sigma_j`` are the mean and sample std (N-1, as MATLAB's ``std``) over the pixels.
    """
    prints = _as_traces(bk, fingerprints, "fingerprints")
    if prints.shape[2] < 2:
        raise ValueError(f"fingerprints: the selection needs at least 2 pixels, got shape {tuple(prints.shape)}")
    if not n_sigma > 0:
        raise ValueError(f"n_sigma must be positive, got {n_sigma!r}")
    i0 = prints[:, 0]
    mu = bk.to_numpy(bk.mean(i0, -1)).astype(np.float64)[:, 0]
    sd = bk.to_numpy(bk.std(i0, -1)).astype(np.float64)[:, 0]
    return np.stack([mu - n_sigma * sd, mu + n_sigma * sd], -1)


def _check_limits(limits: np.ndarray) -> np.ndarray:
    limits = np.asarray(limits, dtype=np.float64)
    if limits.ndim != 2 or limits.shape[1] != 2 or limits.shape[0] < 1:
        raise ValueError(f"limits: expected (C, 2) lower/upper I0 limits, got shape {limits.shape}")
    return limits


def select_aligned(bk: Backend, disputed: Any, limits: np.ndarray) -> Array:
    """Masks (D, C, P) bool: pixel p of image d is kept for camera j when lo_j < I0 < hi_j.

    ``disputed``: (D, 2, P) or (D, 2, H, W) traces of centre clippings; ``limits``: (C, 2) from
    :func:`intensity_limits`.
    """
    t = _as_traces(bk, disputed, "disputed")
    limits = _check_limits(limits)
    i0 = t[:, 0][:, None, :]  # (D, 1, P)
    lo = bk.asarray(limits[:, 0:1])  # (C, 1)
    hi = bk.asarray(limits[:, 1:2])
    return (i0 > lo) & (i0 < hi)


def scan_indices(height: int, width: int, order: str) -> np.ndarray | None:
    """Row-major positions of an (height, width) plane listed in scan ``order``; None for "C"."""
    if order not in SCAN_ORDERS:
        raise ValueError(f"order must be one of {SCAN_ORDERS}, got {order!r}")
    if order == "C":
        return None
    return np.arange(height * width, dtype=np.int64).reshape(height, width).T.ravel()


def scan_fingerprints(bk: Backend, fingerprints: Any, order: str = "C") -> Array:
    """Fingerprints (C, 2, H, W) as (C, 2, P) vectors in scan ``order`` ("C" row-major, "F" MATLAB)."""
    prints = bk.asarray(fingerprints)
    if prints.ndim != 4 or prints.shape[1] != 2 or min(prints.shape) < 1:
        raise ValueError(f"fingerprints: expected (C, 2, H, W), got shape {tuple(prints.shape)}")
    n_cameras, _, height, width = prints.shape
    vectors = prints.reshape(n_cameras, 2, -1)
    index = scan_indices(height, width, order)
    return vectors if index is None else bk.take(vectors, index, -1)


def select_paper(bk: Backend, i0: Any, prnu: Any, limits: np.ndarray, n_pixels: int,
                 order: str = "C") -> tuple[Array, Array, np.ndarray]:
    """The authors' selection for one whole natural image.

    Parameters
    ----------
    i0, prnu : (H', W') planes of the WHOLE natural image (native or NumPy).
    limits : (C, 2) selection limits, see :func:`intensity_limits`.
    n_pixels : P, the length of the fingerprint vectors.
    order : scan order, "C" (row-major) or "F" (column-major, MATLAB's ``x(:)``).

    Returns
    -------
    ``(traces, mask, lengths)``: traces (C, 2, P) native, for camera j the first ``lengths[j]``
    selected pixels (I0, PRNU) in scan order, the rest filler; mask (C, P) native bool, True on the
    first ``lengths[j]`` positions; lengths (C,) int64 ``= min(#selected_j, P)``. Compared with
    fingerprints from :func:`scan_fingerprints` (same order), the mask makes every vector stop at the
    shorter length, and the pair (q, j) at ``min(lengths[q], lengths[j])``.
    """
    i0, prnu = bk.asarray(i0), bk.asarray(prnu)
    if i0.ndim != 2 or tuple(i0.shape) != tuple(prnu.shape) or min(i0.shape) < 1:
        raise ValueError(f"i0 and prnu: expected two (H, W) planes of one shape, got {tuple(i0.shape)} "
                         f"and {tuple(prnu.shape)}")
    limits = _check_limits(limits)
    if n_pixels < 1:
        raise ValueError(f"n_pixels must be >= 1, got {n_pixels!r}")
    height, width = i0.shape
    positions = scan_indices(height, width, order)
    # the selection itself is a host operation: it yields index lists, which the backend gathers
    scan = bk.to_numpy(i0).astype(np.float64).ravel()
    if positions is not None:
        scan = scan[positions]
    vectors = bk.stack([i0.reshape(-1), prnu.reshape(-1)], 0)  # (2, H'W') row-major
    n_cameras = limits.shape[0]
    lengths = np.zeros(n_cameras, dtype=np.int64)
    gathered = []
    for j, (lo, hi) in enumerate(limits):
        picked = np.flatnonzero((scan > lo) & (scan < hi))[:n_pixels]
        if positions is not None:
            picked = positions[picked]
        lengths[j] = picked.size
        index = np.zeros(n_pixels, dtype=np.int64)  # filler positions point at pixel 0, masked out
        index[:picked.size] = picked
        gathered.append(bk.take(vectors, index, -1))
    mask_host = np.arange(n_pixels)[None, :] < lengths[:, None]
    mask = bk.asarray(mask_host.astype(np.uint8)) > 0.5
    return bk.stack(gathered, 0), mask, lengths

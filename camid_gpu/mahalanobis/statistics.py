"""Covariances, Mahalanobis distances and the pairwise counts of method 2 (generic twin of the fused kernel).

The method and its notation: see :mod:`camid_gpu.mahalanobis`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu.backend import Array, Backend
from camid_gpu.config import MAHALANOBIS_CHUNK_ELEMENTS
from camid_gpu.mahalanobis.constants import FUSED_MAX_CAMERAS
from camid_gpu.mahalanobis.covariance import quadratic_coefficients
from camid_gpu.mahalanobis.kernel import fused_kernel
from camid_gpu.mahalanobis.selection import _as_traces


# ---------------------------------------------------------------------------------------------
# covariances, distances, pairwise counts
# ---------------------------------------------------------------------------------------------
def _validate_pair_inputs(bk: Backend, disputed: Any, fingerprints: Any, mask: Any | None
                          ) -> tuple[Array, Array, Array | None]:
    prints = _as_traces(bk, fingerprints, "fingerprints")
    n_cameras, _, n_pixels = prints.shape
    t = bk.asarray(disputed)
    ok = (t.ndim == 3 and tuple(t.shape[1:]) == (2, n_pixels)) or (
        t.ndim == 4 and tuple(t.shape[1:]) == (n_cameras, 2, n_pixels))
    if not ok or t.shape[0] < 1:
        raise ValueError(f"disputed: expected (D, 2, {n_pixels}) or (D, {n_cameras}, 2, {n_pixels}) traces "
                         f"matching fingerprints {tuple(prints.shape)}, got shape {tuple(t.shape)}")
    if mask is not None:
        if tuple(mask.shape) != (t.shape[0], n_cameras, n_pixels):
            raise ValueError(f"mask: expected ({t.shape[0]}, {n_cameras}, {n_pixels}), got shape {tuple(mask.shape)}")
        if isinstance(mask, np.ndarray):
            mask = bk.asarray(mask.astype(np.uint8)) > 0.5  # NumPy bool -> native bool
    return t, prints, mask


def _squared_distances(bk: Backend, dx: Array, dy: Array, coef: np.ndarray) -> tuple[Array, Array, Array]:
    """(full, I0-only, PRNU-only) squared distances (D, C, P) from differences and coefficients."""
    inf = math.inf
    valid = bk.asarray(coef[..., 0:1]) > 0.5  # (D, C, 1)
    a, b, c = (bk.asarray(coef[..., k:k + 1]) for k in (1, 2, 3))
    inv_x, inv_y = bk.asarray(coef[..., 4:5]), bk.asarray(coef[..., 5:6])
    full = bk.where(valid, a * dx * dx + 2.0 * b * dx * dy + c * dy * dy, inf)
    only_i0 = bk.where(valid, dx * dx * inv_x, inf)
    only_prnu = bk.where(valid, dy * dy * inv_y, inf)
    return full, only_i0, only_prnu


def _differences(t: Array, prints: Array) -> tuple[Array, Array]:
    """dx, dy (D, C, P) = disputed - fingerprint for every (d, j)."""
    dif = (t[:, None] if t.ndim == 3 else t) - prints[None]  # (D, C, 2, P)
    return dif[:, :, 0], dif[:, :, 1]


def _covariances(bk: Backend, dx: Array, dy: Array, mask: Array | None) -> tuple[np.ndarray, np.ndarray]:
    """Pixels used (D, C) int64 and unbiased covariances (D, C, 2, 2) float64 (two-pass, centred)."""
    d, c, p = dx.shape
    if mask is None:
        n = np.full((d, c), p, dtype=np.int64)
        cx, cy = dx - bk.mean(dx, -1), dy - bk.mean(dy, -1)
    else:
        n_native = bk.sum(mask, -1)
        n = bk.to_numpy(n_native)[..., 0].astype(np.int64)
        count = bk.maximum(n_native, 1)
        mx = bk.sum(bk.where(mask, dx, 0.0), -1) / count
        my = bk.sum(bk.where(mask, dy, 0.0), -1) / count
        cx, cy = bk.where(mask, dx - mx, 0.0), bk.where(mask, dy - my, 0.0)
    sxx, syy, sxy = (bk.to_numpy(bk.sum(u * v, -1)).astype(np.float64)[..., 0] for u, v in
                     ((cx, cx), (cy, cy), (cx, cy)))
    denom = np.where(n >= 2, n - 1.0, np.nan)
    cov = np.stack([np.stack([sxx, sxy], -1), np.stack([sxy, syy], -1)], -2) / denom[..., None, None]
    return n, cov


def _pair_counts_generic(bk: Backend, disputed: Array, prints: Array, mask: Array | None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generic twin of ``camid_gpu/kernels/mahalanobis.cu`` (same contract as ``kernel.mahalanobis_counts``).

    Returns ``n`` (D, C) int64, ``cov`` (D, C, 2, 2) float64 and ``counts`` (D, C, C, 4) int64:
    per (d, q, j) the pixels used by both q and j, and among them those where q is closer-or-equal
    by the full distance, by I0 alone and by PRNU alone. Materialises (D, C, P) distances: callers
    chunk over D.
    """
    dx, dy = _differences(disputed, prints)
    n, cov = _covariances(bk, dx, dy, mask)
    distances = _squared_distances(bk, dx, dy, quadratic_coefficients(n, cov))
    d, c, p = dx.shape
    counts = np.zeros((d, c, c, 4), dtype=np.int64)
    for q in range(c):
        both = None if mask is None else mask[:, q:q + 1] & mask  # (D, C, P)
        counts[:, q, :, 0] = p if both is None else bk.to_numpy(bk.sum(both, -1))[..., 0]
        for k, dist in enumerate(distances, start=1):
            closer = dist[:, q:q + 1] <= dist
            if both is not None:
                closer = closer & both
            counts[:, q, :, k] = bk.to_numpy(bk.sum(closer, -1))[..., 0]
    return n, cov, counts


#: the fused CUDA kernel of :func:`_pair_counts_generic` (launcher: :mod:`camid_gpu.mahalanobis.kernel`; source:
#: ``camid_gpu/kernels/mahalanobis.cu``), self-checked against it per device
MAHALANOBIS_KERNEL = fused_kernel(twin=_pair_counts_generic)


@dataclass(frozen=True, eq=False)
class PairStatistics:
    """What the pairwise comparison yields for D disputed images and C cameras (NumPy arrays).

    selected (D, C) int64: pixels behind camera j's covariance for image d (|S_j|, or P).
    covariance (D, C, 2, 2) float64: unbiased covariance of (I0, PRNU) differences.
    valid (D, C) bool: the covariance could be inverted.
    pixels (D, C, C) int64: pixels counted for the pair (q, j) (|S_q ∩ S_j|, or P).
    satisfied (D, C, C) int64: pixels with MD_q <= MD_j; unsatisfied = pixels - satisfied.
    intensity_satisfied, prnu_satisfied (D, C, C) int64: the same with one component alone.
    """

    selected: np.ndarray
    covariance: np.ndarray
    valid: np.ndarray
    pixels: np.ndarray
    satisfied: np.ndarray
    intensity_satisfied: np.ndarray
    prnu_satisfied: np.ndarray

    @property
    def unsatisfied(self) -> np.ndarray:
        return self.pixels - self.satisfied

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays above by field name (each indexed by the disputed image first)."""
        return {f.name: getattr(self, f.name) for f in fields(PairStatistics)}

    def take_images(self, index: slice):
        """A copy of the same type (a :class:`MahalanobisResult` stays one) holding the images ``index`` of
        the arrays above; other fields are kept as they are."""
        return replace(self, **{name: array[index] for name, array in self.arrays().items()})

    @classmethod
    def from_counts(cls, n: np.ndarray, cov: np.ndarray, counts: np.ndarray) -> "PairStatistics":
        valid = quadratic_coefficients(n, cov)[..., 0] > 0.5
        return cls(np.asarray(n, np.int64), np.asarray(cov, np.float64), valid, counts[..., 0].copy(),
                   counts[..., 1].copy(), counts[..., 2].copy(), counts[..., 3].copy())

    @classmethod
    def concatenate(cls, parts: Sequence["PairStatistics"]) -> "PairStatistics":
        if len(parts) == 1:
            return parts[0]
        return cls(**{name: np.concatenate([p.arrays()[name] for p in parts], 0) for name in parts[0].arrays()})


def pair_statistics(bk: Backend, disputed: Any, fingerprints: Any, mask: Any | None = None, *,
                    chunk_elements: int = MAHALANOBIS_CHUNK_ELEMENTS, use_kernel: bool = True) -> PairStatistics:
    """Covariances and pairwise counts of D disputed traces against C fingerprints.

    Parameters
    ----------
    disputed : (D, 2, P) traces, or (D, C, 2, P) with one trace per camera ("paper" mode).
    fingerprints : (C, 2, P) (or (C, 2, H, W)).
    mask : optional (D, C, P) bool: pixel p is used for camera j (native, or NumPy bool).
    chunk_elements : the generic twin handles ``max(1, chunk_elements // (C*P))`` images at a time.
    use_kernel : try :data:`MAHALANOBIS_KERNEL` first (torch on CUDA + CuPy, C <= 64).
    """
    t, prints, mask = _validate_pair_inputs(bk, disputed, fingerprints, mask)
    n_images = t.shape[0]
    n_cameras, _, n_pixels = prints.shape
    device = bk.cuda_kernel_device() if use_kernel else None
    fused: Callable | None = MAHALANOBIS_KERNEL.on(device) if device is not None else None
    if fused is not None and n_cameras > FUSED_MAX_CAMERAS:
        fused = None
    step = max(1, int(chunk_elements) // (n_cameras * n_pixels))
    parts = []
    for start in range(0, n_images, step):
        stop = min(n_images, start + step)
        part_mask = None if mask is None else mask[start:stop]
        if fused is not None:
            n, cov, counts = fused(t[start:stop], prints, part_mask)
        else:
            n, cov, counts = _pair_counts_generic(bk, t[start:stop], prints, part_mask)
        parts.append(PairStatistics.from_counts(n, cov, counts))
    return PairStatistics.concatenate(parts)


def mahalanobis_distances(bk: Backend, disputed: Any, fingerprints: Any, mask: Any | None = None) -> Array:
    """The distances MD (D, C, P) themselves (native; generic code, for inspection and tests).

    NaN where ``mask`` leaves a pixel out, +inf for an invalid covariance. Materialises D x C x P.
    """
    t, prints, mask = _validate_pair_inputs(bk, disputed, fingerprints, mask)
    dx, dy = _differences(t, prints)
    n, cov = _covariances(bk, dx, dy, mask)
    full = bk.sqrt(_squared_distances(bk, dx, dy, quadratic_coefficients(n, cov))[0])
    return full if mask is None else bk.where(mask, full, math.nan)

"""Method 2: the two-degree-of-freedom Mahalanobis classifier (Rojas-López et al., PeerJ CS 2024).

What the method computes
------------------------
Every image, reference or disputed, is reduced to a *trace* of two planes on the 0..255 scale:

- ``eta = ZeroMeanTotal(NoiseExtract(x, sigma=2))``, the Binghamton residual of the green channel;
- ``I0 = x - eta``, the denoised intensity;
- ``PRNU = WienerInDFT(eta, std(eta))``.

The fingerprint of camera ``j`` is the pixel-wise mean of ``I0`` and of ``PRNU`` over its ``R``
reference flat images (the authors use R = 15 centre clippings of 1000 x 1000 pixels; any R >= 1
works here). For a disputed image ``d`` and camera ``j`` let ``dif = T_d - F_j`` (P pixels x 2),
``Sigma_j = cov(dif)`` (2x2, unbiased, over the pixels used) and
``MD_j(p) = sqrt(dif_p Sigma_j^-1 dif_p^T)``. Camera ``q`` (the camera claimed) *beats* camera ``j``
when more pixels satisfy ``MD_q(p) <= MD_j(p)`` than do not (equality counts as satisfied, as in the
authors' code), and ``membership(d, q) = 100 * #{j != q : q beats j} / (C - 1)``. The image is
associated with the camera(s) of highest membership; a tie is reported as a tie (several names, like
the paper's "C01,C07"), never broken.

Arrays: traces are batch-first ``(N, 2, P)`` (component 0 = I0, 1 = PRNU, ``P = H*W`` pixels in
row-major order) or ``(N, 2, H, W)``; fingerprints ``(C, 2, P)`` or ``(C, 2, H, W)``. Everything
runs through the :class:`~camid_gpu.backend.Backend` primitives, so it is written once for NumPy
(float64) and torch (CPU or CUDA, float32 or float64). On CUDA the fused kernel
``kernels/mahalanobis.cu`` (``bk.kernel("mahalanobis_counts")``) computes the covariances and the
pairwise counts without materialising the D x C x P distances; elsewhere the generic twin
(:func:`_pair_counts_generic`) does, in chunks of disputed images so that memory stays bounded.

Disputed images of three kinds (``MahalanobisResult.mode``)
-----------------------------------------------------------
``"flat"``
    Flat-field disputed images: the centre clipping, every pixel, compared position by position.
``"aligned"`` (natural images, the default)
    The natural image's centre clipping. For camera ``j`` only pixels whose I0 lies in the open
    interval ``(mu_j - 2 sigma_j, mu_j + 2 sigma_j)`` are kept (``mu_j, sigma_j``: mean and sample
    std of camera ``j``'s fingerprint I0 over its pixels); call that set ``S_j``. ``Sigma_j`` and
    ``MD_j`` use ``S_j`` at the same pixel positions as the fingerprint, and the pair ``(q, j)`` is
    counted over ``S_q ∩ S_j`` (so satisfied + unsatisfied = ``|S_q ∩ S_j|``).
``"paper"`` (the authors' code)
    Every selected pixel of the WHOLE natural image (not the clipping), in scan order, against the
    fingerprint's pixels in scan order, both vectors truncated to the shorter length; for the pair
    ``(q, j)`` the MD vectors are truncated to the shorter one. Scan order is row-major by default
    (``order="F"`` gives MATLAB's column-major ``x(:)``, the order of the authors' code).

Why "aligned" is the default: in "paper" mode the k-th selected pixel of the natural image is
compared with the k-th pixel of the fingerprint, and those two lie at unrelated positions on the
sensor. The per-pixel PRNU pairs are then independent noise, so whatever separates the cameras cannot
be the sensor pattern: it is how similar the *intensity* of the selected natural pixels is to the
fingerprint's flat-field intensity, i.e. a comparison of intensity histograms. "aligned" keeps each
pixel at its own sensor position, which is the only way the PRNU term can carry sensor information.

Diagnostics
-----------
PCE is camid's primary decision; this method must show what drove its vote. For every ``(d, q, j)``
the result also holds the number of pixels where ``q`` is closer-or-equal to ``j`` using the PRNU
component alone (``|dif_prnu| / std``) and using the I0 component alone (``|dif_I0| / std``), and
:meth:`MahalanobisResult.diagnostics` summarises how often each one-component vote agrees with the
full vote. On real cameras an independent check found the PRNU-only votes to be coin flips (closer
fractions near 0.5) while the intensity term drives the decision; these numbers make that visible.

Corner cases
------------
- ``C = 1``: there is no competitor, so the pairwise test is vacuous: membership is NaN (``None`` in
  JSON) and no camera is associated. Counts and covariances are still computed.
- A covariance that cannot be inverted (fewer than 3 pixels used, a zero variance, or perfectly
  correlated components) marks ``(d, j)`` invalid (``MahalanobisResult.valid``); camera ``j`` is
  then at distance +inf from every pixel of ``d``, so it loses every comparison it takes part in.

Differences from the authors' MATLAB code, all deliberate and documented here: the selection
interval is open (their code keeps ``>=``/``<=`` and also drops pixels whose I0 is exactly 0, both
of measure zero for real images); each camera's selection uses that camera's own limits (their code
selects once, with the limits of the camera assumed in that run, and compares the same vector with
every fingerprint); scan order is row-major unless ``order="F"``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu import config
from camid_gpu.backend import Array, Backend
from camid_gpu._cuda.loader import KERNEL_DEFINES
from camid_gpu.io.images import center_clip
from camid_gpu.prnu.residual import DEFAULT_LEVELS, DEFAULT_WAVELET, noise_extract, wiener_dft, zero_mean_total

#: noise std of the authors' NoiseExtractFromImage(I, 2), 0..255 scale
DEFAULT_SIGMA = config.SIGMA_MAHALANOBIS
#: centre clipping (rows, columns) of the reference flats in the paper
DEFAULT_CLIP = config.CLIP
#: reference flat images per camera in the paper
DEFAULT_REFERENCES = config.REFERENCES
#: half-width of the natural-image selection interval, in fingerprint-I0 standard deviations
SELECTION_SIGMAS = 2.0
MODES = ("flat", "aligned", "paper")
NATURAL_MODES = config.NATURAL_MODES
SCAN_ORDERS = ("C", "F")
#: generic twin: disputed images per chunk are chosen so that chunk x C x P stays below this
DEFAULT_CHUNK_ELEMENTS = 1 << 22
#: a covariance is usable when 1 - r^2 exceeds this (r: correlation of the two components)
DETERMINANT_RTOL = 1e-12
#: most cameras the fused kernel handles; more fall back to the generic twin
FUSED_MAX_CAMERAS = KERNEL_DEFINES["MAHAL_MAX_CAMERAS"]


# ---------------------------------------------------------------------------------------------
# traces and fingerprints
# ---------------------------------------------------------------------------------------------
def traces(bk: Backend, clips: Any, sigma: float = DEFAULT_SIGMA, levels: int = DEFAULT_LEVELS,
           wavelet: str = DEFAULT_WAVELET) -> tuple[Array, Array]:
    """I0 and PRNU of a batch of green-channel images.

    Parameters
    ----------
    clips : (N, H, W) green-channel pixels on the 0..255 scale (uint8, or floats), NumPy or native.
    sigma, levels, wavelet : of the Binghamton residual (the method uses sigma = 2).

    Returns
    -------
    ``(i0, prnu)``, native arrays (N, H, W) in the backend's dtype:
    ``eta = zero_mean_total(noise_extract(x))``, ``i0 = x - eta``, ``prnu = wiener_dft(eta)`` with
    each image's own ``std(eta)``.
    """
    x = bk.asarray(clips)
    if x.ndim != 3 or min(x.shape) < 1:
        raise ValueError(f"clips: expected a batch (N, H, W) of green-channel images, got shape {tuple(x.shape)}")
    eta = zero_mean_total(bk, noise_extract(bk, x, sigma, levels, wavelet))
    return x - eta, wiener_dft(bk, eta)


def trace_vectors(bk: Backend, i0: Array, prnu: Array) -> Array:
    """Stack (N, H, W) I0 and PRNU into traces (N, 2, H*W) (row-major pixels)."""
    if i0.ndim != 3 or tuple(i0.shape) != tuple(prnu.shape):
        raise ValueError(f"i0 and prnu: expected two (N, H, W) arrays of one shape, got {tuple(i0.shape)} "
                         f"and {tuple(prnu.shape)}")
    n = i0.shape[0]
    return bk.stack([i0.reshape(n, -1), prnu.reshape(n, -1)], 1)


def fingerprint(bk: Backend, flats: Any, sigma: float = DEFAULT_SIGMA, levels: int = DEFAULT_LEVELS,
                wavelet: str = DEFAULT_WAVELET, batch_size: int = 8) -> Array:
    """Fingerprint of one camera from its R >= 1 reference flats.

    ``flats``: (R, H, W) green-channel clippings (0..255), or a sequence of (H, W) arrays.
    Returns the native (2, H, W) pixel-wise means of I0 (plane 0) and PRNU (plane 1).
    """
    if isinstance(flats, (list, tuple)):
        flats = np.stack([np.asarray(f) for f in flats]) if flats else np.empty((0, 0, 0))
    if flats.ndim != 3 or min(flats.shape) < 1:
        raise ValueError(f"flats: expected (R, H, W) reference clippings with R >= 1, got shape {tuple(flats.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    count = flats.shape[0]
    sum_i0 = sum_prnu = None
    for start in range(0, count, batch_size):
        i0, prnu = traces(bk, flats[start:start + batch_size], sigma, levels, wavelet)
        part_i0, part_prnu = bk.sum(i0, 0), bk.sum(prnu, 0)
        sum_i0 = part_i0 if sum_i0 is None else sum_i0 + part_i0
        sum_prnu = part_prnu if sum_prnu is None else sum_prnu + part_prnu
    return bk.stack([sum_i0[0] / count, sum_prnu[0] / count], 0)


def fingerprints(bk: Backend, flats_per_camera: Sequence[Any], sigma: float = DEFAULT_SIGMA,
                 levels: int = DEFAULT_LEVELS, wavelet: str = DEFAULT_WAVELET, batch_size: int = 8) -> Array:
    """Fingerprints (C, 2, H, W) of C cameras, one (R_j, H, W) stack of flats each (R_j may differ)."""
    if len(flats_per_camera) < 1:
        raise ValueError("flats_per_camera: need at least one camera")
    prints = [fingerprint(bk, flats, sigma, levels, wavelet, batch_size) for flats in flats_per_camera]
    shapes = {tuple(p.shape) for p in prints}
    if len(shapes) != 1:
        raise ValueError(f"flats_per_camera: every camera needs clippings of one size, got {sorted(shapes)}")
    return bk.stack(prints, 0)


def trace_summary(bk: Backend, i0: Array, prnu: Array, bins: int = 64) -> list[dict[str, Any]]:
    """Per image, what the report needs to draw the paper's Figures 1-5 without the pixels.

    ``i0, prnu``: (N, H, W). Returns per image ``i0_hist`` (counts in ``bins`` equal bins over
    0..255; values outside are clamped to the end bins), ``mean`` [mu_i0, mu_prnu] and ``cov``
    (2x2, unbiased) of the trace (I0, PRNU) over the pixels.
    """
    a, b = bk.to_numpy(i0).astype(np.float64), bk.to_numpy(prnu).astype(np.float64)
    out = []
    for x, y in zip(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)):
        hist = np.bincount(np.clip((x * bins / 255.0).astype(np.int64), 0, bins - 1), minlength=bins)
        cov = np.cov(np.stack([x, y])) if x.size > 1 else np.zeros((2, 2))
        out.append({"i0_hist": hist.tolist(), "mean": [float(x.mean()), float(y.mean())],
                    "cov": [[float(v) for v in row] for row in np.atleast_2d(cov)]})
    return out


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


# ---------------------------------------------------------------------------------------------
# covariances, distances, pairwise counts
# ---------------------------------------------------------------------------------------------
def quadratic_coefficients(n: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Per (d, j) coefficients of the squared distances, from covariances; the single validity rule.

    Parameters
    ----------
    n : (..., ) pixels behind each covariance.
    cov : (..., 2, 2) float64 unbiased covariances of ``dif = disputed - fingerprint``.

    Returns
    -------
    (..., 6) float64: ``valid, inv00, inv01, inv11, 1/var_i0, 1/var_prnu`` where
    ``MD^2 = inv00 dx^2 + 2 inv01 dx dy + inv11 dy^2`` and the one-component squared distances are
    ``dx^2 / var_i0`` and ``dy^2 / var_prnu``. Valid means ``n >= 3``, finite, both variances > 0
    and ``det > DETERMINANT_RTOL * var_i0 * var_prnu``; invalid rows are all zeros (the distances
    are then +inf, see the module docstring). Used by the generic twin and the fused kernel alike.
    """
    n = np.asarray(n)
    cov = np.asarray(cov, dtype=np.float64)
    vx, vy, cxy = cov[..., 0, 0], cov[..., 1, 1], cov[..., 0, 1]
    with np.errstate(all="ignore"):
        det = vx * vy - cxy * cxy
        valid = ((n >= 3) & np.isfinite(vx) & np.isfinite(vy) & np.isfinite(cxy) & (vx > 0) & (vy > 0)
                 & (det > DETERMINANT_RTOL * vx * vy))
        det_s = np.where(valid, det, 1.0)
        vx_s = np.where(valid, vx, 1.0)
        vy_s = np.where(valid, vy, 1.0)
        coef = np.stack([np.ones_like(det_s), vy_s / det_s, -np.where(valid, cxy, 0.0) / det_s, vx_s / det_s,
                         1.0 / vx_s, 1.0 / vy_s], -1)
    coef[~valid] = 0.0
    return coef


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
    """Generic twin of ``kernels/mahalanobis.cu`` (same contract as ``cuda.mahalanobis_counts``).

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

    @classmethod
    def from_counts(cls, n: np.ndarray, cov: np.ndarray, counts: np.ndarray) -> "PairStatistics":
        valid = quadratic_coefficients(n, cov)[..., 0] > 0.5
        return cls(np.asarray(n, np.int64), np.asarray(cov, np.float64), valid, counts[..., 0].copy(),
                   counts[..., 1].copy(), counts[..., 2].copy(), counts[..., 3].copy())

    @classmethod
    def concatenate(cls, parts: Sequence["PairStatistics"]) -> "PairStatistics":
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, name) for p in parts], 0) for name in
                     ("selected", "covariance", "valid", "pixels", "satisfied", "intensity_satisfied",
                      "prnu_satisfied")))


def pair_statistics(bk: Backend, disputed: Any, fingerprints: Any, mask: Any | None = None, *,
                    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, use_kernel: bool = True) -> PairStatistics:
    """Covariances and pairwise counts of D disputed traces against C fingerprints.

    Parameters
    ----------
    disputed : (D, 2, P) traces, or (D, C, 2, P) with one trace per camera ("paper" mode).
    fingerprints : (C, 2, P) (or (C, 2, H, W)).
    mask : optional (D, C, P) bool: pixel p is used for camera j (native, or NumPy bool).
    chunk_elements : the generic twin handles ``max(1, chunk_elements // (C*P))`` images at a time.
    use_kernel : try ``bk.kernel("mahalanobis_counts")`` first (CUDA + CuPy, C <= 64).
    """
    t, prints, mask = _validate_pair_inputs(bk, disputed, fingerprints, mask)
    n_images = t.shape[0]
    n_cameras, _, n_pixels = prints.shape
    fused: Callable | None = bk.kernel("mahalanobis_counts") if use_kernel else None
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


# ---------------------------------------------------------------------------------------------
# membership and association
# ---------------------------------------------------------------------------------------------
def wins(satisfied: np.ndarray, unsatisfied: np.ndarray) -> np.ndarray:
    """(D, C) int64: for each claimed camera q, the cameras j != q that q beats (satisfied > unsatisfied)."""
    satisfied, unsatisfied = np.asarray(satisfied), np.asarray(unsatisfied)
    if satisfied.ndim != 3 or satisfied.shape[1] != satisfied.shape[2] or satisfied.shape != unsatisfied.shape:
        raise ValueError(f"satisfied/unsatisfied: expected two (D, C, C) arrays, got {satisfied.shape} and "
                         f"{unsatisfied.shape}")
    beats = satisfied > unsatisfied
    n_cameras = satisfied.shape[1]
    beats[:, np.arange(n_cameras), np.arange(n_cameras)] = False
    return beats.sum(-1).astype(np.int64)


def membership(satisfied: np.ndarray, unsatisfied: np.ndarray) -> np.ndarray:
    """Membership (D, C) float64 in percent: ``100 * wins / (C - 1)``; NaN when C = 1 (no competitor)."""
    won = wins(satisfied, unsatisfied)
    n_cameras = won.shape[1]
    if n_cameras == 1:
        return np.full(won.shape, np.nan)
    return 100.0 * won / (n_cameras - 1)


def associate(won: np.ndarray, camera_names: Sequence[str]) -> list[tuple[str, ...]]:
    """For each image the camera(s) of highest membership, ties kept in camera order; () when C = 1."""
    won = np.asarray(won)
    if won.ndim != 2 or won.shape[1] != len(camera_names):
        raise ValueError(f"wins: expected (D, {len(camera_names)}), got shape {won.shape}")
    if won.shape[1] < 2:
        return [() for _ in range(won.shape[0])]
    return [tuple(camera_names[k] for k in np.flatnonzero(row == row.max())) for row in won]


def _json_float(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


@dataclass(frozen=True, eq=False)
class MahalanobisResult:
    """Outcome of method 2 for D disputed images and C cameras, shaped for the paper's tables.

    Arrays are NumPy: ``pixels, satisfied, intensity_satisfied, prnu_satisfied`` (D, C, C) int64
    indexed ``[d, q, j]`` (q: claimed camera, j: compared camera); ``selected`` (D, C) int64,
    ``covariance`` (D, C, 2, 2) float64, ``valid`` (D, C) bool. Derived: ``unsatisfied``,
    ``wins`` (D, C), ``membership`` (D, C) percent (Table 5; a row is Table 4), ``associations``
    (per image a tuple of camera names; more than one name is a tie), :meth:`pairwise` (Tables 2-3),
    :meth:`effectiveness` (Tables 7-12, needs ``true_cameras``), :meth:`diagnostics`, :meth:`to_dict`.
    """

    camera_names: tuple[str, ...]
    image_names: tuple[str, ...]
    mode: str
    selected: np.ndarray
    covariance: np.ndarray
    valid: np.ndarray
    pixels: np.ndarray
    satisfied: np.ndarray
    intensity_satisfied: np.ndarray
    prnu_satisfied: np.ndarray
    true_cameras: tuple[str | None, ...] | None = None
    n_sigma: float | None = None
    scan_order: str | None = None

    @classmethod
    def from_statistics(cls, stats: PairStatistics, *, mode: str, camera_names: Sequence[str] | None = None,
                        image_names: Sequence[str] | None = None,
                        true_cameras: Sequence[str | None] | None = None, n_sigma: float | None = None,
                        scan_order: str | None = None) -> "MahalanobisResult":
        n_images, n_cameras = stats.selected.shape
        cams = _names(camera_names, n_cameras, "camera_names", "C")
        images = _names(image_names, n_images, "image_names", "D")
        truth = None
        if true_cameras is not None:
            truth = tuple(true_cameras)
            if len(truth) != n_images:
                raise ValueError(f"true_cameras: expected {n_images} entries (one per image), got {len(truth)}")
            unknown = sorted({t for t in truth if t is not None and t not in cams})
            if unknown:
                raise ValueError(f"true_cameras: {unknown} are not among the cameras {list(cams)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return cls(cams, images, mode, stats.selected, stats.covariance, stats.valid, stats.pixels,
                   stats.satisfied, stats.intensity_satisfied, stats.prnu_satisfied, truth, n_sigma, scan_order)

    # derived -----------------------------------------------------------------------------------
    @property
    def unsatisfied(self) -> np.ndarray:
        return self.pixels - self.satisfied

    @property
    def wins(self) -> np.ndarray:
        return wins(self.satisfied, self.unsatisfied)

    @property
    def membership(self) -> np.ndarray:
        return membership(self.satisfied, self.unsatisfied)

    @property
    def associations(self) -> list[tuple[str, ...]]:
        return associate(self.wins, self.camera_names)

    def _image_index(self, image: int | str) -> int:
        if isinstance(image, str):
            return self.image_names.index(image)
        return int(image)

    def pairwise(self, image: int | str) -> np.ndarray:
        """(C, C, 2) int64 ``[q, j] -> (satisfied, unsatisfied)`` for one image (Tables 2-3)."""
        d = self._image_index(image)
        return np.stack([self.satisfied[d], self.unsatisfied[d]], -1)

    def membership_of(self, image: int | str) -> dict[str, float]:
        """Membership of one image to every camera, percent (Table 4)."""
        d = self._image_index(image)
        return dict(zip(self.camera_names, (float(x) for x in self.membership[d])))

    def effectiveness(self) -> dict[str, dict[str, Any]]:
        """Per camera (Tables 7-12): its disputed images, their membership to every camera, the mean
        membership, and the effectiveness rate = fraction associated with that camera ALONE (a tie
        does not count as effective). Needs ``true_cameras``.
        """
        if self.true_cameras is None:
            raise ValueError("effectiveness needs true_cameras (the camera that really took each image)")
        member, assoc = self.membership, self.associations
        out: dict[str, dict[str, Any]] = {}
        for cam in self.camera_names:
            rows = [d for d, t in enumerate(self.true_cameras) if t == cam]
            effective = sum(1 for d in rows if assoc[d] == (cam,))
            out[cam] = {
                "images": [self.image_names[d] for d in rows],
                "membership": {self.image_names[d]: dict(zip(self.camera_names, map(float, member[d])))
                               for d in rows},
                "mean_membership": (dict(zip(self.camera_names, map(float, member[rows].mean(0))))
                                    if rows else {}),
                "effective": effective,
                "rate": effective / len(rows) if rows else math.nan,
            }
        return out

    def diagnostics(self) -> dict[str, Any]:
        """What drove the votes, over all pairs (d, q, j != q) with at least one pixel.

        ``closer_fraction``: mean fraction of pixels where q is closer-or-equal, by the full
        distance, by I0 alone and by PRNU alone (0.5 = a coin flip). ``vote_agreement``: how often
        the one-component vote (closer on more than half the pixels) equals the full vote.
        ``margin``: mean |fraction - 0.5|. ``driver``: the component whose votes agree more.
        """
        n_cameras = len(self.camera_names)
        off = ~np.eye(n_cameras, dtype=bool)[None] & (self.pixels > 0)
        pairs = int(off.sum())
        out: dict[str, Any] = {"pairs": pairs}
        if pairs == 0:
            out.update(closer_fraction=None, vote_agreement=None, margin=None, driver="undetermined")
            return out
        total = self.pixels[off].astype(np.float64)
        fractions = {"full": self.satisfied[off] / total, "intensity": self.intensity_satisfied[off] / total,
                     "prnu": self.prnu_satisfied[off] / total}
        votes = {k: 2 * getattr(self, a)[off] > self.pixels[off] for k, a in
                 (("full", "satisfied"), ("intensity", "intensity_satisfied"), ("prnu", "prnu_satisfied"))}
        agreement = {k: float(np.mean(votes[k] == votes["full"])) for k in ("intensity", "prnu")}
        out["closer_fraction"] = {k: float(v.mean()) for k, v in fractions.items()}
        out["margin"] = {k: float(np.abs(v - 0.5).mean()) for k, v in fractions.items()}
        out["vote_agreement"] = agreement
        if agreement["intensity"] > agreement["prnu"]:
            out["driver"] = "intensity"
        elif agreement["prnu"] > agreement["intensity"]:
            out["driver"] = "prnu"
        else:
            out["driver"] = "undetermined"
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN -> None): per image the membership, association, tie flag,
        pairwise counts with per-component closer fractions, pixels used and covariances; the
        membership matrix; effectiveness (when true cameras are known); diagnostics.
        """
        cams = self.camera_names
        member, assoc, unsat = self.membership, self.associations, self.unsatisfied
        images = []
        for d, name in enumerate(self.image_names):
            pairwise = {}
            for q, cq in enumerate(cams):
                row = {}
                for j, cj in enumerate(cams):
                    n = int(self.pixels[d, q, j])
                    row[cj] = {
                        "satisfied": int(self.satisfied[d, q, j]),
                        "unsatisfied": int(unsat[d, q, j]),
                        "pixels": n,
                        "intensity_closer_fraction": self.intensity_satisfied[d, q, j] / n if n else None,
                        "prnu_closer_fraction": self.prnu_satisfied[d, q, j] / n if n else None,
                    }
                pairwise[cq] = row
            images.append({
                "image": name,
                "true_camera": None if self.true_cameras is None else self.true_cameras[d],
                "membership": {c: _json_float(m) for c, m in zip(cams, member[d])},
                "associated": list(assoc[d]),
                "tie": len(assoc[d]) > 1,
                "selected_pixels": {c: int(s) for c, s in zip(cams, self.selected[d])},
                "valid": {c: bool(v) for c, v in zip(cams, self.valid[d])},
                "covariance": {c: [[_json_float(x) for x in r] for r in self.covariance[d, j]]
                               for j, c in enumerate(cams)},
                "pairwise": pairwise,
            })
        out: dict[str, Any] = {
            "method": "mahalanobis-2dof",
            "mode": self.mode,
            "selection_sigmas": self.n_sigma,
            "scan_order": self.scan_order,
            "cameras": list(cams),
            "images": images,
            "membership_matrix": [[_json_float(m) for m in row] for row in member],
            "effectiveness": None,
            "diagnostics": self.diagnostics(),
            "note": ("membership is undefined with a single camera (no competitor)" if len(cams) == 1 else None),
        }
        if self.true_cameras is not None:
            eff = self.effectiveness()
            for cam in eff:
                eff[cam]["rate"] = _json_float(eff[cam]["rate"])
                eff[cam]["membership"] = {i: {c: _json_float(m) for c, m in row.items()}
                                          for i, row in eff[cam]["membership"].items()}
                eff[cam]["mean_membership"] = {c: _json_float(m) for c, m in eff[cam]["mean_membership"].items()}
            out["effectiveness"] = eff
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)


def _names(names: Sequence[str] | None, count: int, what: str, letter: str) -> tuple[str, ...]:
    if names is None:
        width = max(2, len(str(count)))
        return tuple(f"{letter}{k + 1:0{width}d}" for k in range(count))
    names = tuple(str(n) for n in names)
    if len(names) != count:
        raise ValueError(f"{what}: expected {count} names, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: names must be unique, got {list(names)}")
    return names


# ---------------------------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------------------------
def _clip_statistics(bk: Backend, t: Array, prints: Array, limits: np.ndarray | None, chunk_elements: int,
                     use_kernel: bool) -> PairStatistics:
    """Flat (limits None) or aligned statistics, selecting per chunk so masks stay bounded."""
    if limits is None:
        return pair_statistics(bk, t, prints, None, chunk_elements=chunk_elements, use_kernel=use_kernel)
    n_cameras, _, n_pixels = prints.shape
    step = max(1, int(chunk_elements) // (n_cameras * n_pixels))
    parts = []
    for start in range(0, t.shape[0], step):
        part = t[start:start + step]
        parts.append(pair_statistics(bk, part, prints, select_aligned(bk, part, limits),
                                     chunk_elements=chunk_elements, use_kernel=use_kernel))
    return PairStatistics.concatenate(parts)


def compare_traces(bk: Backend, disputed: Any, fingerprints: Any, *, natural: bool = False,
                   camera_names: Sequence[str] | None = None, image_names: Sequence[str] | None = None,
                   true_cameras: Sequence[str | None] | None = None, n_sigma: float = SELECTION_SIGMAS,
                   chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, use_kernel: bool = True) -> MahalanobisResult:
    """Method 2 on traces of centre clippings, position by position ("flat" or "aligned" mode).

    Parameters
    ----------
    disputed : (D, 2, H, W) or (D, 2, P) traces of the disputed clippings (see :func:`traces`).
    fingerprints : (C, 2, H, W) or (C, 2, P), same pixels.
    natural : False for flat disputed images (all pixels), True for natural ones (aligned selection
        with ``n_sigma`` fingerprint-I0 standard deviations).
    camera_names, image_names : default "C01".., "D01"..; true_cameras : per image its real camera
        name (or None), for the effectiveness tables.
    """
    t = _as_traces(bk, disputed, "disputed")
    prints = _as_traces(bk, fingerprints, "fingerprints")
    if t.shape[2] != prints.shape[2]:
        raise ValueError(f"disputed {_shape(disputed)} and fingerprints {_shape(fingerprints)} differ in pixels")
    limits = intensity_limits(bk, prints, n_sigma) if natural else None
    stats = _clip_statistics(bk, t, prints, limits, chunk_elements, use_kernel)
    return MahalanobisResult.from_statistics(stats, mode="aligned" if natural else "flat",
                                             camera_names=camera_names, image_names=image_names,
                                             true_cameras=true_cameras, n_sigma=n_sigma if natural else None)


def compare_paper(bk: Backend, disputed: Sequence[tuple[Any, Any]], fingerprints: Any, *, order: str = "C",
                  camera_names: Sequence[str] | None = None, image_names: Sequence[str] | None = None,
                  true_cameras: Sequence[str | None] | None = None, n_sigma: float = SELECTION_SIGMAS,
                  use_kernel: bool = True) -> MahalanobisResult:
    """Method 2 on whole natural images as the authors' code does it ("paper" mode).

    ``disputed``: per image the ``(i0, prnu)`` planes (H_d, W_d) of the WHOLE image (sizes may
    differ); ``fingerprints``: (C, 2, H, W). See :func:`select_paper` and the module docstring.
    """
    prints = bk.asarray(fingerprints)
    if prints.ndim != 4 or prints.shape[1] != 2 or min(prints.shape) < 1:
        raise ValueError(f"fingerprints: expected (C, 2, H, W), got shape {tuple(prints.shape)}")
    if len(disputed) < 1:
        raise ValueError("disputed: need at least one image")
    limits = intensity_limits(bk, prints, n_sigma)
    vectors = scan_fingerprints(bk, prints, order)
    n_pixels = vectors.shape[2]
    parts = []
    for i0, prnu in disputed:
        t, mask, _ = select_paper(bk, i0, prnu, limits, n_pixels, order)
        parts.append(pair_statistics(bk, t[None], vectors, mask[None], use_kernel=use_kernel))
    return MahalanobisResult.from_statistics(PairStatistics.concatenate(parts), mode="paper",
                                             camera_names=camera_names, image_names=image_names,
                                             true_cameras=true_cameras, n_sigma=n_sigma, scan_order=order)


def classify_images(bk: Backend, images: Sequence[np.ndarray], fingerprints: Any, *, natural: bool = False,
                    mode: str = "aligned", order: str = "C", sigma: float = DEFAULT_SIGMA,
                    levels: int = DEFAULT_LEVELS, wavelet: str = DEFAULT_WAVELET, batch_size: int = 8,
                    camera_names: Sequence[str] | None = None, image_names: Sequence[str] | None = None,
                    true_cameras: Sequence[str | None] | None = None, n_sigma: float = SELECTION_SIGMAS,
                    use_kernel: bool = True) -> MahalanobisResult:
    """Method 2 from green-channel pixels.

    Parameters
    ----------
    images : D green-channel images (H_d, W_d) on the 0..255 scale (uint8 or floats).
    fingerprints : (C, 2, H, W) from :func:`fingerprints`; (H, W) is the centre clipping.
    natural : False: flat disputed images, centre clipping, all pixels. True: natural images, with
        ``mode`` "aligned" (centre clipping, per-camera selection at the same positions; default) or
        "paper" (whole image, the authors' scan-order pairing; ``order`` "C" or "F").
    sigma, levels, wavelet : residual parameters (the method uses sigma = 2).
    batch_size : images whose traces are computed at once (flat/aligned).
    """
    prints = bk.asarray(fingerprints)
    if prints.ndim != 4 or prints.shape[1] != 2 or min(prints.shape) < 1:
        raise ValueError(f"fingerprints: expected (C, 2, H, W), got shape {tuple(prints.shape)}")
    if mode not in NATURAL_MODES:
        raise ValueError(f"mode must be one of {NATURAL_MODES}, got {mode!r}")
    if len(images) < 1:
        raise ValueError("images: need at least one disputed image")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    names = _names(image_names, len(images), "image_names", "D")
    for name, img in zip(names, images):
        if np.ndim(img) != 2:
            raise ValueError(f"{name}: expected a green-channel plane (H, W), got shape {np.shape(img)}")
    clip = (int(prints.shape[2]), int(prints.shape[3]))
    if natural and mode == "paper":
        whole = []
        for img in images:
            i0, prnu = traces(bk, np.asarray(img)[None], sigma, levels, wavelet)
            whole.append((i0[0], prnu[0]))
        return compare_paper(bk, whole, prints, order=order, camera_names=camera_names, image_names=names,
                             true_cameras=true_cameras, n_sigma=n_sigma, use_kernel=use_kernel)
    vectors = prints.reshape(prints.shape[0], 2, -1)
    limits = intensity_limits(bk, vectors, n_sigma) if natural else None
    parts = []
    for start in range(0, len(images), batch_size):
        batch = np.stack([center_clip(np.asarray(img), clip, name) for img, name in
                          zip(images[start:start + batch_size], names[start:start + batch_size])])
        i0, prnu = traces(bk, batch, sigma, levels, wavelet)
        parts.append(_clip_statistics(bk, trace_vectors(bk, i0, prnu), vectors, limits, DEFAULT_CHUNK_ELEMENTS,
                                      use_kernel))
    return MahalanobisResult.from_statistics(PairStatistics.concatenate(parts),
                                             mode="aligned" if natural else "flat", camera_names=camera_names,
                                             image_names=names, true_cameras=true_cameras,
                                             n_sigma=n_sigma if natural else None)

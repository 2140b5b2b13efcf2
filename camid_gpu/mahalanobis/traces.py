"""Traces (I0, PRNU) of images and the per-camera mean-trace fingerprints of method 2.

The method and its notation: see :mod:`camid_gpu.mahalanobis`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import Array, Backend
from camid_gpu.config import DEFAULT_LEVELS, DEFAULT_WAVELET, SIGMA_MAHALANOBIS
from camid_gpu.prnu.residual import noise_extract, wiener_dft, zero_mean_total


# ---------------------------------------------------------------------------------------------
# traces and fingerprints
# ---------------------------------------------------------------------------------------------
def traces(bk: Backend, clips: Any, sigma: float = SIGMA_MAHALANOBIS, levels: int = DEFAULT_LEVELS,
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


def fingerprint(bk: Backend, flats: Any, sigma: float = SIGMA_MAHALANOBIS, levels: int = DEFAULT_LEVELS,
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


def fingerprints(bk: Backend, flats_per_camera: Sequence[Any], sigma: float = SIGMA_MAHALANOBIS,
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

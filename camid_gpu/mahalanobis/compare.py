"""Comparing disputed traces or images with camera fingerprints: the entry points of method 2.

The method and its notation: see :mod:`camid_gpu.mahalanobis`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import Array, Backend
from camid_gpu.io.geometry import center_clip
from camid_gpu.config import DEFAULT_LEVELS, DEFAULT_WAVELET, MAHALANOBIS_CHUNK_ELEMENTS, NATURAL_MODES, SIGMA_MAHALANOBIS
from camid_gpu.mahalanobis.constants import SELECTION_SIGMAS
from camid_gpu.mahalanobis.results import MahalanobisResult, _names
from camid_gpu.mahalanobis.selection import (
    _as_traces,
    _shape,
    intensity_limits,
    scan_fingerprints,
    select_aligned,
    select_paper,
)
from camid_gpu.mahalanobis.statistics import PairStatistics, pair_statistics
from camid_gpu.mahalanobis.traces import trace_vectors, traces


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
                   chunk_elements: int = MAHALANOBIS_CHUNK_ELEMENTS, use_kernel: bool = True) -> MahalanobisResult:
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
                    mode: str = "aligned", order: str = "C", sigma: float = SIGMA_MAHALANOBIS,
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
        parts.append(_clip_statistics(bk, trace_vectors(bk, i0, prnu), vectors, limits, MAHALANOBIS_CHUNK_ELEMENTS,
                                      use_kernel))
    return MahalanobisResult.from_statistics(PairStatistics.concatenate(parts),
                                             mode="aligned" if natural else "flat", camera_names=camera_names,
                                             image_names=names, true_cameras=true_cameras,
                                             n_sigma=n_sigma if natural else None)

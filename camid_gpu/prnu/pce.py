"""Matching a disputed image to PRNU fingerprints: cross-correlation, PCE, NCC, false-alarm probability.

Test statistic (Goljan, Fridrich & Filler 2009; Binghamton ``crosscorr`` and ``PCE``): the disputed
image's residual ``W`` (after WienerInDFT) is cross-correlated with ``I * K`` (``I`` the image's gray
intensity on the 0..255 scale, ``K`` the camera fingerprint), both mean-removed, circularly by FFT
and without normalisation::

    C[s] = sum_x W[x] * (I K)[x + s]

(zero shift at ``C[0, 0]``; a peak at ``s`` means ``W`` lines up with ``I K`` shifted by ``s``, e.g. a crop
taken at offset ``s``). The peak is searched over shifts ``0 <= s <= shift_range`` (default: no
shift, ``C[0, 0]``), or over all shifts (``shift_range=None``), and::

    PCE = sign(peak) * peak^2 / mean(C^2 outside the 11 x 11 neighbourhood of the peak, circularly)

Under the null hypothesis (another camera) the correlation at one shift is ~N(0, energy), so the
p-value of one shift is ``Q(peak / sqrt(energy))`` and the false-alarm probability of the search
over ``n`` shifts is ``1 - (1 - p)^n``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camid_gpu.backend import Array, Backend
from camid_gpu.config import PCE_CAMERA_CHUNK, PEAK_NEIGHBOURHOOD, SHIFT_RANGE, check_whole_number


@dataclass
class PCEScores:
    """PCE statistics of N disputed images against C fingerprints (arrays are (N, C) unless noted)."""

    pce: np.ndarray
    peak: np.ndarray
    peak_shift: np.ndarray  # (N, C, 2) int: (rows, columns) shift of the peak
    ncc: np.ndarray  # normalised correlation at the peak
    log10_p_fa: np.ndarray  # log10 of the false-alarm probability of the search
    shifts_searched: int = 1
    extra: dict = field(default_factory=dict)


def crosscorr(bk: Backend, residual: Array, template: Array) -> Array:
    """Circular cross-correlation ``C[s] = sum_x a[x] b[x+s]`` of mean-removed ``(..., H, W)`` arrays."""
    a = residual - bk.mean(residual, (-2, -1))
    b = template - bk.mean(template, (-2, -1))
    spectrum = bk.fft2(a).conj() * bk.fft2(b)
    return bk.real(bk.ifft2(spectrum))


def _circular_distance(bk: Backend, n: int, centre: np.ndarray, axis_shape: tuple[int, ...]) -> Array:
    """|index - centre| measured around a circle of length n, broadcast to ``axis_shape``."""
    idx = bk.arange(n).reshape(axis_shape)
    c = bk.asarray(centre.astype(np.float64)).reshape(*centre.shape, *([1] * 2))
    d = (idx - c) % n
    return bk.minimum(d, n - d)


def log10_false_alarm(peak: np.ndarray, energy: np.ndarray, shifts: int) -> np.ndarray:
    """log10 of ``1 - (1 - Q(peak/sqrt(energy)))^shifts``, accurate for tiny probabilities."""
    from scipy import special  # on first use: scipy.special costs ~0.3 s of every start-up

    z = np.asarray(peak, np.float64) / np.sqrt(np.asarray(energy, np.float64))
    log_p = special.log_ndtr(-z)  # natural log of the one-shift p-value
    p = np.exp(log_p)
    with np.errstate(divide="ignore"):
        log_pfa = np.where(p < 1e-12, np.log(shifts) + log_p, np.log(-np.expm1(shifts * np.log1p(-np.minimum(p, 1 - 1e-16)))))
    return log_pfa / math.log(10)


def pce(bk: Backend, corr: Array, shift_range: tuple[int, int] | None = SHIFT_RANGE,
        neighbourhood: int = PEAK_NEIGHBOURHOOD) -> dict[str, np.ndarray]:
    """PCE of correlation planes ``(..., H, W)``.

    Returns host arrays (leading shape ``...``): ``pce``, ``peak``, ``peak_shift`` (``(..., 2)``),
    ``energy``, ``log10_p_fa``, ``shifts`` (number of shifts searched).
    """
    h, w = corr.shape[-2:]
    if shift_range is None:
        region, sy, sx = corr, h - 1, w - 1
    else:
        sy, sx = int(shift_range[0]), int(shift_range[1])
        if not (0 <= sy < h and 0 <= sx < w):
            raise ValueError(f"shift_range {shift_range} must lie within the correlation size {h}x{w}")
        region = corr[..., :sy + 1, :sx + 1]
    flat = bk.argmax_flat(region)
    py, px = np.divmod(flat, sx + 1)
    lead = corr.shape[:-2]
    flat_corr = corr.reshape(-1, h, w)
    peaks = bk.to_numpy(flat_corr[np.arange(flat_corr.shape[0]), py.ravel(), px.ravel()]).astype(np.float64)
    # energy outside the (circular) neighbourhood of the peak
    half = neighbourhood // 2
    dy = _circular_distance(bk, h, py.reshape(-1), (1, h, 1))
    dx = _circular_distance(bk, w, px.reshape(-1), (1, 1, w))
    near = (dy <= half) & (dx <= half)
    squared = flat_corr * flat_corr
    total = bk.to_numpy(bk.sum(squared, (-2, -1))).reshape(-1).astype(np.float64)
    near_sum = bk.to_numpy(bk.sum(bk.where(near, squared, 0.0), (-2, -1))).reshape(-1).astype(np.float64)
    near_count = min(neighbourhood, h) * min(neighbourhood, w)
    energy = (total - near_sum) / max(h * w - near_count, 1)
    shifts = (sy + 1) * (sx + 1)
    pce_value = np.sign(peaks) * peaks**2 / energy
    return {
        "pce": pce_value.reshape(lead),
        "peak": peaks.reshape(lead),
        "peak_shift": np.stack([py, px], -1).reshape(*lead, 2),
        "energy": energy.reshape(lead),
        "log10_p_fa": log10_false_alarm(peaks, energy, shifts).reshape(lead),
        "shifts": np.asarray(shifts),
    }


def pce_scores(bk: Backend, residuals: Array, intensities: Array, fingerprints: Array,
               shift_range: tuple[int, int] | None = SHIFT_RANGE, camera_chunk: int = PCE_CAMERA_CHUNK) -> PCEScores:
    """PCE of N disputed images against C fingerprints of one size.

    residuals : (N, H, W) Wiener-filtered residuals of the disputed images (0..255 units).
    intensities : (N, H, W) gray intensity of the same images on the 0..255 scale.
    fingerprints : (C, H, W) fingerprints K (dimensionless): a device array, or a host array or a list of C
        host (H, W) arrays, moved to the device one camera chunk at a time (so C full-frame fingerprints
        never sit there together, and a list is never stacked whole).
    camera_chunk : fingerprints correlated per step (bounds device memory to ~N * chunk planes).

    Refused (ValueError naming the argument): other shapes, images not larger than the peak neighbourhood,
    and a residual or template ``I * K`` that is constant (all zero: the PCE would be NaN).
    """
    n, h, w, c = _checked_shapes(residuals, intensities, fingerprints)
    camera_chunk = check_whole_number("camera_chunk", camera_chunk)
    parts = []
    for start in range(0, c, camera_chunk):
        part = fingerprints[start:start + camera_chunk]
        k = bk.asarray(np.stack(part) if isinstance(part, (list, tuple)) else part)
        templates = intensities[:, None] * k[None]  # (N, c, H, W)
        # the NCC's norms |a| |b|, both mean-removed; first, so that a constant input is refused before its 0/0
        a_energy, b_energy = (bk.to_numpy(bk.sum(v * v, (-2, -1))).reshape(n, -1) for v in
                              (residuals[:, None] - bk.mean(residuals[:, None], (-2, -1)),
                               templates - bk.mean(templates, (-2, -1))))
        _refuse_constant(a_energy, b_energy, start)
        corr = crosscorr(bk, residuals[:, None], templates)
        stats = pce(bk, corr, shift_range)
        stats["ncc"] = stats["peak"] / np.sqrt(a_energy * b_energy)  # NCC at the peak: C / (|a| |b|)
        parts.append(stats)
    join = lambda key: np.concatenate([p[key] for p in parts], axis=1)  # noqa: E731
    return PCEScores(pce=join("pce"), peak=join("peak"), peak_shift=join("peak_shift").astype(np.int64),
                     ncc=join("ncc"), log10_p_fa=join("log10_p_fa"), shifts_searched=int(parts[0]["shifts"]),
                     extra={"energy": join("energy")})


def _checked_shapes(residuals: Any, intensities: Any, fingerprints: Any) -> tuple[int, int, int, int]:
    """(N, H, W, C) of :func:`pce_scores`' inputs, or ValueError naming the argument that does not fit."""
    for name, value in (("residuals", residuals), ("intensities", intensities)):
        if len(getattr(value, "shape", ())) != 3:
            raise ValueError(f"pce_scores: {name} must be a batch (N, H, W), got shape "
                             f"{tuple(getattr(value, 'shape', ()))} (a single image: pass it as x[None])")
    n, h, w = residuals.shape
    c = len(fingerprints)
    k_shapes = {tuple(k.shape) for k in fingerprints} if isinstance(fingerprints, (list, tuple)) \
        else {tuple(fingerprints.shape[1:])}
    if intensities.shape != residuals.shape or k_shapes != {(h, w)}:
        raise ValueError(f"pce_scores: shape mismatch: residuals {tuple(residuals.shape)}, intensities "
                         f"{tuple(intensities.shape)}, fingerprints {sorted(k_shapes)} (C = {c})")
    if n < 1 or c < 1 or min(h, w) <= PEAK_NEIGHBOURHOOD:
        raise ValueError(f"pce_scores: needs at least one image and one fingerprint larger than the peak "
                         f"neighbourhood ({PEAK_NEIGHBOURHOOD}x{PEAK_NEIGHBOURHOOD}, whose outside gives the "
                         f"correlation energy); got N={n}, C={c}, {h}x{w}")
    return n, h, w, c


def _refuse_constant(residual_energy: np.ndarray, template_energy: np.ndarray, first_camera: int) -> None:
    """ValueError naming the first residual, or image x fingerprint template, that is constant (zero energy
    after its mean is removed): its correlation plane is all zero and its PCE 0/0."""
    bad = np.flatnonzero(~(residual_energy[:, 0] > 0))
    if bad.size:
        raise ValueError(f"pce_scores: residuals[{bad[0]}] is constant (all zero after its mean is removed): "
                         f"no PCE can be computed")
    bad_pairs = np.argwhere(~(template_energy > 0))
    if bad_pairs.size:
        i, j = bad_pairs[0]
        raise ValueError(f"pce_scores: intensities[{i}] x fingerprints[{first_camera + j}] is constant (an "
                         f"all-zero intensity or fingerprint): no PCE can be computed")

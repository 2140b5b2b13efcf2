"""A video's PRNU: frames pooled by the maximum-likelihood estimate, scored by PCE, stabilised frames aligned.

Every frame ``i`` kept (:mod:`camid_gpu.io.video`) gives its Wiener-filtered residual ``W_i`` and intensity
``I_i`` (the luma, 0..255). As for a fingerprint (:mod:`camid_gpu.prnu.fingerprint`), the video's PRNU is the
ML estimate ``K_v = sum_i w_i W_i I_i / sum_i w_i I_i^2``, and the matched statistic against a camera's
fingerprint ``K`` is the correlation of its numerator ``X = sum_i w_i W_i I_i`` with ``K`` (the
denominator only scales ``K_v`` pixel by pixel: the test statistic needs ``X``)::

    C[s] = sum_x X[x] K[x + s] = sum_i w_i C_i[s],   C_i[s] = sum_x W_i[x] I_i[x] K[x + s]

so the pooled correlation plane is the weighted sum of the frames' planes, computed frame by frame (one FFT
per frame and camera; nothing grows with the number of frames). The frame weights are
``w_i = q(type_i) / var(W_i)``: ``q`` the picture type's quality (``config.VIDEO_FRAME_WEIGHTS``: intra
frames carry the PRNU, predicted frames little, bidirectional ones almost none) and ``1/var(W_i)`` the ML
weight of a frame whose residual is noisier (textured or noisy content). The quantiser would be a finer
quality measure, but PyAV/FFmpeg no longer export per-macroblock quantiser tables, so it is not used.

PCE is :func:`camid_gpu.prnu.pce.pce` of the pooled plane at zero shift, with its P_FA.

Stabilised video: in-camera stabilisation moves each frame against the sensor, so the frames' peaks lie at
different shifts and the plain sum loses them. Each frame's plane is therefore also searched over shifts
``|s| <= R`` (``align_range``; ``M = (2R + 1)^2`` shifts) and its peak's ``z_i = peak_i / sqrt(energy_i)`` kept:
the frame is aligned to that shift. The aligned statistic is ``T = sum_i q_i z_i``; under the null hypothesis
(another camera) each ``z_i`` is the largest of ``M`` standard normals (their correlation planes are white), so
its false-alarm probability is bounded by Chernoff's bound
``P(T >= t) <= min_theta exp(-theta t) prod_i E[exp(theta q_i X_M)]`` with ``X_M`` the maximum of ``M`` standard
normals (its moment generating function integrated numerically) -- the alignment is paid for in the P_FA, so
noise frames aligned to their own maxima never add up to a match. Both tests are made; the video's P_FA is the
union bound over the two (twice the smaller), and its ``pce`` is the PCE equivalent of that P_FA (the ``z^2``
whose one-shift false-alarm probability it is: PCE 60 is P_FA 4.6e-15 as for a still), so that the one decision
threshold applies. Stabilisation is *detected* when the aligned test is the stronger one and the frames' peaks
lie at more than one shift. Frames are moved by translation only (no scale or rotation search).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import Array, Backend
from camid_gpu.config import (PCE_CAMERA_CHUNK, PEAK_NEIGHBOURHOOD, VIDEO_ALIGN_RANGE, VIDEO_FRAME_WEIGHTS,
                              VIDEO_OTHER_WEIGHT)
from scipy import optimize, special

from camid_gpu.prnu.pce import log10_false_alarm, pce
from camid_gpu.prnu.residual import pixels_to_device, residual_native, wiener_dft


def type_weight(picture_type: str) -> float:
    """The quality weight ``q`` of a picture type (I, P, B, ...)."""
    return float(VIDEO_FRAME_WEIGHTS.get(picture_type, VIDEO_OTHER_WEIGHT))


def frame_products(bk: Backend, frames: np.ndarray, sigma: float, levels: int, wavelet: str) -> tuple[Array, Array,
                                                                                                        np.ndarray]:
    """``(W I - mean, I, var(W))`` of a batch of luma frames ``(n, h, w)``: the frames' weighted residuals
    (zero-mean), their intensities (native arrays) and each residual's variance (host)."""
    x = pixels_to_device(bk, frames)
    residual = wiener_dft(bk, residual_native(bk, x, sigma, levels, wavelet))
    variance = bk.to_numpy(bk.std(residual, (-2, -1))).reshape(-1).astype(np.float64) ** 2
    weighted = residual * x
    return weighted - bk.mean(weighted, (-2, -1)), x, variance


@dataclass
class FrameScore:
    """One frame against one camera: its own PCE over the alignment search, the peak's shift, whether it was
    moved into the pooled plane."""

    pce: float
    shift: tuple[int, int]
    log10_p_fa: float
    z: float  # peak / sqrt(energy) at the frame's own peak


@dataclass
class VideoPool:
    """Streaming pooled correlation of a video's frames with the fingerprints ``cameras`` ((name, K) pairs, all
    of the frames' size), and the video's own ML sums (``numerator`` X and ``denominator`` S).

    >>> pool = VideoPool(bk, cameras, sigma=2.0, levels=4, wavelet="db4")
    >>> pool.add(frames, types)       # (n, h, w) uint8 luma, their picture types
    >>> pool.scores()                 # per camera: pooled PCE, P_FA, alignment, per-frame series
    """

    bk: Backend
    cameras: Sequence[tuple[str, np.ndarray]]
    sigma: float
    levels: int
    wavelet: str
    align_range: int = VIDEO_ALIGN_RANGE
    camera_chunk: int = PCE_CAMERA_CHUNK
    frames: int = 0
    weight_total: float = 0.0
    numerator: Any = None
    denominator: Any = None
    per_frame: list[dict[str, FrameScore]] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    qualities: list[float] = field(default_factory=list)
    shifts: int = 1

    def __post_init__(self) -> None:
        self._spectra: dict[str, Array] = {}
        self._plain: dict[str, Array] = {}   # the weighted sum of the frames' planes
        self._unit: dict[str, Array] = {}  # the sum of the frames' quality-weighted unit planes (all batches)
        self._quality_batch: list[float] = []

    def _spectrum(self, name: str, k: np.ndarray) -> Array:
        if name not in self._spectra:
            kk = self.bk.asarray(np.asarray(k, np.float32))
            self._spectra[name] = self.bk.fft2(kk - self.bk.mean(kk, (-2, -1)))
        return self._spectra[name]

    def add(self, frames: np.ndarray, types: Sequence[str]) -> None:
        """Add a batch of luma frames ``(n, h, w)`` with their picture types."""
        bk = self.bk
        products, intensity, variance = frame_products(bk, frames, self.sigma, self.levels, self.wavelet)
        quality = np.array([type_weight(t) for t in types], np.float64)
        weights = quality / np.maximum(variance, 1e-12)
        w_native = bk.asarray(weights.astype(np.float32)).reshape(-1, 1, 1)
        numerator = bk.sum(products * w_native, 0)[0]
        denominator = bk.sum(intensity * intensity * w_native, 0)[0]
        self.numerator = numerator if self.numerator is None else self.numerator + numerator
        self.denominator = denominator if self.denominator is None else self.denominator + denominator
        self._quality_batch = [float(q) for q in quality]
        spectra = bk.fft2(products).conj()
        del products, intensity
        rows: list[dict[str, FrameScore]] = [{} for _ in range(len(types))]
        for start in range(0, len(self.cameras), self.camera_chunk):
            self._correlate(spectra, weights, self.cameras[start:start + self.camera_chunk], rows)
        self.per_frame.extend(rows)
        self.weights.extend(float(w) for w in weights)
        self.qualities.extend(float(q) for q in quality)
        self.frames += len(types)
        self.weight_total += float(weights.sum())

    def _correlate(self, spectra: Array, weights: np.ndarray, chunk: Sequence[tuple[str, np.ndarray]],
                   rows: list[dict[str, FrameScore]]) -> None:
        bk, r = self.bk, int(self.align_range)
        ks = bk.stack([self._spectrum(name, k) for name, k in chunk], 0)
        corr = bk.real(bk.ifft2(spectra[:, None] * ks[None]))  # (n, c, h, w)
        h, w = corr.shape[-2:]
        r = max(0, min(r, (h - 1) // 2, (w - 1) // 2))
        self.shifts = (2 * r + 1) ** 2
        stats = frame_peaks(bk, corr, r)
        plain = bk.sum(corr * bk.asarray(weights.astype(np.float32)).reshape(-1, 1, 1, 1), 0)[0]
        # the frames' planes in units of their own noise, weighted by quality: how dependent the frames are
        scale = np.asarray(self._quality_batch, np.float64)[:, None] / np.sqrt(np.maximum(stats["energy"], 1e-300))
        unit = bk.sum(corr * bk.asarray(scale.astype(np.float32))[..., None, None], 0)[0]
        for c, (name, _) in enumerate(chunk):
            self._unit[name] = unit[c] if name not in self._unit else self._unit[name] + unit[c]
            for i in range(corr.shape[0]):
                z = float(stats["peak"][i, c] / math.sqrt(max(float(stats["energy"][i, c]), 1e-300)))
                rows[i][name] = FrameScore(float(stats["pce"][i, c]), tuple(int(v) for v in stats["shift"][i, c]),
                                           float(stats["log10_p_fa"][i, c]), z)
            self._plain[name] = plain[c] if name not in self._plain else self._plain[name] + plain[c]

    def scores(self) -> dict[str, dict[str, Any]]:
        """Per camera: ``pce`` (the PCE equivalent of ``log10_p_fa``, the union of the plain and the aligned
        test), the plain pooled plane's ``pce_plain`` and ``log10_p_fa_plain``, the aligned test's
        ``log10_p_fa_aligned``, and whether stabilisation was detected."""
        if not self.frames:
            raise ValueError("no frame was added")
        out = {}
        names = [name for name, _ in self.cameras]
        stats = pce(self.bk, self.bk.stack([self._plain[n] for n in names], 0), (0, 0))
        quality = np.array(self.qualities, np.float64)
        for c, name in enumerate(names):
            frames = [row[name] for row in self.per_frame]
            plain = float(stats["log10_p_fa"][c])
            tests = [plain]
            aligned = None
            if self.align_range > 0:
                # frames that are not independent (a still scene) count as fewer frames: the energy of their
                # summed unit planes against the independent frames' sum of squared weights, over every batch
                # (a sum per batch capped the correction at the batch's size: 8 copies of a frame in two batches
                # counted as two frames' worth of independent evidence)
                unit = self._unit[name]
                unit_energy = float(np.asarray(self.bk.to_numpy(self.bk.mean(unit * unit, (-2, -1)))).reshape(-1)[0])
                inflation = min(max(unit_energy / float(np.sum(quality ** 2)), 1.0), float(len(frames)))
                aligned = sum_of_maxima_log10_p(float(np.dot(quality, [f.z for f in frames])), quality, self.shifts,
                                                inflation)
                tests.append(aligned)
            if not all(math.isfinite(t) for t in tests):  # min() would drop a NaN and read it as a clean answer
                raise ValueError(f"camera {name!r}: the pooled frames' test is not finite (plain {plain}, aligned "
                                 f"{aligned}): a constant fingerprint or frames without content; no decision")
            log_pfa = min(0.0, min(tests) + math.log10(len(tests)))
            shifts = {f.shift for f in frames}
            out[name] = {"pce": equivalent_pce(log_pfa), "log10_p_fa": log_pfa,
                         "pce_plain": float(stats["pce"][c]), "log10_p_fa_plain": plain,
                         "log10_p_fa_aligned": aligned,
                         "stabilisation_detected": bool(aligned is not None and len(shifts) > 1
                                                        and aligned < min(plain, STABILISED_LOG10_PFA))}
        return out

    def pooled_numerator(self) -> Array:
        """``X - mean(X)``: the video's weighted residual sum (the scale/crop search's disputed side)."""
        return self.numerator - self.bk.mean(self.numerator, (-2, -1))

    def estimate(self) -> np.ndarray:
        """The video's ML PRNU estimate ``K_v = X / S`` (host float32)."""
        return self.bk.to_numpy(self.numerator / (self.denominator + 1e-6)).astype(np.float32)


def frame_peaks(bk: Backend, corr: Array, r: int) -> dict[str, np.ndarray]:
    """Each ``(n, c, h, w)`` correlation plane's peak over shifts ``-r..r`` both ways and its PCE, as
    :func:`camid_gpu.prnu.pce.pce` defines them (energy over the whole plane outside the 11 x 11 neighbourhood of
    the peak, circularly), computed from the plane's total energy and small gathers (no full-plane masks: the
    per-frame search was slower than the residual itself). Host arrays ``(n, c)``: pce, peak, energy,
    log10_p_fa; ``shift`` ``(n, c, 2)``."""
    h, w = corr.shape[-2:]
    rows_idx, cols_idx = np.r_[h - r:h, 0:r + 1], np.r_[w - r:w, 0:r + 1]  # shifts -r..r, wrapped
    window = bk.to_numpy(corr[..., rows_idx, :][..., cols_idx]).astype(np.float64)  # (n, c, 2r+1, 2r+1)
    total = bk.to_numpy(bk.sum(corr * corr, (-2, -1))).reshape(window.shape[:2]).astype(np.float64)
    flat = window.reshape(*window.shape[:2], -1)
    best = flat.argmax(-1)
    peak = np.take_along_axis(flat, best[..., None], -1)[..., 0]
    shift = np.stack(np.divmod(best, 2 * r + 1), -1) - r
    half = PEAK_NEIGHBOURHOOD // 2
    near = np.zeros_like(total)
    for i in range(corr.shape[0]):
        for c in range(corr.shape[1]):
            ys = np.arange(shift[i, c, 0] - half, shift[i, c, 0] + half + 1) % h
            xs = np.arange(shift[i, c, 1] - half, shift[i, c, 1] + half + 1) % w
            block = bk.to_numpy(corr[i, c][np.unique(ys)][:, np.unique(xs)]).astype(np.float64)
            near[i, c] = float((block * block).sum())
    count = min(PEAK_NEIGHBOURHOOD, h) * min(PEAK_NEIGHBOURHOOD, w)
    energy = (total - near) / max(h * w - count, 1)
    if not np.all(energy > 0):  # as prnu.pce refuses a constant plane: 0/0 would be a NaN PCE read as no match
        raise ValueError("a frame's correlation plane with a fingerprint has no energy outside its peak (a "
                         "constant fingerprint or frame): no PCE")
    return {"pce": np.sign(peak) * peak ** 2 / energy, "peak": peak, "energy": energy, "shift": shift,
            "log10_p_fa": log10_false_alarm(peak, energy, (2 * r + 1) ** 2)}


#: the aligned test must reach this log10 P_FA (and beat the plain one) for stabilisation to be said detected
STABILISED_LOG10_PFA = -6.0


@functools.lru_cache(maxsize=8)
def _max_log_density(shifts: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid ``x`` and ``log(f(x) dx)`` of the largest of ``shifts`` standard normals."""
    x = np.arange(-6.0, 90.0, 0.002)
    log_f = math.log(shifts) - 0.5 * x * x - 0.5 * math.log(2 * math.pi) + (shifts - 1) * special.log_ndtr(x)
    return x, log_f + math.log(0.002)


def _log_mgf(s: float, shifts: int) -> float:
    x, log_f = _max_log_density(shifts)
    return float(special.logsumexp(log_f + s * x))


def sum_of_maxima_log10_p(total: float, quality: np.ndarray, shifts: int, inflation: float = 1.0) -> float:
    """log10 of Chernoff's bound on ``P(sum_i q_i X_i >= total)``, ``X_i`` independent maxima of ``shifts``
    standard normals (the aligned test's P_FA; see the module notes). ``inflation`` k >= 1: frames that are not
    independent, taken as groups of k identical ones (the exponent ``(1/k) sum_i log E exp(theta k q_i X)``)."""
    quality = np.asarray(quality, np.float64)
    kinds, counts = np.unique(quality[quality > 0], return_counts=True)
    if not kinds.size:
        return 0.0

    def exponent(theta: float) -> float:
        return -theta * total + sum(int(n) * _log_mgf(theta * inflation * q, shifts)
                                    for q, n in zip(kinds, counts)) / inflation

    found = optimize.minimize_scalar(exponent, bounds=(0.0, 80.0 / float(kinds.max() * inflation)), method="bounded",
                                     options={"xatol": 1e-6})
    return min(0.0, float(found.fun)) / math.log(10)


def equivalent_pce(log10_p_fa: float) -> float:
    """The PCE whose one-shift false-alarm probability is ``10**log10_p_fa``: ``z^2`` with
    ``Q(z) = 10**log10_p_fa``; 0 when that probability is 0.5 or more."""
    target = log10_p_fa * math.log(10)
    if target >= math.log(0.5):  # no evidence either way (z <= 0): written as 0 rather than a negative z^2
        return 0.0
    z = optimize.brentq(lambda v: float(special.log_ndtr(-v)) - target, -40.0, 1e5, xtol=1e-9)
    return math.copysign(z * z, z)


def search_pooled(bk: Backend, weighted: Array, cameras: Sequence[tuple[str, np.ndarray]], scales: np.ndarray,
                  template_blur: float | None = None) -> list[Any]:
    """The scale and crop search (:func:`camid_gpu.prnu.search.search_scale_crop`'s grid and P_FA over every
    (scale, offset) searched) with a video's pooled weighted residual ``weighted`` (zero-mean ``X``) as the
    disputed side. Returns one ``SearchResult`` per camera."""
    from camid_gpu.prnu import search as sc

    cams = sc._check_fingerprints(list(cameras))
    grid = sc.check_scales(scales)
    h, w = weighted.shape[-2:]
    sc._check_fits((h, w), cams, grid)
    blur = sc.TEMPLATE_BLUR if template_blur is None else template_blur
    evaluate = sc._ScaleEvaluator(bk, weighted, (h, w), blur, 0, PCE_CAMERA_CHUNK)
    return sc.search_cameras(evaluate, cams, grid, (h, w), math.inf, False)


def hybrid_scales(frame: tuple[int, int], sensor: tuple[int, int], step: float, span: float) -> np.ndarray:
    """The scale grid of a video frame against a still sensor: from the smallest scale at which the frame fits
    (``max(h/H, w/W)``: the frame spans the sensor's width or height) up ``span`` of it, by ``step``; and 1 (a
    crop of the sensor, not scaled)."""
    lo = max(frame[0] / sensor[0], frame[1] / sensor[1])
    if lo > 1:
        return np.array([], np.float64)
    hi = min(1.0, lo * (1.0 + span))
    count = int(math.floor((hi - lo) / step + 1e-9))
    grid = lo + step * np.arange(count + 1)
    # 1: a video mode that crops the sensor without scaling it
    return np.unique(np.round(np.minimum(np.append(grid, [hi, 1.0]), 1.0), 6))


def pooled_log10_p_fa(peak: float, energy: float, positions: int) -> float:
    """log10 P_FA of a pooled peak over ``positions`` searched."""
    return float(log10_false_alarm(np.asarray(peak), np.asarray(energy), positions))


__all__ = ["FrameScore", "VideoPool", "equivalent_pce", "frame_products", "hybrid_scales", "search_pooled",
           "sum_of_maxima_log10_p", "type_weight"]

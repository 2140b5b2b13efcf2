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
different shifts and the plain sum loses them. Each frame's plane is searched over shifts ``|s| <= R``
(``align_range``); a frame whose own peak there is significant (search P_FA under ``align_pfa``) is moved by
that shift before it is added (``C_i[s + d_i]``), the others are added unmoved. Stabilisation is
*detected* when significant frames peak at more than one shift. Choosing shifts by the data could create a
match from noise only through a frame that passed the gate by chance, so when any frame was moved the
pooled P_FA is bounded by the union ``P_pooled + frames * align_pfa``. Frames are moved by translation only
(no scale or rotation search).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import Array, Backend
from camid_gpu.config import (PCE_CAMERA_CHUNK, VIDEO_ALIGN_PFA, VIDEO_ALIGN_RANGE, VIDEO_FRAME_WEIGHTS,
                              VIDEO_OTHER_WEIGHT)
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
    aligned: bool


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
    align_pfa: float = VIDEO_ALIGN_PFA
    camera_chunk: int = PCE_CAMERA_CHUNK
    frames: int = 0
    weight_total: float = 0.0
    numerator: Any = None
    denominator: Any = None
    per_frame: list[dict[str, FrameScore]] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._spectra: dict[str, Array] = {}
        self._pooled: dict[str, Array] = {}  # aligned
        self._plain: dict[str, Array] = {}   # never moved

    def _spectrum(self, name: str, k: np.ndarray) -> Array:
        if name not in self._spectra:
            kk = self.bk.asarray(np.asarray(k, np.float32))
            self._spectra[name] = self.bk.fft2(kk - self.bk.mean(kk, (-2, -1)))
        return self._spectra[name]

    def add(self, frames: np.ndarray, types: Sequence[str]) -> None:
        """Add a batch of luma frames ``(n, h, w)`` with their picture types."""
        bk = self.bk
        products, intensity, variance = frame_products(bk, frames, self.sigma, self.levels, self.wavelet)
        weights = np.array([type_weight(t) for t in types], np.float64) / np.maximum(variance, 1e-12)
        w_native = bk.asarray(weights.astype(np.float32)).reshape(-1, 1, 1)
        numerator = bk.sum(products * w_native, 0)[0]
        denominator = bk.sum(intensity * intensity * w_native, 0)[0]
        self.numerator = numerator if self.numerator is None else self.numerator + numerator
        self.denominator = denominator if self.denominator is None else self.denominator + denominator
        spectra = bk.fft2(products).conj()
        del products, intensity
        rows: list[dict[str, FrameScore]] = [{} for _ in range(len(types))]
        for start in range(0, len(self.cameras), self.camera_chunk):
            self._correlate(spectra, weights, self.cameras[start:start + self.camera_chunk], rows)
        self.per_frame.extend(rows)
        self.weights.extend(float(w) for w in weights)
        self.frames += len(types)
        self.weight_total += float(weights.sum())

    def _correlate(self, spectra: Array, weights: np.ndarray, chunk: Sequence[tuple[str, np.ndarray]],
                   rows: list[dict[str, FrameScore]]) -> None:
        bk, r = self.bk, int(self.align_range)
        ks = bk.stack([self._spectrum(name, k) for name, k in chunk], 0)
        corr = bk.real(bk.ifft2(spectra[:, None] * ks[None]))  # (n, c, h, w)
        h, w = corr.shape[-2:]
        r = max(0, min(r, (h - 1) // 2, (w - 1) // 2))
        stats = pce(bk, bk.roll(corr, (r, r)), (2 * r, 2 * r))  # shifts -r..r both ways
        for c, (name, _) in enumerate(chunk):
            plain = pooled = None
            for i in range(corr.shape[0]):
                dy, dx = (int(v) - r for v in stats["peak_shift"][i, c])
                log_pfa = float(stats["log10_p_fa"][i, c])
                moved = log_pfa < math.log10(self.align_pfa) and (dy, dx) != (0, 0)
                rows[i][name] = FrameScore(float(stats["pce"][i, c]), (dy, dx), log_pfa, moved)
                plane = corr[i, c] * float(weights[i])
                plain = plane if plain is None else plain + plane
                plane = bk.roll(plane, (-dy, -dx)) if moved else plane
                pooled = plane if pooled is None else pooled + plane
            self._plain[name] = plain if name not in self._plain else self._plain[name] + plain
            self._pooled[name] = pooled if name not in self._pooled else self._pooled[name] + pooled

    def scores(self) -> dict[str, dict[str, Any]]:
        """Per camera: ``pce`` and ``log10_p_fa`` of the pooled (aligned) plane at zero shift, the unaligned
        ``pce_unaligned``, ``frames_aligned`` and the shifts seen (``stabilisation_detected``)."""
        if not self.frames:
            raise ValueError("no frame was added")
        out = {}
        names = [name for name, _ in self.cameras]
        planes = self.bk.stack([self._pooled[n] for n in names] + [self._plain[n] for n in names], 0)
        stats = pce(self.bk, planes, (0, 0))
        for c, name in enumerate(names):
            frames = [row[name] for row in self.per_frame]
            significant = {f.shift for f in frames if f.log10_p_fa < math.log10(self.align_pfa)}
            moved = sum(f.aligned for f in frames)
            log_pfa = float(stats["log10_p_fa"][c])
            if moved:  # the union with "some frame passed the alignment gate by chance"
                log_pfa = math.log10(min(1.0, 10.0 ** log_pfa + self.frames * self.align_pfa))
            out[name] = {"pce": float(stats["pce"][c]), "log10_p_fa": log_pfa,
                         "peak": float(stats["peak"][c]), "energy": float(stats["energy"][c]),
                         "pce_unaligned": float(stats["pce"][len(names) + c]),
                         "log10_p_fa_unaligned": float(stats["log10_p_fa"][len(names) + c]),
                         "frames_aligned": int(moved), "stabilisation_detected": len(significant) > 1,
                         "significant_frames": sum(f.log10_p_fa < math.log10(self.align_pfa) for f in frames)}
        return out

    def pooled_numerator(self) -> Array:
        """``X - mean(X)``: the video's weighted residual sum (the scale/crop search's disputed side)."""
        return self.numerator - self.bk.mean(self.numerator, (-2, -1))

    def estimate(self) -> np.ndarray:
        """The video's ML PRNU estimate ``K_v = X / S`` (host float32)."""
        return self.bk.to_numpy(self.numerator / (self.denominator + 1e-6)).astype(np.float32)


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
    records: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in cams}
    stopped = {name: False for name, _ in cams}
    groups: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = {}
    for name, k in cams:
        groups.setdefault(k.shape, []).append((name, k))
    for members in groups.values():
        sc._search_grid(evaluate, members, grid, records, stopped, math.inf, False)
    return [sc._camera_result(name, k.shape, records[name], False, grid, (h, w)) for name, k in cams]


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


__all__ = ["FrameScore", "VideoPool", "frame_products", "hybrid_scales", "search_pooled", "type_weight"]

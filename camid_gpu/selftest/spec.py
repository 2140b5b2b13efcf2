"""A deliberately plain float64 implementation of the Binghamton spec, for validation only.

One 2-D image at a time, explicit padding blocks as in the MATLAB code, box sums from an integral
image, ``numpy.fft``, loops where the spec reads as loops. Slow is fine: this is what ``camid
selftest`` and the tests compare every backend against, so it shares no code with the engine: its
wavelet transform is the Rice Wavelet Toolbox's periodic ``mdwt``/``midwt`` (which Binghamton's
NoiseExtract calls) written out from their definition, with pywt only supplying the filter taps
(WaveLab's "Daubechies 8" = pywt ``db4``). Images are on the 0..255 scale.
"""
from __future__ import annotations

import math

import numpy as np
import pywt

#: Binghamton's rgb2gray1 weights (MATLAB's rgb2gray)
GRAY = (0.2989, 0.5870, 0.1140)


def box_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Zero-padded ``w x w`` mean of a 2-D array (the count includes the padding)."""
    r = w // 2
    p = np.zeros((x.shape[0] + 2 * r + 1, x.shape[1] + 2 * r + 1))
    p[r + 1:r + 1 + x.shape[0], r + 1:r + 1 + x.shape[1]] = x
    s = p.cumsum(0).cumsum(1)
    out = s[w:, w:] - s[:-w, w:] - s[w:, :-w] + s[:-w, :-w]
    return out / (w * w)


def mihcak_shrink(c: np.ndarray, nv: float, windows=(3, 5, 7, 9)) -> np.ndarray:
    """``c * nv / (v + nv)``, ``v = min_w max(0, box_mean_w(c^2) - nv)``."""
    var = None
    for w in windows:
        v = np.maximum(box_mean(c * c, w) - nv, 0)
        var = v if var is None else np.minimum(var, v)
    return c * nv / (var + nv)


def _filters(wavelet: str) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal lowpass ``h`` and the toolbox's highpass ``g[m] = (-1)^m h[len-1-m]``."""
    h = np.asarray(pywt.Wavelet(wavelet).rec_lo, dtype=np.float64)
    g = np.array([(-1) ** m * h[len(h) - 1 - m] for m in range(len(h))])
    return h, g


def mdwt_axis(x: np.ndarray, h: np.ndarray, g: np.ndarray, axis: int) -> np.ndarray:
    """One periodic analysis step along ``axis``: ``[low | high]``, ``low[k] = sum_m h[m] x[(2k+m) mod n]``."""
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    k = np.arange(n // 2)
    low = sum(h[m] * x[..., (2 * k + m) % n] for m in range(len(h)))
    high = sum(g[m] * x[..., (2 * k + m) % n] for m in range(len(h)))
    return np.moveaxis(np.concatenate([low, high], -1), -1, axis)


def midwt_axis(y: np.ndarray, h: np.ndarray, g: np.ndarray, axis: int) -> np.ndarray:
    """The inverse of :func:`mdwt_axis` (the transpose of an orthonormal step)."""
    y = np.moveaxis(y, axis, -1)
    n = y.shape[-1]
    k = np.arange(n // 2)
    low, high = y[..., :n // 2], y[..., n // 2:]
    x = np.zeros_like(y)
    for m in range(len(h)):
        x[..., (2 * k + m) % n] += h[m] * low + g[m] * high
    return np.moveaxis(x, -1, axis)


def mdwt(x: np.ndarray, L: int, wavelet: str = "db4") -> np.ndarray:
    """The toolbox's in-place layout: level ``j``'s bands in the top-left ``(nr/2^(j-1), nc/2^(j-1))``."""
    h, g = _filters(wavelet)
    y = x.astype(np.float64).copy()
    r, c = y.shape
    for _ in range(L):
        y[:r, :c] = mdwt_axis(mdwt_axis(y[:r, :c], h, g, 1), h, g, 0)
        r, c = r // 2, c // 2
    return y


def midwt(y: np.ndarray, L: int, wavelet: str = "db4") -> np.ndarray:
    """The inverse of :func:`mdwt`."""
    h, g = _filters(wavelet)
    x = y.copy()
    r, c = x.shape[0] >> (L - 1), x.shape[1] >> (L - 1)
    for _ in range(L):
        x[:r, :c] = midwt_axis(midwt_axis(x[:r, :c], h, g, 0), h, g, 1)
        r, c = r * 2, c * 2
    return x


def noise_extract(im: np.ndarray, sigma: float, L: int = 4, wavelet: str = "db4") -> np.ndarray:
    """NoiseExtract of one 2-D plane: mirror padding, L-level DWT, Mihcak shrink, inverse, crop."""
    M, N = im.shape
    m = 2**L
    nr, nc = math.ceil((M + 2) / m) * m, math.ceil((N + 2) / m) * m
    pr, prd = math.ceil((nr - M) / 2), math.floor((nr - M) / 2)
    pc, pcr = math.ceil((nc - N) / 2), math.floor((nc - N) / 2)
    top = im[pr - 1::-1, :] if pr else im[:0]
    bottom = im[M - 1:M - prd - 1:-1, :] if prd else im[:0]
    cols = np.vstack([top, im, bottom])
    left = cols[:, pc - 1::-1] if pc else cols[:, :0]
    right = cols[:, N - 1:N - pcr - 1:-1] if pcr else cols[:, :0]
    padded = np.hstack([left, cols, right])
    assert padded.shape == (nr, nc)
    t = mdwt(padded, L, wavelet)
    r, c = nr, nc
    for _ in range(L):  # NoiseExtract's loop: the three detail bands of each level, finest first
        h2, w2 = r // 2, c // 2
        t[:h2, w2:c] = mihcak_shrink(t[:h2, w2:c], sigma**2)
        t[h2:r, :w2] = mihcak_shrink(t[h2:r, :w2], sigma**2)
        t[h2:r, w2:c] = mihcak_shrink(t[h2:r, w2:c], sigma**2)
        r, c = h2, w2
    t[:r, :c] = 0  # the coarsest approximation
    return midwt(t, L, wavelet)[pr:pr + M, pc:pc + N]


def zero_mean_total(x: np.ndarray) -> np.ndarray:
    """ZeroMeanTotal: on each 2x2 sub-lattice, remove the mean, then column means, then row means."""
    out = np.zeros_like(x)
    for dy in (0, 1):
        for dx in (0, 1):
            s = x[dy::2, dx::2].copy()
            s -= s.mean()
            for j in range(s.shape[1]):
                s[:, j] -= s[:, j].mean()
            for i in range(s.shape[0]):
                s[i, :] -= s[i, :].mean()
            out[dy::2, dx::2] = s
    return out


def wiener_dft(x: np.ndarray, sigma: float) -> np.ndarray:
    """WienerInDFT: Mihcak shrink of the normalised DFT magnitude with noise variance ``sigma**2``."""
    F = np.fft.fft2(x)
    mag = np.abs(F / math.sqrt(x.size))
    shrunk = mihcak_shrink(mag, sigma**2)
    gain = np.divide(shrunk, mag, out=np.zeros_like(mag), where=mag != 0)
    return np.real(np.fft.ifft2(F * gain))


def residual(img: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """NoiseExtractFromImage of a gray ``(H, W)`` or colour ``(H, W, 3)`` image -> ``(H, W)``."""
    x = img.astype(np.float64)
    if x.ndim == 3:
        planes = [noise_extract(x[..., k], sigma) for k in range(3)]
        noise = GRAY[0] * planes[0] + GRAY[1] * planes[1] + GRAY[2] * planes[2]
    else:
        noise = noise_extract(x, sigma)
    return zero_mean_total(noise)


def intensity_scale(x: np.ndarray) -> np.ndarray:
    """Binghamton's IntenScale: ``x / 252`` below 252, a Gaussian roll-off above."""
    return np.where(x < 252, x / 252, np.exp(-((x - 252) ** 2) / 6))


def saturation(x: np.ndarray) -> np.ndarray:
    """Loop version of Binghamton's Saturation for one plane: 0 where a maximum > 250 has an equal
    4-neighbour (circularly), else 1."""
    out = np.ones_like(x)
    m = x.max()
    if m <= 250:
        return out
    h, w = x.shape
    for i in range(h):
        for j in range(w):
            if x[i, j] == m:
                nb = (x[(i + 1) % h, j], x[(i - 1) % h, j], x[i, (j + 1) % w], x[i, (j - 1) % w])
                if any(v == m for v in nb):
                    out[i, j] = 0
    return out


def fingerprint(images: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """getFingerprint + ZeroMeanTotal + gray + WienerInDFT of ``(R, H, W[, 3])``, channel by channel."""
    images = images.astype(np.float64)
    chans = images.shape[-1] if images.ndim == 4 else 1
    ks = []
    for c in range(chans):
        num = np.zeros(images.shape[1:3])
        den = np.zeros(images.shape[1:3])
        for img in images:
            x = img[..., c] if images.ndim == 4 else img
            t = intensity_scale(x) * saturation(x)
            num += noise_extract(x, sigma) * t
            den += t * t
        ks.append(zero_mean_total(num / (den + 1)))
    k = GRAY[0] * ks[0] + GRAY[1] * ks[1] + GRAY[2] * ks[2] if chans == 3 else ks[0]
    return wiener_dft(k, k.std(ddof=1))


def natural_image(height: int, width: int, seed: int = 0, channels: int = 0) -> np.ndarray:
    """A natural-looking uint8 test image: smooth shading, hard-edged shapes, fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    img = 90 + 60 * np.sin(3 * xx + 2 * yy + rng.uniform(0, 6)) + 30 * yy
    for _ in range(6):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        img = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, img + rng.uniform(-70, 70), img)
    img = img + rng.normal(0, 6, img.shape)
    if channels:
        img = np.stack([img * g for g in (0.9, 1.0, 1.1)[:channels]], axis=-1)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def camera_images(k: np.ndarray, n: int, rng: np.random.Generator, flat: bool = True) -> np.ndarray:
    """``n`` uint8 images ``(n, H, W)`` of a camera with multiplicative PRNU ``k``: a gradient scene
    (``flat``) or a textured one, times ``1 + k``, plus read noise."""
    h, w = k.shape
    out = []
    for _ in range(n):
        scene = 140 + 40 * np.linspace(0, 1, w)[None, :] + (0 if flat else rng.normal(0, 25, (h, w)))
        out.append(np.clip(np.round(scene * (1 + k) + rng.normal(0, 1.5, (h, w))), 0, 255).astype(np.uint8))
    return np.stack(out)

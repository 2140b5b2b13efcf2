"""Noise residuals: Binghamton's NoiseExtractFromImage, ZeroMeanTotal and WienerInDFT.

All functions here take and return arrays on the 0..255 scale. The ``*_native`` style helpers
(:func:`noise_extract`, :func:`zero_mean_total`, :func:`wiener_dft`, :func:`mihcak_shrink`) work on a
backend's native arrays ``(N, H, W)`` and stay on its device; :func:`extract_residual` is the public
NumPy-in, NumPy-out entry point with input validation.

The spec (Binghamton CameraFingerprint, Lukas/Fridrich/Goljan):

1. mirror-pad each channel (symmetric, edge sample included) to ``nr = ceil((M+2)/2^L)*2^L`` rows
   and likewise columns, ``ceil`` of half the padding on top/left;
2. ``L`` levels of the periodic 2-D DWT with the 8-tap Daubechies filter (pywt ``db4``), on the sampling
   grid of the Rice Wavelet Toolbox's ``mdwt`` that Binghamton's code calls (see :func:`dwt_lag`);
3. every detail subband: ``v = min_w max(0, boxmean_w(c^2) - sigma^2)`` over ``w in {3,5,7,9}``
   (zero-padded box means), then ``c <- c * sigma^2 / (v + sigma^2)`` (Mihcak's estimate of the noise);
4. the coarsest approximation set to 0, inverse DWT, padding cropped;
5. colour: channel residuals combined with the gray weights (0.2989, 0.5870, 0.1140);
6. ZeroMeanTotal on each of the four 2x2 polyphase sub-lattices.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import Array, Backend, get_backend, host_kernels
from camid_gpu.backend.staging import Upload
from camid_gpu.config import (
    DEFAULT_LEVELS,
    DEFAULT_WAVELET,
    GRAY_WEIGHTS,
    MAX_FLOAT_PIXEL,
    MIHCAK_WINDOWS,
    SIGMA_FINGERPRINT,
    check_levels,
    check_sigma,
    check_whole_number,
)
from camid_gpu.prnu.mihcak_kernel import fused_kernel


def padding(size: int, levels: int) -> tuple[int, int]:
    """(before, after) mirror padding of one axis of length ``size`` for ``levels`` DWT levels.

    Always at least 2 samples in all, so that the padded length is a multiple of ``2**levels``.
    """
    step = 2**levels
    padded = math.ceil((size + 2) / step) * step
    before = math.ceil((padded - size) / 2)
    return before, padded - size - before


def mirror_index(size: int, before: int, after: int) -> np.ndarray:
    """Indices of a symmetric (edge-including) padding of ``arange(size)``."""
    return np.pad(np.arange(size), (before, after), mode="symmetric")


def dwt_lag(wavelet: str) -> int:
    """Samples by which pywt's periodic DWT lags the Rice Wavelet Toolbox's ``mdwt`` (Binghamton's).

    ``mdwt`` computes ``low[k] = sum_m h[m] x[(2k + m) mod n]``; pywt's periodization centres the filter
    ``s = len(h)/2 - 1`` samples earlier (3 for db4), so each level keeps the other parity of samples.
    Shifting the input by ``s`` shifts every level's coefficients by ``s``:
    ``pywt(roll(x, s)) = roll(mdwt(x), s)``. The zero-padded local variances of Mihcak's shrink do not
    commute with that shift, so the two grids give different residuals (on JPEGs the PCE moved by a factor
    of about 2 either way, with the size's alignment to the 8x8 block grid); camid works on mdwt's grid.
    """
    import pywt

    return pywt.Wavelet(wavelet).dec_len // 2 - 1


def mihcak_shrink(bk: Backend, coeffs: Array, noise_var: float | Array,
                  windows: Sequence[int] = MIHCAK_WINDOWS) -> Array:
    """Mihcak's locally adaptive shrink, returning the noise part of ``coeffs``.

    ``coeffs``: (..., h, w); ``noise_var``: scalar or an array broadcasting to (..., 1, 1).
    Returns ``coeffs * noise_var / (v + noise_var)`` with
    ``v = min over windows of max(0, boxmean_w(coeffs^2) - noise_var)``.
    On CUDA the fused kernel :data:`MIHCAK_KERNEL` (``camid_gpu/kernels/mihcak_shrink.cu``) computes the same
    thing in one pass; on NumPy the host kernel ``backend.host_kernels.mihcak_shrink`` does.
    """
    device = bk.cuda_kernel_device()
    fused = MIHCAK_KERNEL.on(device) if device is not None else bk.host_kernel(host_kernels.mihcak_shrink)
    if fused is not None:
        return fused(coeffs, noise_var, tuple(windows))
    energy = coeffs * coeffs
    variance = None
    for size in windows:
        local = bk.maximum(bk.box_mean(energy, size) - noise_var, 0.0)
        variance = local if variance is None else bk.minimum(variance, local)
    return coeffs * noise_var / (variance + noise_var)


#: the fused CUDA kernel of :func:`mihcak_shrink` (launcher: :mod:`camid_gpu.prnu.mihcak_kernel`; source:
#: ``camid_gpu/kernels/mihcak_shrink.cu``), self-checked against it per device
MIHCAK_KERNEL = fused_kernel(twin=mihcak_shrink)


def noise_extract(bk: Backend, images: Array, sigma: float = SIGMA_FINGERPRINT,
                  levels: int = DEFAULT_LEVELS, wavelet: str = DEFAULT_WAVELET) -> Array:
    """Binghamton's NoiseExtract of single-channel images: ``(N, H, W)`` -> ``(N, H, W)``.

    No zero-meaning here (see :func:`zero_mean_total`); 0..255 scale in and out.
    """
    h, w = images.shape[-2:]
    check_levels(levels, (h, w))  # before the padding: a deep decomposition of a small image is a huge array
    top, bottom = padding(h, levels)
    left, right = padding(w, levels)
    lag = dwt_lag(wavelet)
    # the padded planes shifted by the lag, in the same gather: pywt's bands are then mdwt's, shifted by it
    rows, cols = np.roll(mirror_index(h, top, bottom), lag), np.roll(mirror_index(w, left, right), lag)
    approx, details = bk.wavedec2(bk.take(bk.take(images, rows, -2), cols, -1), wavelet, levels)
    noise_var = float(sigma) ** 2
    details = [bk.roll(mihcak_shrink(bk, bk.roll(band, (-lag, -lag)), noise_var), (lag, lag)) if lag
               else mihcak_shrink(bk, band, noise_var) for band in details]
    residual = bk.waverec2(bk.zeros_like(approx), details, wavelet)
    # undo the lag and crop the padding, in one gather
    rows = (np.arange(h) + top + lag) % rows.size
    cols = (np.arange(w) + left + lag) % cols.size
    return bk.take(bk.take(residual, rows, -2), cols, -1)


def zero_mean_total(bk: Backend, x: Array) -> Array:
    """Binghamton's ZeroMeanTotal of ``(..., H, W)``.

    On each of the four 2x2 polyphase sub-lattices: subtract the mean, then every column's mean,
    then every row's mean. Removes linear patterns (row/column noise, CFA-periodic artefacts) that
    cameras of one model share.
    """
    out = bk.zeros_like(x)
    for dy in (0, 1):
        for dx in (0, 1):
            sub = x[..., dy::2, dx::2]
            sub = sub - bk.mean(sub, (-2, -1))
            sub = sub - bk.mean(sub, -2)
            sub = sub - bk.mean(sub, -1)
            out[..., dy::2, dx::2] = sub
    return out


def wiener_dft(bk: Backend, x: Array, sigma: float | Array | None = None) -> Array:
    """Binghamton's WienerInDFT of ``(N, H, W)``: Mihcak shrink of the DFT magnitude.

    ``F = fft2(x)/sqrt(H*W)``; ``|F|`` shrunk with :func:`mihcak_shrink` using ``sigma**2`` as the
    noise variance; the result is ``real(ifft2(F * shrunk/|F|))`` (bins with ``|F| = 0`` stay 0).
    ``sigma`` defaults to each image's own sample std. Suppresses peaks of the spectrum (periodic
    artefacts such as JPEG blocking) and keeps its flat, PRNU-like part.
    """
    h, w = x.shape[-2:]
    if sigma is None:
        sigma = bk.std(x, (-2, -1))
    fused = bk.host_kernel(host_kernels.wiener_dft)  # NumPy only (no CUDA kernel)
    if fused is not None:
        return fused(x, sigma * sigma, MIHCAK_WINDOWS)
    spectrum = bk.fft2(x)
    magnitude = bk.abs(spectrum) / math.sqrt(h * w)
    shrunk = mihcak_shrink(bk, magnitude, sigma * sigma)
    zero = magnitude == 0
    gain = bk.where(zero, 0.0, shrunk / bk.where(zero, 1.0, magnitude))
    return bk.real(bk.ifft2(spectrum * gain))


def rgb_to_gray(bk: Backend, channels: Array) -> Array:
    """Combine ``(N, 3, H, W)`` channel planes with :data:`GRAY_WEIGHTS` into ``(N, H, W)``."""
    r, g, b = GRAY_WEIGHTS
    return channels[:, 0] * r + channels[:, 1] * g + channels[:, 2] * b


def pixels_to_device(bk: Backend, pixels: np.ndarray | Array | Upload, rows: Sequence[int] | None = None) -> Array:
    """Native float array on the 0..255 scale from uint8/uint16/float pixels (any shape).

    Integer pixels travel to the device as integers (uint8 is 4x smaller than float32) and are
    converted there; uint16 is scaled by 255/65535. An :class:`~camid_gpu.backend.staging.Upload`
    (integers already on their way) is converted the same way. Native arrays are converted to the
    working dtype (uint8 device pixels, e.g. from the GPU JPEG decoder, keep their 0..255 values).
    ``rows``: convert only these images of the batch (a large upload converted part by part).
    """
    if isinstance(pixels, Upload):
        sixteen, pixels = pixels.host_dtype == np.uint16, pixels.native()
    else:
        sixteen = isinstance(pixels, np.ndarray) and pixels.dtype == np.uint16
    if rows is not None:
        pixels = pixels[np.asarray(rows)]
    x = bk.asarray(pixels)
    return x * (255.0 / 65535.0) if sixteen else x


def gray_intensity(bk: Backend, pixels: Array) -> Array:
    """Gray intensity ``(N, H, W)`` on the 0..255 scale of native ``(N, H, W[, 3])`` pixels (the ``I``
    of the PCE template ``I * K``; colour combined with :data:`GRAY_WEIGHTS`)."""
    if pixels.ndim == 4:
        return rgb_to_gray(bk, bk.stack([pixels[..., k] for k in range(pixels.shape[-1])], 1))
    return pixels


def validate_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    """Check a public batch ``(N, H, W)`` or ``(N, H, W, 3)``; returns it unchanged.

    uint8 and uint16 pixels are accepted (uint16 is scaled to 0..255 by :func:`pixels_to_device`),
    floats are taken as already 0..255 and must be finite and at most ``config.MAX_FLOAT_PIXEL`` in
    magnitude. Raises ValueError/TypeError naming the shape or dtype.
    """
    if not isinstance(images, np.ndarray):
        images = np.asarray(images)
    if images.ndim == 2:
        raise ValueError(f"{name}: expected a batch (N, H, W) or (N, H, W, 3); got shape {images.shape} "
                         f"(a single image: pass images[None])")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"{name}: expected a batch (N, H, W) or (N, H, W, 3); got shape {images.shape}")
    if min(images.shape[:3]) < 1:
        raise ValueError(f"{name}: empty batch or image, shape {images.shape}")
    if images.dtype in (np.uint8, np.uint16):
        return images
    if images.dtype.kind != "f":
        raise TypeError(f"{name}: dtype must be uint8, uint16 or floating (0..255); got {images.dtype}")
    low, high = float(np.min(images)), float(np.max(images))  # NaN and inf propagate to these
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    if max(-low, high) > MAX_FLOAT_PIXEL:
        raise ValueError(f"{name}: float pixels are taken on the 0..255 scale; got values from {low:.3g} to "
                         f"{high:.3g} (at most {MAX_FLOAT_PIXEL:g} in magnitude is accepted)")
    return images


def check_residual_options(shape: tuple[int, ...], sigma: Any, levels: Any, wavelet: Any, batch_size: Any) -> None:
    """The checks of the API's denoiser options (the command line's, from :mod:`camid_gpu.config`) for a
    batch of ``shape`` (N, H, W[, 3]), before any work."""
    check_levels(levels, shape[1:3])  # the command line's check: levels=20 asked for 8 TiB
    check_sigma("sigma", sigma)  # inf gave NaN residuals
    check_whole_number("batch_size", batch_size)
    import pywt

    if wavelet not in pywt.wavelist(kind="discrete"):
        raise ValueError(f"wavelet must be a discrete pywt wavelet name such as 'db4', got {wavelet!r}")


def residual_native(bk: Backend, images: Array, sigma: float = SIGMA_FINGERPRINT, levels: int = DEFAULT_LEVELS,
                    wavelet: str = DEFAULT_WAVELET, zero_mean: bool = True) -> Array:
    """NoiseExtractFromImage on native arrays ``(N, H, W)`` or ``(N, H, W, 3)`` -> ``(N, H, W)``.

    Colour images are denoised per channel and combined to gray; then ZeroMeanTotal (unless
    ``zero_mean`` is False). NumPy uint8/uint16 input is converted by :func:`pixels_to_device`.
    """
    x = pixels_to_device(bk, images)
    if x.ndim == 4:
        n, h, w, c = x.shape
        planes = noise_extract(bk, bk.stack([x[..., k] for k in range(c)], 1).reshape(n * c, h, w),
                               sigma, levels, wavelet)
        noise = rgb_to_gray(bk, planes.reshape(n, c, h, w))
    else:
        noise = noise_extract(bk, x, sigma, levels, wavelet)
    return zero_mean_total(bk, noise) if zero_mean else noise


def extract_residual(images: np.ndarray, sigma: float = SIGMA_FINGERPRINT, levels: int = DEFAULT_LEVELS,
                     wavelet: str = DEFAULT_WAVELET, backend: str | Backend = "auto", *,
                     zero_mean: bool = True, wiener: bool = False, batch_size: int = 8,
                     device: str | None = None) -> np.ndarray:
    """PRNU noise residuals of a batch of images.

    Parameters
    ----------
    images : (N, H, W) or (N, H, W, 3) array; uint8 (0..255), uint16 (scaled to 0..255) or float
        already on the 0..255 scale.
    sigma : noise std on the 0..255 scale (Binghamton default 3; the Mahalanobis method uses 2).
    levels, wavelet : DWT depth and pywt wavelet name (``db4`` is WaveLab's "Daubechies 8").
    backend : "auto", "numpy", "torch" or a :class:`~camid_gpu.backend.Backend`.
    zero_mean : apply ZeroMeanTotal (as NoiseExtractFromImage does).
    wiener : also apply WienerInDFT with each residual's own std (as for matching).
    batch_size : images processed per backend call (bounds memory).

    Returns
    -------
    (N, H, W) float32 residuals on the 0..255 scale.
    """
    images = validate_images(images)
    check_residual_options(images.shape, sigma, levels, wavelet, batch_size)
    levels, batch_size = int(levels), int(batch_size)
    bk = get_backend(backend, device=device)
    out = np.empty(images.shape[:3], dtype=np.float32)
    for start in range(0, images.shape[0], batch_size):
        res = residual_native(bk, images[start:start + batch_size], sigma, levels, wavelet, zero_mean)
        if wiener:
            res = wiener_dft(bk, res)
        out[start:start + batch_size] = bk.to_numpy(res)
    return out

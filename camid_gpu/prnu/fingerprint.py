"""PRNU fingerprint K by maximum likelihood (Binghamton getFingerprint; Goljan, Fridrich & Filler 2009).

Per colour channel, over the reference images i of one camera (one size and orientation)::

    K = sum_i W_i * T_i / (sum_i T_i^2 + 1),   T = IntenScale(I) * Saturation(I)

where ``W_i`` is the channel's NoiseExtract residual (no zero-meaning) and ``T`` is the attenuated
intensity: ``IntenScale(I) = I/252`` below 252 and ``exp(-(I-252)^2/6)`` above (so that nearly
saturated pixels count little), and ``Saturation(I)`` is 0 where a pixel equals its channel's
maximum (when that maximum exceeds 250) and has an equal 4-neighbour (circularly), else 1.
``T`` is the intensity scaled to ~0..1, so this is the ML estimate ``sum W I / sum I^2`` with
Binghamton's weighting (the issue's ``I * w`` is this same ``T``; multiplying IntenScale by I
again would weight the estimate by I^2 and bias it).
Then each channel gets ZeroMeanTotal, the channels are combined with the gray weights, and the
result is filtered with ``WienerInDFT(K, std(K))``.

The accumulator streams: images are added in batches and only the running sums are kept, so
memory does not grow with the number of reference images.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from camid_gpu.backend import Array, Backend, get_backend
from camid_gpu.config import (
    DEFAULT_LEVELS,
    DEFAULT_WAVELET,
    MIN_CONTENT_STD,
    MIN_FINGERPRINT_STD,
    MIN_REFERENCES,
    SIGMA_FINGERPRINT,
)
from camid_gpu.prnu.residual import (
    GRAY_WEIGHTS,
    check_residual_options,
    noise_extract,
    pixels_to_device,
    rgb_to_gray,
    validate_images,
    wiener_dft,
    zero_mean_total,
)

INTENSITY_KNEE = 252.0
INTENSITY_WIDTH = 6.0
SATURATION_LEVEL = 250.0


def intensity_scale(bk: Backend, x: Array) -> Array:
    """Binghamton's IntenScale of ``(..., H, W)`` pixels on the 0..255 scale."""
    over = x - INTENSITY_KNEE
    return bk.where(x < INTENSITY_KNEE, x / INTENSITY_KNEE, bk.exp(-(over * over) / INTENSITY_WIDTH))


def saturation_map(bk: Backend, x: Array) -> Array:
    """Binghamton's Saturation of ``(N, C, H, W)`` planes: 0 at saturated pixels, else 1.

    A pixel is saturated when it equals its plane's maximum, that maximum exceeds 250, and at least
    one of its four neighbours (circularly, as ``circshift``) has the same value.
    """
    peak = bk.amax(x, (-2, -1))
    equal_neighbour = ((x == bk.roll(x, (0, 1))) | (x == bk.roll(x, (1, 0)))
                       | (x == bk.roll(x, (0, -1))) | (x == bk.roll(x, (-1, 0))))
    saturated = (x == peak) & (peak > SATURATION_LEVEL) & equal_neighbour
    return bk.where(saturated, 0.0, 1.0)


class FingerprintAccumulator:
    """Streaming ML estimate of a camera's PRNU K from batches of reference images.

    >>> acc = FingerprintAccumulator(backend="numpy")
    >>> acc.add(batch)          # (R, H, W) or (R, H, W, 3), uint8/uint16/float 0..255
    >>> K = acc.fingerprint()   # (H, W) float32

    ``sigma`` is the denoiser's noise std on the 0..255 scale (Binghamton: 3).
    """

    def __init__(self, sigma: float = SIGMA_FINGERPRINT, levels: int = DEFAULT_LEVELS,
                 wavelet: str = DEFAULT_WAVELET, backend: str | Backend = "auto", device: str | None = None):
        self.bk = get_backend(backend, device=device)
        self.sigma, self.levels, self.wavelet = float(sigma), int(levels), wavelet
        self.count = 0
        self.shape: tuple[int, ...] | None = None
        self._weighted: Array | None = None
        self._norm: Array | None = None

    #: called with each batch's gray residuals ``(R, H, W)`` (native) when set, e.g. to check them against other
    #: cameras' references (:class:`camid_gpu.pipeline.copies.ReferenceCheck`)
    on_residuals: Any = None

    def add(self, images: np.ndarray | Array) -> None:
        """Add a batch ``(R, H, W)`` or ``(R, H, W, 3)`` of reference images (one size for all)."""
        bk = self.bk
        if isinstance(images, np.ndarray):
            images = validate_images(images, "reference images")
        x = pixels_to_device(bk, images)
        if self.shape is None:
            self.shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"reference images must all have one shape: expected {self.shape}, "
                             f"got {tuple(x.shape[1:])}")
        n = x.shape[0]
        count = x.shape[-1] if x.ndim == 4 else 1
        gray = None  # the references' grey residuals, for on_residuals (the check of other cameras' photos)
        # one colour plane at a time, added in place: each plane's residual is its own, and the working set is one
        # plane's wavelet pyramid, not three (a 10 MP RGB reference: ~0.5 GB less at float32)
        for k in range(count):
            plane = bk.stack([x[..., k]], 0)[0] if x.ndim == 4 else x  # contiguous, as the stacked planes were
            noise = noise_extract(bk, plane, self.sigma, self.levels, self.wavelet)
            if self.on_residuals is not None:  # rgb_to_gray's weighted sum, one plane at a time
                part = noise * GRAY_WEIGHTS[k] if count == 3 else noise
                gray = part if gray is None else gray + part
            weight = intensity_scale(bk, plane[:, None]) * saturation_map(bk, plane[:, None])
            weighted = bk.sum(noise[:, None] * weight, 0)[0, 0]
            del noise
            norm = bk.sum(weight * weight, 0)[0, 0]
            del weight
            if self._weighted is None:  # the sums' own type (the saturation map's makes them float64 on NumPy)
                self._weighted = bk.stack([bk.zeros_like(weighted)] * count, 0)
                self._norm = bk.stack([bk.zeros_like(norm)] * count, 0)
            self._weighted[k] += weighted
            self._norm[k] += norm
        if self.on_residuals is not None:
            self.on_residuals(gray)
        self.count += n

    def merge(self, other: "FingerprintAccumulator") -> "FingerprintAccumulator":
        """Add ``other``'s sums into this one (the ML sums of disjoint image sets add); returns self."""
        if other.count == 0:
            return self
        if self.shape is not None and other.shape != self.shape:
            raise ValueError(f"cannot merge fingerprint sums of shapes {self.shape} and {other.shape}")
        if self.count == 0:
            self.shape = other.shape
            self._weighted, self._norm = other._weighted * 1.0, other._norm * 1.0  # own copies: add() is in place
        else:
            self._weighted = self._weighted + other._weighted
            self._norm = self._norm + other._norm
        self.count += other.count
        return self

    def without(self, part: "FingerprintAccumulator") -> "FingerprintAccumulator":
        """A new accumulator of this one's images less ``part``'s (a subset of them, added to both): a
        leave-one-out fingerprint from the sums of all references, without holding each reference's sums."""
        if part.count == 0:
            return self
        if part.count > self.count or part.shape != self.shape:
            raise ValueError(f"cannot take sums of {part.count} image(s) of shape {part.shape} out of "
                             f"{self.count} of shape {self.shape}")
        out = FingerprintAccumulator(self.sigma, self.levels, self.wavelet, self.bk)
        out.shape, out.count = self.shape, self.count - part.count
        if out.count:
            out._weighted, out._norm = self._weighted - part._weighted, self._norm - part._norm
        return out

    def channel_estimates(self) -> Array:
        """Per-channel ``K = sum W T / (sum T^2 + 1)``, native ``(C, H, W)`` (before ZeroMeanTotal)."""
        if self.count == 0:
            raise ValueError("no reference images were added")
        return self._weighted / (self._norm + 1.0)

    def fingerprint_native(self) -> Array:
        """The finished fingerprint, native ``(H, W)``: ZeroMeanTotal, gray, WienerInDFT."""
        bk = self.bk
        k = zero_mean_total(bk, self.channel_estimates())
        k = rgb_to_gray(bk, k[None])[0] if k.shape[0] == 3 else k[0]
        return wiener_dft(bk, k[None])[0]

    def fingerprint(self) -> np.ndarray:
        """The finished fingerprint K, ``(H, W)`` float32 (dimensionless, relative PRNU)."""
        return self.bk.to_numpy(self.fingerprint_native()).astype(np.float32)


def estimate_fingerprint(images: np.ndarray, sigma: float = SIGMA_FINGERPRINT, levels: int = DEFAULT_LEVELS,
                         wavelet: str = DEFAULT_WAVELET, backend: str | Backend = "auto",
                         batch_size: int = 8, device: str | None = None) -> np.ndarray:
    """ML PRNU fingerprint of one camera from reference images ``(R, H, W[, 3])`` -> ``(H, W)`` float32.

    The command line's rules hold here too: at least ``config.MIN_REFERENCES`` images, none constant (std
    under ``config.MIN_CONTENT_STD`` on the 0..255 scale), and a result that is not degenerate (a single
    image gave its own scene; constant images an all-zero fingerprint). ValueError names the argument.
    """
    images = validate_images(images, "reference images")
    check_residual_options(images.shape, sigma, levels, wavelet, batch_size)
    if images.shape[0] < MIN_REFERENCES:
        raise ValueError(f"reference images: {images.shape[0]} given, at least {MIN_REFERENCES} are needed "
                         f"(config.MIN_REFERENCES; a fingerprint from one image is that image's scene)")
    scale = 255.0 / 65535.0 if images.dtype == np.uint16 else 1.0
    for i, image in enumerate(images):  # one image at a time: a float copy of the whole batch is not needed
        std = float(np.std(image, dtype=np.float64)) * scale
        if std < MIN_CONTENT_STD:
            raise ValueError(f"reference images[{i}] is constant (std {std:.3g} on the 0..255 scale, minimum "
                             f"{MIN_CONTENT_STD:g}): no sensor noise to estimate a fingerprint from")
    acc = FingerprintAccumulator(sigma, levels, wavelet, backend, device)
    for start in range(0, images.shape[0], int(batch_size)):
        acc.add(images[start:start + int(batch_size)])
    k = acc.fingerprint()
    if not np.all(np.isfinite(k)) or float(np.std(k, dtype=np.float64)) < MIN_FINGERPRINT_STD:
        raise ValueError(f"reference images gave a degenerate fingerprint (std under {MIN_FINGERPRINT_STD:g} or "
                         f"not finite, config.MIN_FINGERPRINT_STD)")
    return k

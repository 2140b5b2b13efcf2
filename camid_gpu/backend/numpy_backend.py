"""The NumPy backend: pywt + scipy.fft + scipy.ndimage on the host, computing in float64 (the reference)."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from camid_gpu.backend.base import Backend


class NumpyBackend(Backend):
    """pywt + scipy on the host, float64."""

    name = "numpy"
    device = "cpu"
    dtype = np.float64

    def asarray(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=self.dtype)

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def take(self, x, index, axis):
        return np.take(x, index, axis=axis)

    def mean(self, x, axis):
        return x.mean(axis=axis, keepdims=True)

    def std(self, x, axis):
        return x.std(axis=axis, keepdims=True, ddof=1)

    def sum(self, x, axis):
        return x.sum(axis=axis, keepdims=True)

    def amax(self, x, axis):
        return x.max(axis=axis, keepdims=True)

    def argmax_flat(self, x):
        return np.asarray(x.reshape(*x.shape[:-2], -1).argmax(axis=-1), dtype=np.int64)

    def arange(self, n):
        return np.arange(n, dtype=self.dtype)

    def maximum(self, x, y):
        return np.maximum(x, y)

    def minimum(self, x, y):
        return np.minimum(x, y)

    def where(self, cond, x, y):
        return np.where(cond, x, y)

    def abs(self, x):
        return np.abs(x)

    def real(self, x):
        return np.real(x)

    def exp(self, x):
        return np.exp(x)

    def sqrt(self, x):
        return np.sqrt(x)

    def zeros_like(self, x):
        return np.zeros_like(x)

    def stack(self, xs, axis):
        return np.stack(xs, axis=axis)

    def rot90(self, x, k):
        return np.rot90(x, k, axes=(-2, -1))

    def roll(self, x, shift):
        return np.roll(x, shift, axis=(-2, -1))

    def wavedec2(self, x, wavelet, levels):
        import pywt

        with warnings.catch_warnings():
            # pywt warns when the level exceeds its "useful" maximum; with periodization the
            # transform is still exact and invertible, and the reference uses L = 4 regardless.
            warnings.filterwarnings("ignore", message="Level value of", category=UserWarning)
            coeffs = pywt.wavedec2(x, wavelet, mode="periodization", level=levels, axes=(-2, -1))
        details = [np.stack(bands, axis=-3) for bands in reversed(coeffs[1:])]
        return coeffs[0], details

    def waverec2(self, approx, details, wavelet):
        import pywt

        coeffs = [approx] + [(d[..., 0, :, :], d[..., 1, :, :], d[..., 2, :, :]) for d in reversed(details)]
        return pywt.waverec2(coeffs, wavelet, mode="periodization", axes=(-2, -1))

    def box_mean(self, x, size):
        from scipy import ndimage

        window = (1,) * (x.ndim - 2) + (size, size)
        return ndimage.uniform_filter(x, size=window, mode="constant", cval=0.0)

    def fft2(self, x):
        from scipy import fft

        return fft.fft2(x, axes=(-2, -1))

    def ifft2(self, x):
        from scipy import fft

        return fft.ifft2(x, axes=(-2, -1))


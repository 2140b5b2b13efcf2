"""The NumPy backend: pywt + scipy.fft + scipy.ndimage on the host, computing in float64 (the reference)."""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from camid_gpu.backend.base import Backend


class NumpyBackend(Backend[np.ndarray]):
    """pywt + scipy on the host, float64."""

    name = "numpy"
    device = "cpu"
    dtype = np.float64

    def asarray(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=self.dtype)

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def take(self, x: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
        return np.take(x, index, axis=axis)

    def mean(self, x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
        return x.mean(axis=axis, keepdims=True)

    def std(self, x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
        return x.std(axis=axis, keepdims=True, ddof=1)

    def sum(self, x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
        return x.sum(axis=axis, keepdims=True)

    def amax(self, x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
        return x.max(axis=axis, keepdims=True)

    def argmax_flat(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x.reshape(*x.shape[:-2], -1).argmax(axis=-1), dtype=np.int64)

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=self.dtype)

    def maximum(self, x: np.ndarray, y: np.ndarray | float) -> np.ndarray:
        return np.maximum(x, y)

    def minimum(self, x: np.ndarray, y: np.ndarray | float) -> np.ndarray:
        return np.minimum(x, y)

    def where(self, cond: np.ndarray, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        return np.where(cond, x, y)

    def abs(self, x: np.ndarray) -> np.ndarray:
        return np.abs(x)

    def real(self, x: np.ndarray) -> np.ndarray:
        return np.real(x)

    def exp(self, x: np.ndarray) -> np.ndarray:
        return np.exp(x)

    def sqrt(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(x)

    def zeros_like(self, x: np.ndarray) -> np.ndarray:
        return np.zeros_like(x)

    def stack(self, xs: Sequence[np.ndarray], axis: int) -> np.ndarray:
        return np.stack(xs, axis=axis)

    def rot90(self, x: np.ndarray, k: int) -> np.ndarray:
        return np.rot90(x, k, axes=(-2, -1))

    def roll(self, x: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
        return np.roll(x, shift, axis=(-2, -1))

    def wavedec2(self, x: np.ndarray, wavelet: str, levels: int) -> tuple[np.ndarray, list[np.ndarray]]:
        import pywt

        with warnings.catch_warnings():
            # pywt warns when the level exceeds its "useful" maximum; with periodization the
            # transform is still exact and invertible, and the reference uses L = 4 regardless.
            warnings.filterwarnings("ignore", message="Level value of", category=UserWarning)
            coeffs = pywt.wavedec2(x, wavelet, mode="periodization", level=levels, axes=(-2, -1))
        details = [np.stack(bands, axis=-3) for bands in reversed(coeffs[1:])]
        return coeffs[0], details

    def waverec2(self, approx: np.ndarray, details: list[np.ndarray], wavelet: str) -> np.ndarray:
        import pywt

        coeffs = [approx] + [(d[..., 0, :, :], d[..., 1, :, :], d[..., 2, :, :]) for d in reversed(details)]
        return pywt.waverec2(coeffs, wavelet, mode="periodization", axes=(-2, -1))

    def box_mean(self, x: np.ndarray, size: int) -> np.ndarray:
        from scipy import ndimage

        window = (1,) * (x.ndim - 2) + (size, size)
        return ndimage.uniform_filter(x, size=window, mode="constant", cval=0.0)

    def fft2(self, x: np.ndarray) -> np.ndarray:
        from scipy import fft

        return fft.fft2(x, axes=(-2, -1))

    def ifft2(self, x: np.ndarray) -> np.ndarray:
        from scipy import fft

        return fft.ifft2(x, axes=(-2, -1))


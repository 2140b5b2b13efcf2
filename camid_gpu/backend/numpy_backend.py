"""The NumPy backend: pywt + scipy.fft + scipy.ndimage on the host, in float64 (the default) or float32, on a
thread pool, with host kernels (``host_kernels``) for Mihcak's shrink, WienerInDFT and the DWT's column axis."""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu.backend import host_kernels
from camid_gpu.backend.base import Backend


class NumpyBackend(Backend[np.ndarray]):
    """pywt + scipy on the host, in ``dtype`` "float64" or "float32".

    - ``use_kernels``: the host kernels of :mod:`camid_gpu.backend.host_kernels` replace the plain
      primitives: Mihcak's shrink fused in cache-sized row strips (the host analogue of the CUDA kernel,
      instead of four full-size ``uniform_filter`` passes and their temporaries), WienerInDFT from half
      spectra, and the DWT's column transform as banded block products (BLAS). Same math; in float64
      within ~1e-10 of the plain primitives.
    - ``workers`` threads (default: the CPUs this process may use): DWTs one plane per thread,
      FFTs on scipy's ``workers``, the fused shrink's strips. The work is split, never reordered, so
      the thread count does not change a bit of the result.
    - ``dtype="float32"`` halves memory traffic: residuals agree with float64 to ~1e-4 on the
      0..255 scale (the same decisions); ``float64`` is the default.

    ``NumpyBackend("float64", use_kernels=False, workers=1)`` is the reference: the plain primitives
    on one thread, bit for bit the float64 code path of earlier camid versions.
    """

    name = "numpy"
    device = "cpu"

    def __init__(self, dtype: str = "float64", use_kernels: bool = True, workers: int | None = None):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.use_kernels = bool(use_kernels)
        self._pool = host_kernels.WorkerPool(host_kernels.default_workers() if workers is None else workers)
        self.workers = self._pool.workers

    def describe(self) -> str:
        """"numpy on cpu" for the default (float64, host kernels), naming what differs from it. The thread
        count is left out: it never changes a result."""
        text = "numpy on cpu"
        if self.dtype != np.float64:
            text += f", {self.dtype.name}"
        if not self.use_kernels:
            text += ", plain primitives"
        return text

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
        with warnings.catch_warnings():
            # pywt warns when the level exceeds its "useful" maximum; with periodization the
            # transform is still exact and invertible, and the reference uses L = 4 regardless.
            warnings.filterwarnings("ignore", message="Level value of", category=UserWarning)
            decompose = self._decompose(x.shape[-2], wavelet, levels)
            if self._threads_for_planes(x) < 2:
                return decompose(x)
            # one plane per thread, each writing its bands into the batch outputs
            lead = x.shape[:-2]
            planes = x.reshape(-1, *x.shape[-2:])
            first = decompose(planes[0])
            approx = np.empty((planes.shape[0], *first[0].shape), first[0].dtype)
            details = [np.empty((planes.shape[0], *d.shape), d.dtype) for d in first[1]]

            def one(k: int) -> None:
                a, ds = first if k == 0 else decompose(planes[k])
                approx[k] = a
                for j, d in enumerate(ds):
                    details[j][k] = d

            self._pool.map(one, range(planes.shape[0]))
        return approx.reshape(*lead, *approx.shape[-2:]), [d.reshape(*lead, *d.shape[-3:]) for d in details]

    def _decompose(self, height: int, wavelet: str, levels: int) -> Callable:
        """``x -> (approx, details)`` for :meth:`wavedec2`: the host kernel when it applies, else pywt."""
        import pywt

        if self.use_kernels and host_kernels.dwt_fits(height, wavelet, levels):
            return functools.partial(host_kernels.wavedec2, wavelet=wavelet, levels=levels)

        def plain(x):
            coeffs = pywt.wavedec2(x, wavelet, mode="periodization", level=levels, axes=(-2, -1))
            return coeffs[0], [np.stack(bands, axis=-3) for bands in reversed(coeffs[1:])]

        return plain

    def _threads_for_planes(self, x: np.ndarray) -> int:
        """Threads for a transform of the planes of ``x``: one plane per thread, if large enough."""
        planes = int(np.prod(x.shape[:-2], dtype=np.int64))
        if planes < 2:
            return 1
        return min(planes, host_kernels.threads_for(self._pool, x.size))

    def waverec2(self, approx: np.ndarray, details: list[np.ndarray], wavelet: str) -> np.ndarray:
        import pywt

        if self.use_kernels and host_kernels.dwt_fits(2 * details[0].shape[-2], wavelet, len(details)):
            recompose = functools.partial(host_kernels.waverec2, wavelet=wavelet)
        else:
            def recompose(a, ds):
                coeffs = [a] + [(d[..., 0, :, :], d[..., 1, :, :], d[..., 2, :, :]) for d in reversed(ds)]
                return pywt.waverec2(coeffs, wavelet, mode="periodization", axes=(-2, -1))
        if self._threads_for_planes(details[0]) < 2:
            return recompose(approx, details)
        # one plane per thread, each writing into the batch output
        lead = approx.shape[:-2]
        h, w = details[0].shape[-2:]
        flat = [d.reshape(-1, *d.shape[-3:]) for d in details]
        approx = approx.reshape(-1, *approx.shape[-2:])
        out = np.empty((approx.shape[0], 2 * h, 2 * w), np.result_type(approx, *details))

        def one(k: int) -> None:
            out[k] = recompose(approx[k], [d[k] for d in flat])

        self._pool.map(one, range(approx.shape[0]))
        return out.reshape(*lead, 2 * h, 2 * w)

    def box_mean(self, x: np.ndarray, size: int) -> np.ndarray:
        from scipy import ndimage

        window = (1,) * (x.ndim - 2) + (size, size)
        return ndimage.uniform_filter(x, size=window, mode="constant", cval=0.0)

    def fft2(self, x: np.ndarray) -> np.ndarray:
        from scipy import fft

        return fft.fft2(x, axes=(-2, -1), workers=self.workers)

    def ifft2(self, x: np.ndarray) -> np.ndarray:
        from scipy import fft

        return fft.ifft2(x, axes=(-2, -1), workers=self.workers)

    def host_kernel(self, kernel: Callable) -> Callable | None:
        return functools.partial(kernel, self._pool) if self.use_kernels else None

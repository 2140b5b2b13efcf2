"""Host kernels of the NumPy backend (``NumpyBackend(use_kernels=True)``, float32 or float64).

The same math as the plain backend primitives (their twins, as for the CUDA kernels), organised for a
CPU: work is cut into row strips whose temporaries stay in the core's cache (no full-size temporaries,
no page faults), matrix products go to BLAS, and strips or planes are spread over a thread pool (NumPy
ufuncs, pywt, BLAS and scipy.fft release the GIL). Splitting never reorders a sum, so the pool's thread
count does not change a bit of any result.

- :func:`mihcak_shrink`: Mihcak's locally adaptive shrink (``prnu.residual.mihcak_shrink``'s twin) with
  the zero-padded box means of all windows from shared horizontal sums.
- :func:`wiener_dft`: WienerInDFT (``prnu.residual.wiener_dft``'s twin) from half spectra.
- :func:`wavedec2`, :func:`waverec2`: pywt's periodized 2-D DWT with the column transform (pywt's
  slow, strided axis) as banded block matrix products read off pywt, the row transform by pywt.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import math
import os
import threading
from typing import Any, Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

#: bytes of one strip-sized temporary: a few of them fit in a 1-2 MB L2 cache
STRIP_BYTES = 256 * 1024
#: array elements per thread below which handing work to the pool costs more than it saves
MIN_ELEMENTS_PER_THREAD = 1 << 17


def default_workers() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class WorkerPool:
    """A lazily started thread pool of ``workers`` threads, restarted in a forked child.

    A forked process inherits the pool object but not its threads, so the pool is remade when the
    process id changes (decode workers of ``scheduler.ordered_map`` are forked).
    """

    def __init__(self, workers: int):
        if not (isinstance(workers, int) and workers >= 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self._pool: cf.ThreadPoolExecutor | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def map(self, func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[func(item) for item in items]``, on the pool when there is more than one of each."""
        if self.workers == 1 or len(items) < 2 or threading.current_thread().name.startswith("camid-host"):
            return [func(item) for item in items]  # also: no nested submits from a pool thread
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = cf.ThreadPoolExecutor(self.workers, thread_name_prefix="camid-host")
                self._pid = os.getpid()
            pool = self._pool
        return list(pool.map(func, items))


def threads_for(pool: WorkerPool, elements: int) -> int:
    """Threads worth using on ``elements`` array elements: 1 for small work, at most the pool's."""
    return max(1, min(pool.workers, elements // MIN_ELEMENTS_PER_THREAD))


def split(count: int, parts: int) -> list[range]:
    """``range(count)`` cut into at most ``parts`` contiguous, non-empty, near-equal ranges."""
    parts = max(1, min(parts, count))
    bounds = [count * k // parts for k in range(parts + 1)]
    return [range(bounds[k], bounds[k + 1]) for k in range(parts)]


def strip_rows(width: int, itemsize: int, height: int) -> int:
    """Rows of a strip: about :data:`STRIP_BYTES` per temporary, at least 8 rows (halo overhead)."""
    return max(8, min(height, STRIP_BYTES // max(1, width * itemsize)))


def _smallest_box_mean(e: np.ndarray, hs: np.ndarray, bx: np.ndarray, lo: np.ndarray, windows: Sequence[int],
                       halo: int) -> None:
    """Into ``lo`` (n, w): the smallest over ``windows`` (ascending, odd) of the ``size x size`` box means of
    the squared strip ``e`` (n + 2 halo rows, w + 2 halo columns, zero outside the image). ``hs``
    (n + 2 halo, w) and ``bx`` (n, w) are scratch: the horizontal sums grow from one window to the next."""
    n, w = lo.shape
    reach = -1  # ``hs`` sums the columns j - reach .. j + reach (none yet)
    for k, size in enumerate(windows):
        r = size // 2
        first = reach + 1
        if reach < 0:  # the smallest window: the centre column and its two neighbours
            if r == 0:
                np.copyto(hs, e[:, halo:halo + w])
            else:
                np.add(e[:, halo - 1:halo - 1 + w], e[:, halo:halo + w], out=hs)
                hs += e[:, halo + 1:halo + 1 + w]
            first = 2
        for d in range(first, r + 1):
            hs += e[:, halo - d:halo - d + w]
            hs += e[:, halo + d:halo + d + w]
        reach = r
        # vertical: rows i - r .. i + r of the horizontal sums (the first window's go to ``lo``)
        acc = lo if k == 0 else bx
        if r == 0:
            np.copyto(acc, hs[halo:halo + n])
        else:
            np.add(hs[halo - r:halo - r + n], hs[halo - r + 1:halo - r + 1 + n], out=acc)
        for d in range(-r + 2, r + 1):
            acc += hs[halo + d:halo + d + n]
        acc *= 1.0 / (size * size)
        if k:
            np.minimum(lo, bx, out=lo)


def mihcak_shrink(pool: WorkerPool, coeffs: np.ndarray, noise_var: float | np.ndarray,
                  windows: Sequence[int], factor_only: bool = False) -> np.ndarray:
    """Mihcak's shrink of ``coeffs`` (..., h, w): ``coeffs * nv / (v + nv)``, same dtype and shape
    (``factor_only``: just the factor ``nv / (v + nv)``).

    ``v = min over windows of max(0, boxmean_w(coeffs^2) - nv)`` with zero-padded ``w x w`` box means
    (odd ``w``); ``noise_var`` is a scalar or an array broadcasting to (..., 1, 1) (one per plane).

    Per strip of rows (plus a halo of ``max(windows) // 2`` rows): the squared coefficients go into a
    zero-bordered buffer; horizontal window sums grow from the smallest window to the largest by two
    columns at a time (each window's sum reuses the previous one); each vertical sum adds the rows of
    its window. Sums of at most ``w*w`` non-negative terms, so float32 keeps ~1e-6 relative accuracy
    (no prefix-sum cancellation, unlike an integral image). ``min`` and ``max(0, . - nv)`` commute, and
    ``v + nv = max(mean, nv)``, so the denominator is one ``maximum`` of the smallest mean.
    """
    windows = tuple(sorted(set(int(s) for s in windows)))
    if not windows or any(s < 1 or s % 2 == 0 for s in windows):
        raise ValueError(f"Mihcak windows must be odd positive sizes, got {windows!r}")
    coeffs = np.ascontiguousarray(coeffs)
    lead, (h, w) = coeffs.shape[:-2], coeffs.shape[-2:]
    planes = coeffs.reshape(-1, h, w)
    nv = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), lead + (1, 1)).reshape(-1)
    out = np.empty_like(planes)
    rows = strip_rows(w, planes.itemsize, h)
    strips = [(p, r0) for p in range(planes.shape[0]) for r0 in range(0, h, rows)]

    def work(part: range) -> None:
        halo = windows[-1] // 2
        dtype = planes.dtype
        energy = np.zeros((rows + 2 * halo, w + 2 * halo), dtype)  # zero borders stay zero
        hsum = np.empty((rows + 2 * halo, w), dtype)
        box = np.empty((rows, w), dtype)
        low = np.empty((rows, w), dtype)
        for p, r0 in (strips[k] for k in part):
            plane, n = planes[p], min(rows, h - r0)
            top, bottom = max(r0 - halo, 0), min(r0 + n + halo, h)
            e = energy[:n + 2 * halo]
            first = top - (r0 - halo)  # rows of ``e`` above the image stay zero
            e[:first] = 0
            e[first + bottom - top:] = 0
            np.square(plane[top:bottom], out=e[first:first + bottom - top, halo:halo + w])
            lo = low[:n]
            _smallest_box_mean(e, hsum[:n + 2 * halo], box[:n], lo, windows, halo)
            # v + nv = max(0, mean - nv) + nv = max(mean, nv)
            v = dtype.type(nv[p])
            np.maximum(lo, v, out=lo)
            target = out[p, r0:r0 + n]
            if factor_only:
                with np.errstate(divide="ignore", invalid="ignore"):  # nv = 0: 0/0 where all is zero
                    np.divide(v, lo, out=target)
            else:
                np.multiply(plane[r0:r0 + n], v, out=target)
                target /= lo

    pool.map(work, split(len(strips), threads_for(pool, planes.size)))
    return out.reshape(coeffs.shape)


def wiener_dft(pool: WorkerPool, x: np.ndarray, noise_var: float | np.ndarray,
               windows: Sequence[int]) -> np.ndarray:
    """WienerInDFT of real ``x`` (..., H, W) with noise variance ``noise_var`` (scalar or (..., 1, 1)):
    ``residual.wiener_dft``'s twin, same dtype and shape.

    The twin computes ``real(ifft2(F * g))`` with ``F = fft2(x)`` and the real gain
    ``g = shrink(|F|) / |F|`` (0 where ``|F| = 0``). As ``x`` is real, ``F[-k] = conj(F[k])``, so
    ``real(ifft2(F * g)) = irfft2(F * (g[k] + g[-k]) / 2)`` (indices modulo (H, W)): the same result
    from half spectra, at about half the FFT cost. The full ``|F|`` (Mihcak's windows need all of it)
    is mirrored from the half; ``g`` is the shrink factor itself.
    """
    from scipy import fft

    h, w = x.shape[-2:]
    half = w // 2 + 1
    spectrum = fft.rfft2(x, axes=(-2, -1), workers=pool.workers)
    magnitude = np.empty(x.shape, dtype=np.result_type(x.dtype, np.float32))
    np.abs(spectrum, out=magnitude[..., :half])
    magnitude[..., :half] *= 1.0 / math.sqrt(h * w)
    # |F[k, l]| = |F[-k, -l]|: columns half..W-1 come from columns W-half..1, rows reversed (but row 0)
    if w > half:
        magnitude[..., :1, half:] = magnitude[..., :1, w - half:0:-1]
        magnitude[..., 1:, half:] = magnitude[..., :0:-1, w - half:0:-1]
    gain = mihcak_shrink(pool, magnitude, noise_var, windows, factor_only=True)
    if np.any(np.asarray(noise_var) == 0):  # nv / max(mean, nv) is 0/0 where all is zero: |F| = 0, gain 0
        gain[magnitude == 0] = 0
    # (g[k, l] + g[-k, -l]) / 2 on the half spectrum's columns 0..half-1
    sym = np.empty(spectrum.shape, dtype=gain.dtype)
    np.add(gain[..., :1, :1], gain[..., :1, :1], out=sym[..., :1, :1])
    np.add(gain[..., :1, 1:half], gain[..., :1, w - 1:w - half:-1], out=sym[..., :1, 1:])
    np.add(gain[..., 1:, :1], gain[..., :0:-1, :1], out=sym[..., 1:, :1])
    np.add(gain[..., 1:, 1:half], gain[..., :0:-1, w - 1:w - half:-1], out=sym[..., 1:, 1:])
    sym *= 0.5
    spectrum *= sym
    return fft.irfft2(spectrum, s=(h, w), axes=(-2, -1), workers=pool.workers)


@functools.lru_cache(maxsize=None)
def column_blocks(wavelet: str, block: int) -> tuple[np.ndarray, int, np.ndarray, int]:
    """Banded block matrices of pywt's periodized single-level DWT along one axis, read off pywt.

    Returns ``(analysis, shift, synthesis, start)`` in float64. ``analysis`` (2, block, 2*block + F - 2)
    maps the samples ``2*b*block - shift ...`` (indices modulo the length) to the ``block`` lowpass
    (``[0]``) and highpass (``[1]``) coefficients ``b*block ...``; ``synthesis`` (2, 2*block, K) maps
    the lowpass and highpass coefficients ``b*block + start ...`` to the samples ``2*b*block ...``.
    The matrices are rows of pywt's own transform of unit impulses, so pywt defines them.
    """
    import pywt

    taps = pywt.Wavelet(wavelet).dec_len
    n0 = 8 * (2 * block + taps)  # long enough that the middle rows never wrap around
    mid = n0 // 4
    lo, hi = pywt.dwt(np.eye(n0), wavelet, "periodization", axis=0)  # coefficients = lo @ samples
    width = 2 * block + taps - 2
    rows = slice(mid, mid + block)
    used = np.nonzero(np.abs(lo[rows]).sum(0) + np.abs(hi[rows]).sum(0))[0]
    first = int(used.min())
    if used.max() - first >= width:
        raise AssertionError(f"{wavelet}: filter support wider than {taps} taps")  # pragma: no cover
    analysis = np.stack([lo[rows, first:first + width], hi[rows, first:first + width]])
    half = n0 // 2
    eye, zero = np.eye(half), np.zeros((half, half))
    slo = pywt.idwt(eye, zero, wavelet, "periodization", axis=0)  # samples = slo @ lowpass
    shi = pywt.idwt(zero, eye, wavelet, "periodization", axis=0)
    rows = slice(2 * mid, 2 * mid + 2 * block)
    used = np.nonzero(np.abs(slo[rows]).sum(0) + np.abs(shi[rows]).sum(0))[0]
    cols = slice(used.min(), used.max() + 1)
    synthesis = np.stack([slo[rows, cols], shi[rows, cols]])
    return analysis, 2 * mid - first, synthesis, int(used.min()) - mid


def _block(length: int) -> int:
    """Outputs per block: the largest of 8, 4, 2, 1 with ``2 * block`` dividing ``length``."""
    return next(b for b in (8, 4, 2, 1) if length % (2 * b) == 0)


def _windows(x: np.ndarray, index: np.ndarray, count: int, size: int, step: int) -> np.ndarray:
    """Overlapping windows (..., count, size, w) of the rows ``index`` of ``x`` (..., n, w) (a read-only view
    of one gathered copy)."""
    ext = np.take(x, index, axis=-2)
    s = ext.strides
    return as_strided(ext, shape=ext.shape[:-2] + (count, size, x.shape[-1]),
                      strides=s[:-2] + (step * s[-2], s[-2], s[-1]), writeable=False)


def dwt_columns(x: np.ndarray, wavelet: str) -> tuple[np.ndarray, np.ndarray]:
    """``pywt.dwt(x, wavelet, "periodization", axis=-2)`` for an even height >= the filter length."""
    n = x.shape[-2]
    block = _block(n)
    analysis, shift, _, _ = column_blocks(wavelet, block)
    mats = analysis.astype(x.dtype)
    size = mats.shape[-1]
    count = n // (2 * block)
    windows = _windows(x, (np.arange((count - 1) * 2 * block + size) - shift) % n, count, size, 2 * block)
    shape = x.shape[:-2] + (n // 2, x.shape[-1])
    return (mats[0] @ windows).reshape(shape), (mats[1] @ windows).reshape(shape)


def idwt_columns(lo: np.ndarray, hi: np.ndarray, wavelet: str) -> np.ndarray:
    """``pywt.idwt(lo, hi, wavelet, "periodization", axis=-2)``: (..., h, w) -> (..., 2h, w)."""
    h = lo.shape[-2]
    block = _block(2 * h)
    _, _, synthesis, start = column_blocks(wavelet, block)
    mats = synthesis.astype(np.result_type(lo, hi))
    size = mats.shape[-1]
    count = h // block
    index = (np.arange((count - 1) * block + size) + start) % h
    out = mats[0] @ _windows(lo, index, count, size, block)
    out += mats[1] @ _windows(hi, index, count, size, block)
    return out.reshape(lo.shape[:-2] + (2 * h, lo.shape[-1]))


def dwt_fits(height: int, wavelet: str, levels: int) -> bool:
    """Whether :func:`wavedec2` applies: every level's height even and at least the filter length."""
    import pywt

    taps = pywt.Wavelet(wavelet).dec_len
    return all(height % 2 ** (j + 1) == 0 and height // 2 ** j >= taps for j in range(levels))


def wavedec2(x: np.ndarray, wavelet: str, levels: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """``pywt.wavedec2(x, mode="periodization", axes=(-2, -1))`` as (approx, details finest first, each
    (..., 3, h, w) in pywt's (H, V, D) order), for heights where :func:`dwt_fits`. pywt's order of axes:
    the columns (axis -2) first, then the rows."""
    import pywt

    approx, details = x, []
    for _ in range(levels):
        lo, hi = dwt_columns(approx, wavelet)
        approx, vertical = pywt.dwt(lo, wavelet, "periodization", axis=-1)
        horizontal, diagonal = pywt.dwt(hi, wavelet, "periodization", axis=-1)
        details.append(np.stack([horizontal, vertical, diagonal], axis=-3))
    return approx, details


def waverec2(approx: np.ndarray, details: list[np.ndarray], wavelet: str) -> np.ndarray:
    """Inverse of :func:`wavedec2` (``pywt.waverec2``): the rows (axis -1) first, then the columns."""
    import pywt

    for band in reversed(details):
        approx = approx[..., :band.shape[-2], :band.shape[-1]]  # as pywt: an odd width came back one wider
        lo = pywt.idwt(approx, band[..., 1, :, :], wavelet, "periodization", axis=-1)
        hi = pywt.idwt(band[..., 0, :, :], band[..., 2, :, :], wavelet, "periodization", axis=-1)
        approx = idwt_columns(lo, hi, wavelet)
    return approx

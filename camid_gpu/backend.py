"""The backend seam: the one place that knows NumPy from torch.

Every algorithm in camid (residual, fingerprint, match) is written once against the small set of
primitives a :class:`Backend` provides. Arrays handed between them are the backend's native arrays
(``numpy.ndarray`` or ``torch.Tensor``), batch-first, with the image axes last: ``(..., H, W)``.

- :class:`NumpyBackend`: pywt + scipy.fft + scipy.ndimage, in float64 (the default) or float32, on a
  thread pool, with Mihcak's shrink fused in cache-sized strips (``host_kernels``).
- :class:`TorchBackend`: pytorch-wavelets + torch.fft + separable average pooling, on CPU or CUDA,
  computing in float32 by default (float64 on request); on CUDA the fused CuPy kernels of
  ``kernels/`` replace the hot spots when CuPy is installed.

``get_backend("auto")`` picks torch on CUDA when it is available, else NumPy.
"""
from __future__ import annotations

import functools
import importlib
import importlib.resources
import sys
import threading
import types
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu.errors import MissingExtraError

Array = Any  # numpy.ndarray or torch.Tensor

BACKEND_NAMES = ("auto", "numpy", "torch")
#: working dtype of ``get_backend("numpy")`` ("float32": faster, residuals within ~1e-4 of float64)
NUMPY_DTYPE = "float64"


def import_optional(module: str, extra: str, feature: str):
    """Import an optional dependency or raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module.split(".")[0], extra, feature) from exc


_PTW_LOCK = threading.Lock()


def import_pytorch_wavelets():
    """Import pytorch-wavelets 1.3.0, which needs ``pkg_resources`` at import time.

    Its ``dtcwt.coeffs`` module does ``from pkg_resources import resource_stream`` (for DTCWT filter
    files camid never uses). setuptools >= 82 no longer ships ``pkg_resources``, and older ones warn
    on import. So while the package imports, and only then, a stand-in module providing that one
    function (on top of :mod:`importlib.resources`) sits in ``sys.modules``; afterwards the previous
    state is restored so that nothing else in the process sees it.
    """
    if "pytorch_wavelets" in sys.modules:
        return sys.modules["pytorch_wavelets"]
    import_optional("torch", "torch", "the torch backend")
    with _PTW_LOCK:
        previous = sys.modules.get("pkg_resources")
        stand_in = types.ModuleType("pkg_resources")
        stand_in.__doc__ = "camid_gpu stand-in: resource_stream only, for pytorch-wavelets' import."

        def resource_stream(package: str, resource: str):
            return importlib.resources.files(package).joinpath(resource).open("rb")

        stand_in.resource_stream = resource_stream  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = stand_in
        try:
            return import_optional("pytorch_wavelets", "torch", "the torch backend")
        finally:
            if previous is None:
                sys.modules.pop("pkg_resources", None)
            else:
                sys.modules["pkg_resources"] = previous


class Backend:
    """Primitives on batch-first arrays ``(..., H, W)``. Subclasses implement every method."""

    name: str = "?"
    device: str = "cpu"

    # conversion -----------------------------------------------------------------------------
    def asarray(self, x: Any) -> Array:
        """Native array in the working float dtype on the backend's device (no copy when possible)."""
        raise NotImplementedError

    def to_numpy(self, x: Array) -> np.ndarray:
        raise NotImplementedError

    # indexing and reductions -----------------------------------------------------------------
    def take(self, x: Array, index: np.ndarray, axis: int) -> Array:
        raise NotImplementedError

    def mean(self, x: Array, axis: int | tuple[int, ...]) -> Array:
        """Mean over ``axis``, keeping the reduced dimensions."""
        raise NotImplementedError

    def std(self, x: Array, axis: int | tuple[int, ...]) -> Array:
        """Sample standard deviation (N-1, as MATLAB's ``std2``), keeping dimensions."""
        raise NotImplementedError

    def sum(self, x: Array, axis: int | tuple[int, ...]) -> Array:
        """Sum over ``axis``, keeping the reduced dimensions."""
        raise NotImplementedError

    def amax(self, x: Array, axis: int | tuple[int, ...]) -> Array:
        """Maximum over ``axis``, keeping the reduced dimensions."""
        raise NotImplementedError

    def argmax_flat(self, x: Array) -> np.ndarray:
        """Host int64 array of the flat index of the maximum of each ``(..., H, W)`` plane."""
        raise NotImplementedError

    def arange(self, n: int) -> Array:
        """0..n-1 as a float array of the working dtype."""
        raise NotImplementedError

    # elementwise ----------------------------------------------------------------------------
    def maximum(self, x: Array, y: Array | float) -> Array:
        raise NotImplementedError

    def minimum(self, x: Array, y: Array | float) -> Array:
        raise NotImplementedError

    def where(self, cond: Array, x: Array | float, y: Array | float) -> Array:
        raise NotImplementedError

    def abs(self, x: Array) -> Array:
        raise NotImplementedError

    def real(self, x: Array) -> Array:
        raise NotImplementedError

    def exp(self, x: Array) -> Array:
        raise NotImplementedError

    def sqrt(self, x: Array) -> Array:
        raise NotImplementedError

    def zeros_like(self, x: Array) -> Array:
        raise NotImplementedError

    def stack(self, xs: Sequence[Array], axis: int) -> Array:
        raise NotImplementedError

    def rot90(self, x: Array, k: int) -> Array:
        """Rotate the last two axes by ``k`` quarter turns counter-clockwise (as ``numpy.rot90``)."""
        raise NotImplementedError

    def roll(self, x: Array, shift: tuple[int, int]) -> Array:
        """Circular shift of the last two axes."""
        raise NotImplementedError

    # transforms ------------------------------------------------------------------------------
    def wavedec2(self, x: Array, wavelet: str, levels: int) -> tuple[Array, list[Array]]:
        """Periodic 2-D DWT of the last two axes (sizes divisible by ``2**levels``).

        Returns ``(approx, details)``: ``approx`` is ``(..., h, w)`` at the coarsest level and
        ``details[j]`` is ``(..., 3, h_j, w_j)`` (horizontal, vertical, diagonal), finest first.
        """
        raise NotImplementedError

    def waverec2(self, approx: Array, details: list[Array], wavelet: str) -> Array:
        """Inverse of :meth:`wavedec2`."""
        raise NotImplementedError

    def box_mean(self, x: Array, size: int) -> Array:
        """Mean over a ``size x size`` window (odd size) of the last two axes, zero padding, same size."""
        raise NotImplementedError

    def fft2(self, x: Array) -> Array:
        raise NotImplementedError

    def ifft2(self, x: Array) -> Array:
        raise NotImplementedError

    # fused kernels ---------------------------------------------------------------------------
    def kernel(self, name: str) -> Callable | None:
        """A fused implementation of ``name`` for this backend and device, or None (use the twin)."""
        return None

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""

    def describe(self) -> str:
        return f"{self.name} on {self.device}"


class NumpyBackend(Backend):
    """pywt + scipy on the host, in ``dtype`` "float64" or "float32".

    - ``use_kernels``: Mihcak's shrink runs fused in cache-sized row strips
      (:func:`camid_gpu.host_kernels.mihcak_shrink`, the host analogue of the CUDA kernel) instead of
      the plain primitives (four full-size ``uniform_filter`` passes and their temporaries). Same math;
      in float64 it agrees with the plain primitives to ~1e-12.
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
        from camid_gpu import host_kernels

        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.use_kernels = bool(use_kernels)
        self._pool = host_kernels.WorkerPool(host_kernels.default_workers() if workers is None else workers)
        self.workers = self._pool.workers

    def describe(self) -> str:
        kernels = "host kernels" if self.use_kernels else "plain primitives"
        return f"numpy on cpu, {self.dtype.name}, {kernels}, {self.workers} thread{'s' if self.workers > 1 else ''}"

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

        from camid_gpu import host_kernels

        if self.use_kernels and host_kernels.dwt_fits(height, wavelet, levels):
            return functools.partial(host_kernels.wavedec2, wavelet=wavelet, levels=levels)

        def plain(x):
            coeffs = pywt.wavedec2(x, wavelet, mode="periodization", level=levels, axes=(-2, -1))
            return coeffs[0], [np.stack(bands, axis=-3) for bands in reversed(coeffs[1:])]

        return plain

    def _threads_for_planes(self, x) -> int:
        """Threads for a transform of the planes of ``x``: one plane per thread, if large enough."""
        from camid_gpu import host_kernels

        planes = int(np.prod(x.shape[:-2], dtype=np.int64))
        if planes < 2:
            return 1
        return min(planes, host_kernels.threads_for(self._pool, x.size))

    def waverec2(self, approx, details, wavelet):
        import pywt

        from camid_gpu import host_kernels

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

    def box_mean(self, x, size):
        from scipy import ndimage

        window = (1,) * (x.ndim - 2) + (size, size)
        return ndimage.uniform_filter(x, size=window, mode="constant", cval=0.0)

    def fft2(self, x):
        from scipy import fft

        return fft.fft2(x, axes=(-2, -1), workers=self.workers)

    def ifft2(self, x):
        from scipy import fft

        return fft.ifft2(x, axes=(-2, -1), workers=self.workers)

    def kernel(self, name):
        if not self.use_kernels:
            return None
        from camid_gpu import host_kernels

        if name in ("mihcak_shrink", "wiener_dft"):
            return functools.partial(getattr(host_kernels, name), self._pool)
        return None


class TorchBackend(Backend):
    """pytorch-wavelets + torch.fft on ``device`` ("cpu", "cuda", "cuda:N"), in ``dtype``."""

    name = "torch"

    def __init__(self, device: str | None = None, dtype: str = "float32", use_kernels: bool = True):
        self.torch = import_optional("torch", "torch", "the torch backend")
        self.ptw = import_pytorch_wavelets()
        torch = self.torch
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but torch sees no CUDA device")
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.torch_device = dev
        self.device = str(dev)
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = getattr(torch, dtype)
        self.use_kernels = use_kernels and dev.type == "cuda"
        self._dwt_cache: dict[tuple[str, int], Any] = {}
        self._idwt_cache: dict[str, Any] = {}

    def describe(self) -> str:
        name = self.device
        if self.torch_device.type == "cuda":
            name += f" ({self.torch.cuda.get_device_name(self.torch_device)})"
        return f"torch {self.torch.__version__} on {name}, {str(self.dtype).replace('torch.', '')}"

    def asarray(self, x):
        torch = self.torch
        if isinstance(x, torch.Tensor):
            return x.to(device=self.torch_device, dtype=self.dtype)
        x = np.asarray(x)
        if not x.flags.writeable or not x.flags.c_contiguous or x.dtype.byteorder not in "=|":
            # torch.from_numpy shares memory and warns on read-only arrays (e.g. from PIL): copy those
            x = np.array(x, dtype=x.dtype.newbyteorder("="), order="C", copy=True)
        # integer pixels travel as they are (uint8 is 4x smaller) and become floats on the device;
        # pinned host memory lets the copy run asynchronously (DMA) instead of staging synchronously
        t = torch.from_numpy(x if x.dtype != np.uint16 else x.astype(np.int32))
        if self.torch_device.type == "cuda":
            t = t.pin_memory()
        return t.to(device=self.torch_device, non_blocking=True).to(self.dtype)

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def take(self, x, index, axis):
        idx = self.torch.as_tensor(np.asarray(index, dtype=np.int64), device=x.device)
        return self.torch.index_select(x, axis % x.ndim, idx)

    def mean(self, x, axis):
        return x.mean(dim=axis, keepdim=True)

    def std(self, x, axis):
        return x.std(dim=axis, keepdim=True, correction=1)

    def sum(self, x, axis):
        return x.sum(dim=axis, keepdim=True)

    def amax(self, x, axis):
        return x.amax(dim=axis, keepdim=True)

    def argmax_flat(self, x):
        return x.reshape(*x.shape[:-2], -1).argmax(dim=-1).cpu().numpy().astype(np.int64)

    def arange(self, n):
        return self.torch.arange(n, dtype=self.dtype, device=self.torch_device)

    def _as_tensor(self, y, like):
        if isinstance(y, self.torch.Tensor):
            return y
        return self.torch.as_tensor(y, dtype=like.dtype, device=like.device)

    def maximum(self, x, y):
        return self.torch.maximum(x, self._as_tensor(y, x))

    def minimum(self, x, y):
        return self.torch.minimum(x, self._as_tensor(y, x))

    def where(self, cond, x, y):
        return self.torch.where(cond, x, y)

    def abs(self, x):
        return x.abs()

    def real(self, x):
        return x.real

    def exp(self, x):
        return x.exp()

    def sqrt(self, x):
        return x.sqrt()

    def zeros_like(self, x):
        return self.torch.zeros_like(x)

    def stack(self, xs, axis):
        return self.torch.stack(list(xs), dim=axis)

    def rot90(self, x, k):
        return self.torch.rot90(x, k, dims=(-2, -1))

    def roll(self, x, shift):
        return self.torch.roll(x, shifts=shift, dims=(-2, -1))

    def _float64_built(self, factory: Callable[[], Any]) -> Any:
        """Build a pytorch-wavelets module with float64 filters, then cast to the working dtype.

        Its modules take their filter dtype from torch's default dtype (float32) at construction;
        casting float32-built filters up to float64 would leave a ~1e-5 error against pywt.
        """
        torch = self.torch
        with _PTW_LOCK:
            previous = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)
            try:
                module = factory()
            finally:
                torch.set_default_dtype(previous)
        return module.to(device=self.torch_device, dtype=self.dtype)

    def _dwt(self, wavelet: str, levels: int):
        key = (wavelet, levels)
        if key not in self._dwt_cache:
            self._dwt_cache[key] = self._float64_built(
                lambda: self.ptw.DWTForward(J=levels, wave=wavelet, mode="periodization")
            )
        return self._dwt_cache[key]

    def _idwt(self, wavelet: str):
        if wavelet not in self._idwt_cache:
            self._idwt_cache[wavelet] = self._float64_built(
                lambda: self.ptw.DWTInverse(wave=wavelet, mode="periodization")
            )
        return self._idwt_cache[wavelet]

    @staticmethod
    def _short_for_ptw(wavelet: str, levels: int, h: int, w: int) -> bool:
        """True when some level's input is shorter than the filter.

        pytorch-wavelets' periodization wraps the signal only once, so it differs from pywt's (exact)
        periodic convolution there; that happens only for images under ~2**levels * filter length
        (128 px for db4 and L = 4), where the host transform costs nothing.
        """
        import pywt

        return min(h, w) // 2 ** (levels - 1) < pywt.Wavelet(wavelet).dec_len

    def wavedec2(self, x, wavelet, levels):
        lead, (h, w) = x.shape[:-2], x.shape[-2:]
        if self._short_for_ptw(wavelet, levels, h, w):
            approx, details = NumpyBackend().wavedec2(x.detach().cpu().double().numpy(), wavelet, levels)
            return self.asarray(approx), [self.asarray(d) for d in details]
        approx, highs = self._dwt(wavelet, levels)(x.reshape(-1, 1, h, w))
        approx = approx.reshape(*lead, *approx.shape[-2:])
        details = [d.reshape(*lead, 3, *d.shape[-2:]) for d in highs]
        return approx, details

    def waverec2(self, approx, details, wavelet):
        h, w = details[0].shape[-2:]
        if self._short_for_ptw(wavelet, len(details), 2 * h, 2 * w):
            out = NumpyBackend().waverec2(self.to_numpy(approx.double()), [self.to_numpy(d.double()) for d in details],
                                          wavelet)
            return self.asarray(out)
        lead = approx.shape[:-2]
        yl = approx.reshape(-1, 1, *approx.shape[-2:])
        yh = [d.reshape(-1, 1, 3, *d.shape[-2:]) for d in details]
        out = self._idwt(wavelet)((yl, yh))
        return out.reshape(*lead, *out.shape[-2:])

    def box_mean(self, x, size):
        import torch.nn.functional as F

        lead, (h, w) = x.shape[:-2], x.shape[-2:]
        y = x.reshape(-1, 1, h, w)
        # separable zero-padded means: exact, and O(2 size) per pixel instead of O(size^2)
        y = F.avg_pool2d(y, (size, 1), stride=1, padding=(size // 2, 0), count_include_pad=True)
        y = F.avg_pool2d(y, (1, size), stride=1, padding=(0, size // 2), count_include_pad=True)
        return y.reshape(*lead, h, w)

    def fft2(self, x):
        return self.torch.fft.fft2(x, dim=(-2, -1))

    def ifft2(self, x):
        return self.torch.fft.ifft2(x, dim=(-2, -1))

    def kernel(self, name):
        if not self.use_kernels:
            return None
        from camid_gpu import cuda

        return cuda.get_fused(name)

    def synchronize(self):
        if self.torch_device.type == "cuda":
            self.torch.cuda.synchronize(self.torch_device)


@functools.lru_cache(maxsize=None)
def _cached_backend(name: str, device: str | None, dtype: str | None) -> Backend:
    if name == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on the CPU only; got device={device!r}")
        return NumpyBackend(dtype=dtype or NUMPY_DTYPE)
    return TorchBackend(device=device, dtype=dtype or "float32")


def torch_cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (never raises)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def get_backend(name: str | Backend = "auto", device: str | None = None, dtype: str | None = None) -> Backend:
    """Return a (cached) backend.

    Parameters
    ----------
    name : "auto" | "numpy" | "torch" or a Backend instance (returned as is).
        "auto" is torch on CUDA when torch sees a GPU, else numpy.
    device : "cpu", "cuda" or "cuda:N" (torch only); default: CUDA when available.
    dtype : "float32" or "float64". Default: float32 on torch, :data:`NUMPY_DTYPE` on numpy.
    """
    if isinstance(name, Backend):
        return name
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {name!r}")
    if name == "auto":
        if device not in (None, "cpu") or (device is None and torch_cuda_available()):
            name = "torch"
        else:
            name = "numpy"
    if dtype not in (None, "float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return _cached_backend(name, device, dtype)

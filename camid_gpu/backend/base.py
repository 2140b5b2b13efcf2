"""The backend interface: the primitives every algorithm is written against.

Arrays handed between them are the backend's native arrays (``numpy.ndarray`` or ``torch.Tensor``),
batch-first, with the image axes last: ``(..., H, W)``. Implementations: :mod:`.numpy_backend`,
:mod:`.torch_backend`; :func:`camid_gpu.backend.get_backend` picks one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, TypeVar, Union, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

#: an array of either backend (what the algorithms, written once for both, hand around)
Array = Union[np.ndarray, "torch.Tensor"]
#: the native array type of one backend: ``numpy.ndarray`` for NumPy, ``torch.Tensor`` for torch
ArrayT = TypeVar("ArrayT")


@runtime_checkable
class Backend(Protocol[ArrayT]):
    """Primitives on batch-first arrays ``(..., H, W)`` of the native type ``ArrayT``.

    A typed protocol: an implementation subclasses it (``NumpyBackend(Backend[np.ndarray])``) and
    implements every method that raises ``NotImplementedError`` here; ``itemsize``, ``memory_info``,
    ``empty_cache``, ``kernel``, ``synchronize`` and ``describe`` have host defaults. ``isinstance(x,
    Backend)`` is true for the implementations (and for any object with the same members).
    """

    name: str = "?"
    device: str = "cpu"
    dtype: Any  # the compute dtype: numpy.float64, torch.float32 or torch.float64

    @property
    def itemsize(self) -> int:
        """Bytes of one real value in this backend's compute dtype (8 for float64, 4 for float32)."""
        return np.dtype(self.dtype).itemsize

    def memory_info(self) -> tuple[int, int] | None:
        """(free, total) bytes of the device's memory, or None for host memory (no device budget)."""
        return None

    def empty_cache(self) -> None:
        """Give cached device memory back (after an out-of-memory error); nothing to do on the host."""

    # conversion -----------------------------------------------------------------------------
    def asarray(self, x: Any) -> ArrayT:
        """Native array in the working float dtype on the backend's device (no copy when possible)."""
        raise NotImplementedError

    def to_numpy(self, x: ArrayT) -> np.ndarray:
        raise NotImplementedError

    # indexing and reductions -----------------------------------------------------------------
    def take(self, x: ArrayT, index: np.ndarray, axis: int) -> ArrayT:
        raise NotImplementedError

    def mean(self, x: ArrayT, axis: int | tuple[int, ...]) -> ArrayT:
        """Mean over ``axis``, keeping the reduced dimensions."""
        raise NotImplementedError

    def std(self, x: ArrayT, axis: int | tuple[int, ...]) -> ArrayT:
        """Sample standard deviation (N-1, as MATLAB's ``std2``), keeping dimensions."""
        raise NotImplementedError

    def sum(self, x: ArrayT, axis: int | tuple[int, ...]) -> ArrayT:
        """Sum over ``axis``, keeping the reduced dimensions."""
        raise NotImplementedError

    def amax(self, x: ArrayT, axis: int | tuple[int, ...]) -> ArrayT:
        """Maximum over ``axis``, keeping the reduced dimensions."""
        raise NotImplementedError

    def argmax_flat(self, x: ArrayT) -> np.ndarray:
        """Host int64 array of the flat index of the maximum of each ``(..., H, W)`` plane."""
        raise NotImplementedError

    def arange(self, n: int) -> ArrayT:
        """0..n-1 as a float array of the working dtype."""
        raise NotImplementedError

    # elementwise ----------------------------------------------------------------------------
    def maximum(self, x: ArrayT, y: ArrayT | float) -> ArrayT:
        raise NotImplementedError

    def minimum(self, x: ArrayT, y: ArrayT | float) -> ArrayT:
        raise NotImplementedError

    def where(self, cond: ArrayT, x: ArrayT | float, y: ArrayT | float) -> ArrayT:
        raise NotImplementedError

    def abs(self, x: ArrayT) -> ArrayT:
        raise NotImplementedError

    def real(self, x: ArrayT) -> ArrayT:
        raise NotImplementedError

    def exp(self, x: ArrayT) -> ArrayT:
        raise NotImplementedError

    def sqrt(self, x: ArrayT) -> ArrayT:
        raise NotImplementedError

    def zeros_like(self, x: ArrayT) -> ArrayT:
        raise NotImplementedError

    def stack(self, xs: Sequence[ArrayT], axis: int) -> ArrayT:
        raise NotImplementedError

    def rot90(self, x: ArrayT, k: int) -> ArrayT:
        """Rotate the last two axes by ``k`` quarter turns counter-clockwise (as ``numpy.rot90``)."""
        raise NotImplementedError

    def roll(self, x: ArrayT, shift: tuple[int, int]) -> ArrayT:
        """Circular shift of the last two axes."""
        raise NotImplementedError

    # transforms ------------------------------------------------------------------------------
    def wavedec2(self, x: ArrayT, wavelet: str, levels: int) -> tuple[ArrayT, list[ArrayT]]:
        """Periodic 2-D DWT of the last two axes (sizes divisible by ``2**levels``).

        Returns ``(approx, details)``: ``approx`` is ``(..., h, w)`` at the coarsest level and
        ``details[j]`` is ``(..., 3, h_j, w_j)`` (horizontal, vertical, diagonal), finest first.
        """
        raise NotImplementedError

    def waverec2(self, approx: ArrayT, details: list[ArrayT], wavelet: str) -> ArrayT:
        """Inverse of :meth:`wavedec2`."""
        raise NotImplementedError

    def box_mean(self, x: ArrayT, size: int) -> ArrayT:
        """Mean over a ``size x size`` window (odd size) of the last two axes, zero padding, same size."""
        raise NotImplementedError

    def fft2(self, x: ArrayT) -> ArrayT:
        raise NotImplementedError

    def ifft2(self, x: ArrayT) -> ArrayT:
        raise NotImplementedError

    # asynchronous uploads (used by :mod:`camid_gpu.backend.staging`) ------------------------------
    def host_buffer(self, nbytes: int) -> np.ndarray:
        """A 1-D uint8 host buffer the device can copy from asynchronously (page-locked on CUDA)."""
        return np.empty(nbytes, np.uint8)

    def copy_stream(self) -> Any:
        """A stream for host -> device copies beside the compute stream; None where copies are immediate."""
        return None

    def upload(self, host: np.ndarray, stream: Any) -> tuple[Array, Any]:
        """Start copying ``host`` (integer pixels, any shape) to the device on ``stream``.

        Returns the native array (same dtype, not yet float) and an event that marks the end of the copy
        (None on the host, where the copy is done on return). ``host`` may be overwritten once the event is done.
        """
        return host.copy(), None

    def wait_event(self, event: Any) -> None:
        """Make later device work wait for ``event`` (no-op on the host)."""

    def host_wait_event(self, event: Any) -> None:
        """Block the host until ``event`` is done (no-op on the host)."""

    # fused kernels (each algorithm holds its own: e.g. ``prnu.residual.MIHCAK_KERNEL``) --------------------
    def cuda_kernel_device(self) -> Any:
        """The CUDA device on which this backend launches fused CUDA kernels, or None (use the twins)."""
        return None

    def host_kernel(self, kernel: Callable) -> Callable | None:
        """``kernel`` (a function of :mod:`camid_gpu.backend.host_kernels`) bound to this backend's threads
        when the backend runs host kernels, else None (use the twin)."""
        return None

    # Gram products (blind clustering): float32 blocks whatever the working dtype ------------------------
    def gram_upload(self, block: np.ndarray, half_scale: float | None = None) -> Any:
        """Rows ``block`` on the device as float32 (float16 times ``half_scale`` when given: CUDA only)."""
        if half_scale is not None:
            raise ValueError("float16 Gram products need a CUDA device")
        return np.ascontiguousarray(block, dtype=np.float32)

    def gram_product(self, a: Any, b: Any, half_scale: float | None = None) -> np.ndarray:
        """``a b^T`` of two :meth:`gram_upload` blocks as a host float32 array (undoing ``half_scale``)."""
        return a @ b.T

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""

    def describe(self) -> str:
        return f"{self.name} on {self.device}"


# -- arrays that arrive without a backend (the GPU JPEG decoder's torch/CuPy pixels) ---------------------------
def to_host(pixels: Any) -> np.ndarray:
    """A host array of NumPy, torch (any device) or CuPy ``pixels``."""
    if isinstance(pixels, np.ndarray):
        return pixels
    if hasattr(pixels, "cpu"):
        return pixels.cpu().numpy()
    return pixels.get() if hasattr(pixels, "get") else np.asarray(pixels)


def rot90(pixels: Any, k: int) -> Any:
    """``pixels`` ``(h, w[, c])`` turned ``k`` quarter turns counter-clockwise, on their own device."""
    return np.rot90(pixels, k) if isinstance(pixels, np.ndarray) else pixels.rot90(k, (0, 1))


def contiguous(pixels: Any) -> Any:
    """A C-contiguous ``pixels`` on their own device (a copy only when needed)."""
    return np.ascontiguousarray(pixels) if isinstance(pixels, np.ndarray) else pixels.contiguous()


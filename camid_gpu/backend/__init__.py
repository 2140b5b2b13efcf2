"""The backend seam: the one place that knows NumPy from torch.

Every algorithm in camid (residual, fingerprint, PCE, Mahalanobis) is written once against the small
set of primitives a :class:`~camid_gpu.backend.base.Backend` provides (``base.py``):

- :class:`~camid_gpu.backend.numpy_backend.NumpyBackend`: pywt + scipy.fft + scipy.ndimage, float64 by default
  (float32 on request), on a thread pool, with host kernels (``host_kernels.py``) for the hot spots.
- :class:`~camid_gpu.backend.torch_backend.TorchBackend`: pytorch-wavelets + torch.fft + separable average
  pooling, on CPU or CUDA, float32 by default (float64 on request); on CUDA the fused CuPy kernels of
  ``camid_gpu/kernels/`` replace the hot spots when CuPy is installed.

``get_backend("auto")`` picks torch on CUDA when it is available, else NumPy.
"""
from __future__ import annotations

import functools

from camid_gpu._shared.optional import import_optional, import_pytorch_wavelets, torch_cuda_available
from camid_gpu.backend.base import Array, Backend
from camid_gpu.backend.numpy_backend import NumpyBackend
from camid_gpu.backend.torch_backend import CudaDevice, TorchBackend, cuda_devices
from camid_gpu.config.defaults import API_PRECISION

__all__ = ["Array", "Backend", "BACKEND_NAMES", "CudaDevice", "NumpyBackend", "TorchBackend",
           "cuda_devices", "get_backend", "import_optional", "import_pytorch_wavelets", "torch_cuda_available"]

BACKEND_NAMES = ("auto", "numpy", "torch")


@functools.lru_cache(maxsize=None)
def _cached_backend(name: str, device: str | None, dtype: str | None) -> Backend:
    if name == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on the CPU only; got device={device!r}")
        return NumpyBackend(dtype=dtype or API_PRECISION["numpy"])
    return TorchBackend(device=device, dtype=dtype or API_PRECISION["torch"])


def get_backend(name: str | Backend = "auto", device: str | None = None, dtype: str | None = None) -> Backend:
    """Return a (cached) backend.

    Parameters
    ----------
    name : "auto" | "numpy" | "torch" or a Backend instance (returned as is).
        "auto" is torch on CUDA when torch sees a GPU, else numpy.
    device : "cpu", "cuda" or "cuda:N" (torch only); default: CUDA when available.
    dtype : "float32" or "float64". Default: :data:`camid_gpu.config.API_PRECISION` (float64 on numpy, float32
        on torch); batch runs pass :data:`camid_gpu.config.PRECISION`.
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


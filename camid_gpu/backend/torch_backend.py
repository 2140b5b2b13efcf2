"""The torch backend: pytorch-wavelets + torch.fft + separable average pooling, on CPU or CUDA.

Computes in float32 by default (float64 on request); on CUDA the fused CuPy kernels of ``camid_gpu/kernels/``
replace the hot spots when CuPy is installed: each algorithm holds its kernel (e.g. ``prnu.residual.MIHCAK_KERNEL``)
and launches it on :meth:`TorchBackend.cuda_kernel_device`.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from camid_gpu._shared.optional import _PTW_LOCK, import_optional, import_pytorch_wavelets, torch_cuda_available
from camid_gpu.backend.base import Backend
from camid_gpu.backend.numpy_backend import NumpyBackend


class CudaDevice(NamedTuple):
    """A CUDA device as torch sees it; memory in bytes."""

    index: int
    name: str
    free_bytes: int
    total_bytes: int


def cuda_devices() -> list[CudaDevice]:
    """The CUDA devices torch sees, in index order; [] without torch or without a device."""
    if not torch_cuda_available():
        return []
    torch = import_optional("torch", "torch", "listing CUDA devices")
    devices = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        devices.append(CudaDevice(index, torch.cuda.get_device_name(index), int(free), int(total)))
    return devices


class TorchBackend(Backend["torch.Tensor"]):
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

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    def memory_info(self) -> tuple[int, int] | None:
        if self.torch_device.type != "cuda":
            return None
        free, total = self.torch.cuda.mem_get_info(self.torch_device)
        return int(free), int(total)

    def empty_cache(self) -> None:
        if self.torch_device.type == "cuda":
            self.torch.cuda.empty_cache()

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

    def host_buffer(self, nbytes):
        # numpy view of a (page-locked on CUDA) tensor; the array's base keeps the tensor alive
        on_cuda = self.torch_device.type == "cuda"
        return self.torch.empty(nbytes, dtype=self.torch.uint8, pin_memory=on_cuda).numpy()

    def copy_stream(self):
        return self.torch.cuda.Stream(self.torch_device) if self.torch_device.type == "cuda" else None

    def upload(self, host, stream):
        torch = self.torch
        src = torch.from_numpy(host)
        if stream is None:
            return src.to(self.torch_device, copy=True), None
        # allocated on the compute stream, which is where it is used and freed; the copy stream first waits
        # for the compute stream so that memory the allocator hands back is no longer being read
        dst = torch.empty(src.shape, dtype=src.dtype, device=self.torch_device)
        stream.wait_stream(torch.cuda.current_stream(self.torch_device))
        with torch.cuda.stream(stream):
            dst.copy_(src, non_blocking=True)
            event = torch.cuda.Event()
            event.record(stream)
        return dst, event

    def wait_event(self, event):
        if event is not None:
            self.torch.cuda.current_stream(self.torch_device).wait_event(event)

    def host_wait_event(self, event):
        if event is not None:
            event.synchronize()

    def cuda_kernel_device(self):
        return self.torch_device if self.use_kernels else None  # use_kernels is only ever on for CUDA

    def gram_upload(self, block, half_scale=None):
        t = self.asarray(np.ascontiguousarray(block, dtype=np.float32))
        if half_scale is not None:
            return (t * half_scale).to(self.torch.float16)
        return t.float()

    def gram_product(self, a, b, half_scale=None):
        torch = self.torch
        if half_scale is not None:
            try:  # float32 output straight from the float32 accumulator, where this torch offers it
                out = torch.mm(a, b.T, out_dtype=torch.float32)
            except (RuntimeError, TypeError, NotImplementedError):
                out = (a @ b.T).float()
            out = out / (half_scale * half_scale)
        else:
            out = a @ b.T
        return out.float().cpu().numpy()

    def synchronize(self):
        if self.torch_device.type == "cuda":
            self.torch.cuda.synchronize(self.torch_device)


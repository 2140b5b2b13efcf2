"""The generic loader of the fused CUDA kernels (``camid_gpu/kernels/*.cu``) through CuPy (torch on CUDA).

The launchers live beside the algorithm they fuse, each describing its kernel as a :class:`FusedKernel`
(``mihcak_shrink`` in :mod:`camid_gpu.prnu.mihcak_kernel`, ``mahalanobis_counts`` in
:mod:`camid_gpu.mahalanobis.kernel`); the algorithm holds that object beside its twin and asks it for the
launcher on its device (:meth:`FusedKernel.on`). There is no registry: this module knows no algorithm.

The CUDA C sources are package data of ``camid_gpu.kernels`` (``camid_gpu/kernels/*.cu``), read with
:mod:`importlib.resources`. Each file is compiled by NVRTC through
``cupy.RawModule`` the first time one of its kernels runs on a device, once per process and device
(the cache is guarded by a lock, so concurrent first calls compile once).

Tensors cross from torch to CuPy through DLPack (:func:`to_cupy`): no copy, same memory. Kernels are
launched on torch's *current* stream of the tensors' device, so they are ordered with the torch work
around them without any synchronisation. Outputs are allocated by torch.

One source for what the sources and their launchers share: the compile-time constants
(:data:`KERNEL_DEFINES`, passed as ``-D`` options; the ``.cu`` files define none) and, per kernel, the
launch geometry (a ``launch_plan`` function beside each launcher, giving :class:`Launch` records). The
launchers' drivers take a :class:`Launcher`: :class:`CupyLauncher` here, a host emulation of the same
sources in the tests (``camid_gpu/kernels/host_emulation.h``), which run every kernel on the CPU against its twin.

Self-check: the first time a process uses a fused kernel on a device (:meth:`FusedKernel.on` with
``device``), it runs the kernel and its twin on a small deterministic input (:func:`self_check`, with
the kernel's own check); on a mismatch it warns once (:class:`KernelFallbackWarning`) and the twin is
used. Run manifests record the outcome (:func:`kernels_status`: "verified", "fallback (reason)" or
"not used").

Public API
----------
``FusedKernel(name, launcher, check).on(device=None, *, required=False)``
    The launcher, or None: None when CuPy is not installed (or does not import), when torch sees no
    CUDA device, or when the kernel failed its self-check on ``device``: callers then use the generic
    "twin" written with the backend primitives. With ``required=True`` each of those is an error instead
    (:class:`~camid_gpu.errors.MissingExtraError` for a missing CuPy).
``compile_options()``, ``self_check(kernel, device)``, ``kernels_status(bk, kernels)``, ``kernel_checks()``,
``require_cupy()``, ``cupy_available()``, ``kernel_source(filename)``, ``compiled_function(...)``,
``to_cupy(tensor)``.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.resources
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from camid_gpu._shared.optional import import_optional, torch_cuda_available
from camid_gpu.errors import MissingExtraError

#: the package that holds the .cu sources
KERNEL_PACKAGE = "camid_gpu.kernels"

#: source file and ``extern "C"`` kernels (one per dtype) behind each fused name
KERNEL_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "mihcak_shrink": ("mihcak_shrink.cu", ("mihcak_shrink_f32", "mihcak_shrink_f64")),
    "mahalanobis_counts": (
        "mahalanobis.cu",
        ("mahalanobis_sums_f32", "mahalanobis_sums_f64", "mahalanobis_counts_f32", "mahalanobis_counts_f64"),
    ),
}

#: Compile-time constants of ``camid_gpu/kernels/*.cu``, passed to NVRTC (and to the host emulation the tests
#: build) as ``-D`` options, so that the sources and their launchers cannot disagree: the ``.cu``
#: files only check that they are defined.
KERNEL_DEFINES: dict[str, int] = {
    "MIHCAK_TILE": 16,  # a block shrinks a TILE x TILE output tile
    "MIHCAK_HALO": 4,  # border staged around it: the radius of the largest (9x9) window
    "MAHAL_THREADS": 256,  # threads per block of both Mahalanobis kernels
    "MAHAL_MAX_CAMERAS": 64,  # most cameras the fused Mahalanobis kernel takes
    "MAHAL_PAIRS_PER_THREAD": 16,  # (q, j) camera pairs one thread owns: MAX_CAMERAS^2 / THREADS
}

#: NVRTC options besides the defines. No headers are included by the sources, so no include path.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17",)

#: gridDim.y and gridDim.z limit of every CUDA device
MAX_GRID_YZ = 65535


def compile_options() -> tuple[str, ...]:
    """NVRTC options of every ``camid_gpu/kernels/*.cu``: :data:`COMPILE_OPTIONS` and one ``-DNAME=value`` per
    :data:`KERNEL_DEFINES` entry."""
    return COMPILE_OPTIONS + tuple(f"-D{name}={value}" for name, value in KERNEL_DEFINES.items())

_MODULES: dict[tuple[str, int], Any] = {}
_FUNCTIONS: dict[tuple[str, str, int], Any] = {}
_MODULES_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------
# CuPy, sources, compilation
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _import_cupy() -> Any | None:
    try:
        return importlib.import_module("cupy")
    except Exception:  # noqa: BLE001 - an installed CuPy for another CUDA can fail in many ways
        return None


def cupy_available() -> bool:
    """True when CuPy is installed and imports (never raises)."""
    return _import_cupy() is not None


def require_cupy(feature: str = "the fused CUDA kernels") -> Any:
    """The ``cupy`` module, or :class:`MissingExtraError` naming the ``cuda`` extra."""
    cp = _import_cupy()
    if cp is None:
        raise MissingExtraError("cupy", "cuda", feature)
    return cp


def _torch() -> Any:
    return import_optional("torch", "torch", "the fused CUDA kernels")


def _torch_cuda_available() -> bool:
    return torch_cuda_available()


def kernel_root() -> Any:
    """The folder of the ``.cu`` sources: the package ``camid_gpu.kernels`` (``camid_gpu/kernels/``, installed
    or in a checkout alike)."""
    return importlib.resources.files(KERNEL_PACKAGE)


def kernel_source(filename: str) -> str:
    """The text of ``camid_gpu/kernels/<filename>`` as installed in the package ``camid_gpu.kernels``."""
    return kernel_root().joinpath(filename).read_text(encoding="utf-8")


def kernel_files() -> list[str]:
    """Names of every ``.cu`` file shipped in ``camid_gpu.kernels``, sorted."""
    root = kernel_root()
    return sorted(entry.name for entry in root.iterdir() if entry.name.endswith(".cu"))


def compiled_module(filename: str, device_index: int) -> Any:
    """``cupy.RawModule`` of ``camid_gpu/kernels/<filename>`` for CUDA device ``device_index`` (cached)."""
    key = (filename, int(device_index))
    module = _MODULES.get(key)
    if module is not None:
        return module
    cp = require_cupy()
    with _MODULES_LOCK:
        module = _MODULES.get(key)
        if module is None:
            with cp.cuda.Device(device_index):
                module = cp.RawModule(code=kernel_source(filename), options=compile_options())
                # compile and load now, under the lock and on the right device, not at first launch
                module.compile()
            _MODULES[key] = module
    return module


def compiled_function(filename: str, function: str, device_index: int) -> Any:
    """The ``cupy.RawKernel`` ``function`` of ``camid_gpu/kernels/<filename>`` on device ``device_index`` (cached)."""
    key = (filename, function, int(device_index))
    kernel = _FUNCTIONS.get(key)
    if kernel is None:
        module = compiled_module(filename, device_index)
        cp = require_cupy()
        with _MODULES_LOCK, cp.cuda.Device(device_index):
            kernel = _FUNCTIONS.get(key)
            if kernel is None:
                kernel = module.get_function(function)
                _FUNCTIONS[key] = kernel
    return kernel


def to_cupy(tensor: Any) -> Any:
    """A CuPy view of a CUDA torch tensor through DLPack: no copy, the same device memory."""
    cp = require_cupy()
    return cp.from_dlpack(tensor.detach())


@contextlib.contextmanager
def _torch_stream(device: Any) -> Iterator[None]:
    """Make CuPy launch on torch's current stream of ``device`` (ordered with torch's work)."""
    cp = require_cupy()
    torch = _torch()
    stream = torch.cuda.current_stream(device)
    with cp.cuda.Device(device.index), cp.cuda.ExternalStream(stream.cuda_stream):
        yield


def _suffix(dtype: Any) -> str:
    torch = _torch()
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"the fused kernels take float32 or float64 tensors, got {dtype}")


def _check_cuda(name: str, tensor: Any) -> None:
    torch = _torch()
    if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cuda":
        where = tensor.device if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{name}: the fused kernels take CUDA torch tensors, got {where}")



# ---------------------------------------------------------------------------------------------
# launches and launchers (each kernel's geometry: ``launch_plan`` beside its launcher)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """One kernel launch: ``function`` (the ``extern "C"`` name without its ``_f32``/``_f64``
    suffix), ``grid`` and ``block`` dimensions, dynamic ``shared_mem`` bytes, the ``first`` plane or
    image it covers and their ``count``, and (Mahalanobis pass 2) the pixels per ``tile``."""

    function: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int
    first: int
    count: int
    tile: int = 0


class Launcher(Protocol):
    """Runs one :class:`Launch` of ``camid_gpu/kernels/<filename>``'s ``function`` with ``args``: torch
    tensors (contiguous; passed as pointers), ``np.int32`` and ``np.int64`` scalars, in the
    kernel's parameter order. ``max_grid_yz`` is the device's grid limit."""

    max_grid_yz: int

    def __call__(self, filename: str, function: str, launch: Launch, args: Sequence[Any]) -> None: ...


class CupyLauncher:
    """Launches through CuPy (NVRTC-compiled, cached) on torch's current stream of ``device``."""

    max_grid_yz = MAX_GRID_YZ

    def __init__(self, device: Any):
        self.device = device

    def __call__(self, filename: str, function: str, launch: Launch, args: Sequence[Any]) -> None:
        torch = _torch()
        kernel = compiled_function(filename, function, self.device.index)
        with _torch_stream(self.device):
            native = tuple(to_cupy(a) if isinstance(a, torch.Tensor) else a for a in args)
            kernel(launch.grid, launch.block, native, shared_mem=launch.shared_mem)


# ---------------------------------------------------------------------------------------------
# self-check: the first use per (process, device) compares every kernel with its twin
# ---------------------------------------------------------------------------------------------
class KernelFallbackWarning(RuntimeWarning):
    """A fused kernel disagreed with its twin (or failed) on this device; the twin is used instead."""


@dataclass(frozen=True)
class KernelCheck:
    """Outcome of :func:`self_check` for one fused kernel on one device."""

    name: str
    device: str
    verified: bool
    reason: str = ""

    def __str__(self) -> str:
        return "verified" if self.verified else f"fallback ({self.reason})"


_CHECKS: dict[tuple[str, str], KernelCheck] = {}
_CHECKS_LOCK = threading.Lock()
#: the deterministic self-check inputs are drawn from this seed
SELF_CHECK_SEED = 20240611


def mismatch(got: Any, want: Any, rtol: float) -> float | None:
    """Largest error of ``got`` relative to ``max|want|`` when it exceeds ``rtol`` (or NaN appears)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
    err = float(np.abs(got - want).max(initial=0.0)) / scale
    return err if not err <= rtol else None  # "not <=" also catches NaN


def self_check(kernel: "FusedKernel", device: Any, fused: Callable[..., Any] | None = None) -> KernelCheck:
    """Run the fused ``kernel`` and its twin on a small deterministic input on ``device``, once.

    The first call per (process, kernel name, device) runs ``kernel.check`` (both dtypes; the inputs are
    described beside each launcher) and caches the outcome; later calls return it. On a mismatch beyond
    tolerance, or an exception from the kernel (compilation included), the outcome is a fallback and a
    :class:`KernelFallbackWarning` is issued, once: callers then use the twin. ``fused`` defaults to
    ``kernel.launcher`` (tests plant others).
    """
    torch = _torch()
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    key = (kernel.name, str(dev))
    with _CHECKS_LOCK:
        check = _CHECKS.get(key)
        if check is not None:
            return check
        try:
            problem = kernel.check(fused if fused is not None else kernel.launcher, dev)
        except Exception as exc:  # noqa: BLE001 - any failure of the kernel on this device means: use the twin
            problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
        check = KernelCheck(kernel.name, str(dev), problem is None, problem or "")
        _CHECKS[key] = check
    if not check.verified:
        warnings.warn(KernelFallbackWarning(
            f"the fused CUDA kernel {kernel.name!r} disagrees with its twin on {check.device} ({check.reason}); "
            f"camid uses the twin (same results, slower) and records the fallback in the run manifest"),
            stacklevel=3)
    return check


def kernel_checks() -> dict[str, str]:
    """``{"name@device": "verified" | "fallback (reason)"}`` of every self-check run so far."""
    with _CHECKS_LOCK:
        return {f"{name}@{device}": str(check) for (name, device), check in sorted(_CHECKS.items())}


def kernels_status(bk: Any, kernels: Sequence["FusedKernel"]) -> str:
    """What the run manifest records under ``kernels`` for backend ``bk`` and the product's ``kernels``.

    "not used" when ``bk`` does not launch fused kernels (NumPy, torch on the CPU, ``use_kernels``
    off, no CuPy); otherwise every kernel is self-checked on the backend's device (cached) and the
    result is "verified" or "fallback (name: reason; ...)".
    """
    device = getattr(bk, "torch_device", None)  # use_kernels is only ever on for CUDA devices
    if not getattr(bk, "use_kernels", False) or device is None or not cupy_available():
        return "not used"
    failed = [f"{kernel.name}: {check.reason}" for kernel in sorted(kernels, key=lambda k: k.name)
              if not (check := self_check(kernel, device)).verified]
    return f"fallback ({'; '.join(failed)})" if failed else "verified"


# ---------------------------------------------------------------------------------------------
# a fused kernel, as its launcher module describes it
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FusedKernel:
    """One fused CUDA kernel: ``name`` (its entry in :data:`KERNEL_SOURCES`), ``launcher`` (the CUDA
    implementation, with the twin's contract) and ``check(fused, device)`` (compares a fused implementation
    with the twin on a device: a mismatch description, or None). Each launcher module builds its own
    (:func:`camid_gpu.prnu.mihcak_kernel.fused_kernel`, :func:`camid_gpu.mahalanobis.kernel.fused_kernel`),
    and the algorithm keeps it beside its twin."""

    name: str
    launcher: Callable[..., Any]
    check: Callable[[Callable[..., Any], Any], str | None]

    def on(self, device: Any | None = None, *, required: bool = False) -> Callable[..., Any] | None:
        """The launcher, or None (use the twin).

        None when CuPy is not installed or does not import, or when torch sees no CUDA device. With
        ``device`` (the torch device the kernel will run on), the first call per (process, kernel, device)
        runs :func:`self_check` (cached per device): when the kernel disagrees with its twin there (or fails
        to compile) the result is None too (a :class:`KernelFallbackWarning` was issued once). With
        ``required=True`` each of these is an error instead: :class:`~camid_gpu.errors.MissingExtraError`
        (extra ``cuda``) without CuPy, RuntimeError without a CUDA device or after a failed self-check.
        """
        if not cupy_available():
            if required:
                raise MissingExtraError("cupy", "cuda", f"the fused CUDA kernel {self.name!r}")
            return None
        if not _torch_cuda_available():
            if required:
                raise RuntimeError(f"the fused CUDA kernel {self.name!r} needs a CUDA device, and torch sees none")
            return None
        if device is not None:
            check = self_check(self, device)
            if not check.verified:
                if required:
                    raise RuntimeError(f"the fused CUDA kernel {self.name!r} failed its self-check on "
                                       f"{check.device}: {check.reason}")
                return None
        return self.launcher

"""The generic loader of the fused CUDA kernels (``kernels/*.cu``) through CuPy, for the torch backend on CUDA.

The launchers live beside the algorithm they fuse and register here with :func:`register_fused`:
``mihcak_shrink`` in :mod:`camid_gpu.prnu.mihcak_kernel`, ``mahalanobis_counts`` in
:mod:`camid_gpu.mahalanobis.kernel`. This module knows no algorithm.

The CUDA C sources ship inside the package ``camid_gpu.kernels`` (the repository's ``kernels/``
folder) and are read with :mod:`importlib.resources`. Each file is compiled by NVRTC through
``cupy.RawModule`` the first time one of its kernels runs on a device, once per process and device
(the cache is guarded by a lock, so concurrent first calls compile once).

Tensors cross from torch to CuPy through DLPack (:func:`to_cupy`): no copy, same memory. Kernels are
launched on torch's *current* stream of the tensors' device, so they are ordered with the torch work
around them without any synchronisation. Outputs are allocated by torch.

Public API
----------
``get_fused(name, *, required=False)``
    The fused implementation of ``name`` or None. None when CuPy is not installed (or does not
    import), when torch sees no CUDA device, or for a name without a fused kernel: callers then use
    the generic "twin" written with the backend primitives. With ``required=True`` each of those is
    an error instead (:class:`~camid_gpu.errors.MissingExtraError` for a missing CuPy).
``register_fused(name, launcher)``
    Called by the launcher modules at import.
``require_cupy()``, ``cupy_available()``, ``kernel_source(filename)``, ``compiled_function(...)``,
``to_cupy(tensor)``.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.resources
import pathlib
import threading
from typing import Any, Callable, Iterator

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

#: NVRTC options. No headers are included by the sources, so no include path is needed.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17",)

#: largest y/z grid dimension of a launch
_MAX_GRID_YZ = 65535

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


#: the repository's kernels/ folder, for running from a checkout (PYTHONPATH=.) without installing
CHECKOUT_KERNELS = pathlib.Path(__file__).resolve().parents[2] / "kernels"


def kernel_root() -> Any:
    """The folder of the ``.cu`` sources: the installed package ``camid_gpu.kernels`` or, when it is not
    importable (a checkout on PYTHONPATH, where the package is mapped from ``kernels/`` only on install),
    the repository's ``kernels/`` folder."""
    try:
        return importlib.resources.files(KERNEL_PACKAGE)
    except ModuleNotFoundError:
        if (CHECKOUT_KERNELS / "__init__.py").is_file():
            return CHECKOUT_KERNELS
        raise


def kernel_source(filename: str) -> str:
    """The text of ``kernels/<filename>`` as installed in the package ``camid_gpu.kernels``."""
    return kernel_root().joinpath(filename).read_text(encoding="utf-8")


def kernel_files() -> list[str]:
    """Names of every ``.cu`` file shipped in ``camid_gpu.kernels``, sorted."""
    root = kernel_root()
    return sorted(entry.name for entry in root.iterdir() if entry.name.endswith(".cu"))


def compiled_module(filename: str, device_index: int) -> Any:
    """``cupy.RawModule`` of ``kernels/<filename>`` for CUDA device ``device_index`` (cached)."""
    key = (filename, int(device_index))
    module = _MODULES.get(key)
    if module is not None:
        return module
    cp = require_cupy()
    with _MODULES_LOCK:
        module = _MODULES.get(key)
        if module is None:
            with cp.cuda.Device(device_index):
                module = cp.RawModule(code=kernel_source(filename), options=COMPILE_OPTIONS)
                # compile and load now, under the lock and on the right device, not at first launch
                module.compile()
            _MODULES[key] = module
    return module


def compiled_function(filename: str, function: str, device_index: int) -> Any:
    """The ``cupy.RawKernel`` ``function`` of ``kernels/<filename>`` on device ``device_index`` (cached)."""
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
# registry
# ---------------------------------------------------------------------------------------------
_FUSED: dict[str, Callable[..., Any]] = {}


def register_fused(name: str, launcher: Callable[..., Any]) -> None:
    """Make ``launcher`` the fused implementation of ``name`` (called once by its module at import)."""
    _FUSED[name] = launcher


def get_fused(name: str, *, required: bool = False) -> Callable[..., Any] | None:
    """The fused CUDA implementation of ``name`` ("mihcak_shrink", "mahalanobis_counts") or None.

    None (use the generic twin) when CuPy is not installed or does not import, when torch sees no
    CUDA device, or when ``name`` has no fused kernel. With ``required=True`` these raise instead:
    :class:`~camid_gpu.errors.MissingExtraError` (extra ``cuda``) without CuPy, RuntimeError without
    a CUDA device, KeyError for an unknown name. Compilation happens at the first call of the
    returned function, not here; a compile error then propagates (it is a bug, not a fallback).
    """
    if name not in _FUSED:
        if required:
            raise KeyError(f"no fused kernel named {name!r}; known: {sorted(_FUSED)}")
        return None
    if not cupy_available():
        if required:
            raise MissingExtraError("cupy", "cuda", f"the fused CUDA kernel {name!r}")
        return None
    if not _torch_cuda_available():
        if required:
            raise RuntimeError(f"the fused CUDA kernel {name!r} needs a CUDA device, and torch sees none")
        return None
    return _FUSED[name]

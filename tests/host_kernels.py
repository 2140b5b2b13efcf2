"""Run ``camid_gpu/kernels/*.cu`` on the CPU: host C++ through ``camid_gpu/kernels/host_emulation.h``, ``g++ -fopenmp``.

:func:`build` compiles one ``.cu`` file with the same ``-D`` constants as NVRTC
(``camid_gpu._cuda.loader.compile_options()``) into a shared library with one ``camid_launch_<kernel>``
entry per kernel; libraries are cached by the hash of everything that goes into them.
:class:`HostLauncher` is a ``camid_gpu._cuda.loader.Launcher``: the same drivers that launch through CuPy
on a GPU (``prnu.mihcak_kernel.run_mihcak_shrink``, ``mahalanobis.kernel.run_mahalanobis_counts``, with
their geometry from the ``launch_plan`` beside each) launch these on CPU torch tensors.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from camid_gpu._cuda import loader as cuda

HEADER = "host_emulation.h"
CXX_FLAGS = ("-std=c++17", "-O2", "-fopenmp", "-shared", "-fPIC", "-Wno-unknown-pragmas")
ERRORS = {1: "bad block dimensions", 2: "bad grid dimensions (y/z above 65535?)",
          3: "more than 48 KiB of dynamic shared memory", 4: "OpenMP did not start one thread per CUDA thread"}


def find_compiler() -> tuple[str | None, str]:
    """(compiler, "") for a C++ compiler that builds and runs OpenMP code, or (None, why not)."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return None, "no C++ compiler (g++) found; install g++ (e.g. apt-get install g++) to run the kernels on the CPU"
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.cpp"
        probe.write_text("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            proc = subprocess.run([cxx, "-fopenmp", str(probe), "-o", str(Path(tmp) / "probe")],
                                  capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{cxx} failed to run: {exc}"
        if proc.returncode != 0:
            return None, f"{cxx} cannot build OpenMP code (-fopenmp): {proc.stderr.strip()[:300]}"
    return cxx, ""


def kernel_functions(filename: str) -> list[str]:
    """The ``extern "C"`` kernels of ``filename`` that camid launches."""
    return [fn for source, functions in cuda.KERNEL_SOURCES.values() if source == filename for fn in functions]


def build(cxx: str, filename: str, cache_dir: Path) -> Path:
    """Shared library of ``camid_gpu/kernels/<filename>`` run on the host (cached by content hash)."""
    defines = [option for option in cuda.compile_options() if option.startswith("-D")]
    wrapper = (f'#include "{HEADER}"\n#include "{filename}"\n'
               + "".join(f"CAMID_HOST_ENTRY({fn})\n" for fn in kernel_functions(filename)))
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256("\0".join([version, *CXX_FLAGS, *defines, wrapper, cuda.kernel_source(HEADER),
                                       cuda.kernel_source(filename)]).encode()).hexdigest()[:20]
    target = cache_dir / f"{Path(filename).stem}-{digest}.so"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        for name in (HEADER, filename):  # the installed sources, as NVRTC gets them
            (Path(tmp) / name).write_text(cuda.kernel_source(name))
        (Path(tmp) / "entry.cpp").write_text(wrapper)
        out = Path(tmp) / target.name
        proc = subprocess.run([cxx, *CXX_FLAGS, *defines, "-I", tmp, str(Path(tmp) / "entry.cpp"), "-o", str(out)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed on {filename} run as host code:\n{proc.stderr}")
        os.replace(out, target)  # atomic: concurrent sessions never load a half-written library
    return target


class HostLauncher:
    """A ``camid_gpu._cuda.loader.Launcher`` for the host-compiled kernels (CPU torch tensors)."""

    def __init__(self, libraries: dict[str, ctypes.CDLL], max_grid_yz: int = cuda.MAX_GRID_YZ):
        self.libraries = libraries
        self.max_grid_yz = max_grid_yz
        self.launches: list[cuda.Launch] = []

    def with_grid_limit(self, max_grid_yz: int) -> "HostLauncher":
        """The same kernels with a smaller grid y/z limit (to reach multi-launch plans cheaply)."""
        return HostLauncher(self.libraries, max_grid_yz)

    def __call__(self, filename: str, function: str, launch: cuda.Launch, args: Sequence[Any]) -> None:
        import torch

        entry = getattr(self.libraries[filename], f"camid_launch_{function}")
        holders: list[Any] = []
        for arg in args:
            if isinstance(arg, torch.Tensor):
                assert arg.device.type == "cpu" and arg.is_contiguous(), "kernels take contiguous host tensors here"
                holders.append(ctypes.c_void_p(arg.data_ptr()))
            elif isinstance(arg, np.int32):
                holders.append(ctypes.c_int32(int(arg)))
            elif isinstance(arg, np.int64):
                holders.append(ctypes.c_int64(int(arg)))
            else:
                raise TypeError(f"{function}: kernel argument of type {type(arg).__name__}")
        argv = (ctypes.c_void_p * len(holders))(*(ctypes.addressof(h) for h in holders))
        grid = (ctypes.c_uint * 3)(*launch.grid)
        block = (ctypes.c_uint * 3)(*launch.block)
        self.launches.append(launch)
        rc = entry(grid, block, ctypes.c_ulonglong(launch.shared_mem), argv)
        if rc != 0:
            raise RuntimeError(f"{function} {launch}: {ERRORS.get(rc, rc)}")


def load(cxx: str, cache_dir: Path) -> HostLauncher:
    """A launcher over every ``.cu`` file the package ships, each built (or taken from the cache)."""
    libraries = {}
    for filename in cuda.kernel_files():
        library = ctypes.CDLL(str(build(cxx, filename, cache_dir)))
        for fn in kernel_functions(filename):
            entry = getattr(library, f"camid_launch_{fn}")
            entry.restype = ctypes.c_int
            entry.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_void_p]
        libraries[filename] = library
    return HostLauncher(libraries)

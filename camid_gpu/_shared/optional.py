"""Optional dependencies (torch, pytorch-wavelets, Dask, CuPy), imported lazily with an error naming the extra.

pytorch-wavelets 1.3.0 imports ``pkg_resources`` at import time; :func:`import_pytorch_wavelets` supplies
a one-function stand-in only while that import runs.
"""
from __future__ import annotations

import importlib
import importlib.resources
import sys
import threading
import types

from camid_gpu.errors import MissingExtraError


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


def torch_cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (never raises)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())

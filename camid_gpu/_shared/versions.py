"""Versions of the libraries a result depends on, from the installed distributions' metadata.

A module's ``__version__`` attribute can lag the installed package (PyWavelets 1.9.0 says "1.8.0"), so a
record of which software made a result reads the distribution's metadata (importlib.metadata) instead; the
attribute is used only where no distribution is installed (a source checkout on the path).
"""
from __future__ import annotations

import sys
from importlib import metadata

#: import name -> distribution name, where they differ
DISTRIBUTIONS = {"pywt": "PyWavelets", "PIL": "Pillow", "pytorch_wavelets": "pytorch-wavelets",
                 "cupy": "cupy-cuda12x", "numpy": "numpy", "scipy": "scipy", "torch": "torch", "dask": "dask",
                 "tifffile": "tifffile", "matplotlib": "matplotlib", "rich": "rich", "torchvision": "torchvision"}
#: other distributions that provide the same import name (CuPy is published per CUDA version)
ALTERNATIVES = {"cupy": ("cupy-cuda13x", "cupy-cuda11x", "cupy")}


def installed_version(module: str) -> str | None:
    """The installed distribution's version of the package imported as ``module``; else its loaded module's
    ``__version__``; else None (not installed)."""
    for dist in (DISTRIBUTIONS.get(module, module), *ALTERNATIVES.get(module, ())):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    loaded = sys.modules.get(module)
    return getattr(loaded, "__version__", None) if loaded is not None else None

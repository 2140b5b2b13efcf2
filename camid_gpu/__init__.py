"""camid_gpu: camera identification from sensor PRNU, on NumPy or torch (CPU/CUDA).

Public API (arrays are batch-first ``(N, H, W)`` float32 on the 0..255 scale), imported lazily so that
``import camid_gpu`` stays cheap and never imports torch::

    from camid_gpu import extract_residual, read_image, estimate_fingerprint, pce_scores, get_backend

The package is layered by pipeline stage, each importing only the ones before it: ``config``/``errors``/
``_shared``/``_cuda``/``backend`` -> ``io`` -> ``prnu`` -> ``mahalanobis`` -> ``store`` -> ``pipeline`` ->
``provenance``/``evaluate`` -> ``engine`` -> ``report``/``datasets`` -> ``cli`` (see the README's Layout).
"""
from __future__ import annotations

import importlib
from typing import Any

from camid_gpu._version import __version__

#: public name -> the module that defines it
_EXPORTS = {
    "extract_residual": "camid_gpu.prnu.residual",
    "estimate_fingerprint": "camid_gpu.prnu.fingerprint",
    "pce_scores": "camid_gpu.prnu.pce",
    "read_image": "camid_gpu.io.decode",
    "list_images": "camid_gpu.io.listing",
    "get_backend": "camid_gpu.backend",
    "Params": "camid_gpu.config",
    "RunConfig": "camid_gpu.config",
    "CamidError": "camid_gpu.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'camid_gpu' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

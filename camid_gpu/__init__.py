"""camid_gpu: camera identification from sensor PRNU, on NumPy or torch (CPU/CUDA).

Public API (arrays are batch-first ``(N, H, W)`` float32 on the 0..255 scale)::

    from camid_gpu import extract_residual, read_image
"""
from camid_gpu._version import __version__

__all__ = ["__version__"]

"""Fixed constants of method 2 (its defaults, the paper's sigma, clipping and references, are in :mod:`camid_gpu.config`).

The method and its notation: see :mod:`camid_gpu.mahalanobis`.
"""
from __future__ import annotations

from camid_gpu._cuda.loader import KERNEL_DEFINES

#: half-width of the natural-image selection interval, in fingerprint-I0 standard deviations
SELECTION_SIGMAS = 2.0
MODES = ("flat", "aligned", "paper")
SCAN_ORDERS = ("C", "F")
#: a covariance is usable when 1 - r^2 exceeds this (r: correlation of the two components)
DETERMINANT_RTOL = 1e-12
#: most cameras the fused kernel handles; more fall back to the generic twin
FUSED_MAX_CAMERAS = KERNEL_DEFINES["MAHAL_MAX_CAMERAS"]

"""Defaults and limits of method 2 (the paper's values come from :mod:`camid_gpu.config`).

The method and its notation: see :mod:`camid_gpu.mahalanobis`.
"""
from __future__ import annotations

from camid_gpu import config
from camid_gpu._cuda.loader import KERNEL_DEFINES

#: noise std of the authors' NoiseExtractFromImage(I, 2), 0..255 scale
DEFAULT_SIGMA = config.SIGMA_MAHALANOBIS
#: centre clipping (rows, columns) of the reference flats in the paper
DEFAULT_CLIP = config.CLIP
#: reference flat images per camera in the paper
DEFAULT_REFERENCES = config.REFERENCES
#: half-width of the natural-image selection interval, in fingerprint-I0 standard deviations
SELECTION_SIGMAS = 2.0
MODES = ("flat", "aligned", "paper")
NATURAL_MODES = config.NATURAL_MODES
SCAN_ORDERS = ("C", "F")
#: generic twin: disputed images per chunk are chosen so that chunk x C x P stays below this
DEFAULT_CHUNK_ELEMENTS = 1 << 22
#: a covariance is usable when 1 - r^2 exceeds this (r: correlation of the two components)
DETERMINANT_RTOL = 1e-12
#: most cameras the fused kernel handles; more fall back to the generic twin
FUSED_MAX_CAMERAS = KERNEL_DEFINES["MAHAL_MAX_CAMERAS"]

"""The single rule that turns a covariance into the coefficients of the squared distances (and says whether it
is usable): shared by the generic twin (:mod:`.statistics`) and the fused kernel's launcher (:mod:`.kernel`).

The method and its notation: see :mod:`camid_gpu.mahalanobis`.
"""
from __future__ import annotations

import numpy as np

from camid_gpu.mahalanobis.constants import DETERMINANT_RTOL


def quadratic_coefficients(n: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Per (d, j) coefficients of the squared distances, from covariances; the single validity rule.

    Parameters
    ----------
    n : (..., ) pixels behind each covariance.
    cov : (..., 2, 2) float64 unbiased covariances of ``dif = disputed - fingerprint``.

    Returns
    -------
    (..., 6) float64: ``valid, inv00, inv01, inv11, 1/var_i0, 1/var_prnu`` where
    ``MD^2 = inv00 dx^2 + 2 inv01 dx dy + inv11 dy^2`` and the one-component squared distances are
    ``dx^2 / var_i0`` and ``dy^2 / var_prnu``. Valid means ``n >= 3``, finite, both variances > 0
    and ``det > DETERMINANT_RTOL * var_i0 * var_prnu``; invalid rows are all zeros (the distances
    are then +inf, see the module docstring). Used by the generic twin and the fused kernel alike.
    """
    n = np.asarray(n)
    cov = np.asarray(cov, dtype=np.float64)
    vx, vy, cxy = cov[..., 0, 0], cov[..., 1, 1], cov[..., 0, 1]
    with np.errstate(all="ignore"):
        det = vx * vy - cxy * cxy
        valid = ((n >= 3) & np.isfinite(vx) & np.isfinite(vy) & np.isfinite(cxy) & (vx > 0) & (vy > 0)
                 & (det > DETERMINANT_RTOL * vx * vy))
        det_s = np.where(valid, det, 1.0)
        vx_s = np.where(valid, vx, 1.0)
        vy_s = np.where(valid, vy, 1.0)
        coef = np.stack([np.ones_like(det_s), vy_s / det_s, -np.where(valid, cxy, 0.0) / det_s, vx_s / det_s,
                         1.0 / vx_s, 1.0 / vy_s], -1)
    coef[~valid] = 0.0
    return coef

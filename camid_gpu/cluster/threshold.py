"""The pair threshold from a false-alarm probability, and the null distribution actually observed.

Null model: the residuals of two images from different cameras are independent and nearly white, so
their NCC over ``n`` pixels is close to ``N(0, 1/n)``: ``z = NCC * sqrt(n)`` is standard normal.
For ``tests`` comparisons in the whole set (image pairs times the rotations tried for each pair) and a
false-alarm probability ``pfa`` for the whole set (the probability of at least one false link), each
comparison gets Sidak's level ``alpha = 1 - (1 - pfa)^(1/tests)``, the NCC threshold is
``z_alpha / sqrt(n)`` with ``z_alpha = Q^-1(alpha)``, and the zero-shift PCE that must confirm the link
is ``z_alpha^2`` (the PCE is the squared z-score against the correlation energy measured at all other
shifts, so it does not rely on the ``1/n`` variance: it guards against residuals that are not white).

The ``1/n`` model assumes white residuals. Residuals of natural images are not quite white (edges leak
into them), and the observed spread of the off-diagonal NCCs is then wider (about 1.5 times on the
synthetic natural JPEGs of the tests). So the NCC threshold uses the larger of ``1/sqrt(n)`` and the
spread actually observed, once a group has at least :data:`MIN_NULL_PAIRS` pairs. The observed spread is
the root mean square of the negative pair NCCs: the null is symmetric about 0, and same-camera pairs
(positive) cannot inflate it, however many there are.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import special

#: bins of the null histogram kept for the report
NULL_BINS = 80
#: pairs needed before the observed spread is trusted over the 1/n model
MIN_NULL_PAIRS = 30


@dataclass(frozen=True)
class PairThreshold:
    """Thresholds of one geometry group (dimensionless NCC; PCE)."""

    pfa: float
    tests: int
    pixels: int
    alpha: float
    z: float
    ncc: float
    pce: float
    null_std: float
    null_source: str  # "model" (1/sqrt(n)) or "observed" (robust spread of the pairs)

    def to_dict(self) -> dict:
        return asdict(self)


def comparison_level(pfa: float, tests: int) -> float:
    """Sidak's per-comparison level ``1 - (1 - pfa)^(1/tests)`` (accurate for tiny values)."""
    if not 0.0 < pfa < 1.0:
        raise ValueError(f"pfa must lie in (0, 1), got {pfa!r}")
    return -math.expm1(math.log1p(-pfa) / max(int(tests), 1))


def pair_threshold(pfa: float, tests: int, pixels: int, observed_std: float | None = None) -> PairThreshold:
    """Thresholds for ``tests`` comparisons of residuals of ``pixels`` pixels each.

    ``observed_std``: the robust spread of the group's pair NCCs (None: use the model ``1/sqrt(n)``);
    the larger of the two sets the NCC threshold.
    """
    if pixels < 1:
        raise ValueError(f"pixels must be >= 1, got {pixels}")
    alpha = comparison_level(pfa, tests)
    z = float(-special.ndtri(alpha))  # upper tail: Q(z) = alpha
    model = 1.0 / math.sqrt(pixels)
    observed = observed_std is not None and observed_std > model
    spread = float(observed_std) if observed else model
    return PairThreshold(pfa=float(pfa), tests=int(tests), pixels=int(pixels), alpha=alpha, z=z, ncc=z * spread,
                         pce=z * z, null_std=spread, null_source="observed" if observed else "model")


def robust_spread(values: np.ndarray) -> float | None:
    """Null spread from the negative half: ``sqrt(mean(v^2 | v < 0))``; None with fewer than MIN_NULL_PAIRS."""
    v = np.asarray(values, dtype=np.float64).ravel()
    negative = v[v < 0]
    if v.size < MIN_NULL_PAIRS or negative.size < MIN_NULL_PAIRS // 3:
        return None
    return float(np.sqrt(np.mean(negative * negative)))


def null_summary(values: np.ndarray, pixels: int, threshold: float) -> dict:
    """What the off-diagonal NCCs of a group look like, against the ``N(0, 1/n)`` model.

    ``values``: the NCC of every image pair (same-camera pairs included: the robust spread, from the
    median absolute deviation, is barely moved by them). Returns the theoretical and observed spreads,
    their ratio, the count above the threshold, and a histogram for the report.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    theory = 1.0 / math.sqrt(pixels)
    out = {"pairs": int(v.size), "theory_std": theory, "threshold": float(threshold)}
    if v.size == 0:
        return dict(out, observed_std=None, robust_std=None, robust_ratio=None, above_threshold=0,
                    histogram=None)
    robust = robust_spread(v)
    lo = min(float(v.min()), -5 * theory)
    hi = max(min(float(v.max()), 12 * theory), threshold * 1.2)
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=NULL_BINS, range=(lo, hi))
    return dict(out, observed_std=float(v.std()), robust_std=robust,
                robust_ratio=None if robust is None else robust / theory,
                mean=float(v.mean()), above_threshold=int((v > threshold).sum()),
                histogram={"counts": counts.tolist(), "edges": [float(e) for e in edges]})

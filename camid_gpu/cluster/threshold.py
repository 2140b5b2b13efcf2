"""The thresholds from a false-alarm probability, and the null distribution actually observed.

Null model: the residuals of two images from different cameras are independent and nearly white, so
their NCC over ``n`` pixels is close to ``N(0, 1/n)``: ``z = NCC * sqrt(n)`` is standard normal.
For ``tests`` comparisons and a false-alarm probability ``p`` for all of them (the probability of at least
one false link), each comparison gets Sidak's level ``alpha = 1 - (1 - p)^(1/tests)``, the NCC threshold is
``z_alpha / sqrt(n)`` with ``z_alpha = Q^-1(alpha)``, and the zero-shift PCE that must confirm the link
is ``z_alpha^2`` (the PCE is the squared z-score against the correlation energy measured at all other
shifts, so it does not rely on the ``1/n`` variance: it guards against residuals that are not white).

Two stages compare, and ``--pfa`` is for the whole run, both together (:func:`split_pfa`):

* the pair stage: every image pair of every group, times the rotations tried for each pair (``tests``
  counted exactly before any product is made), at ``p = pfa_pairs = 1 - (1 - pfa)^f``;
* the refinement (cluster fingerprint against cluster fingerprint, and against unclustered images, over up to
  ``max_rounds`` rounds), at ``p = pfa_refine = 1 - (1 - pfa)^(1 - f)``, over an *upper bound* of the
  comparisons it can make, fixed from the pair stage's outcome before any refinement comparison is made
  (:func:`camid_gpu.cluster.linkage.refine_comparisons`), so that no refinement result can move it.

``f`` is :data:`camid_gpu.config.CLUSTER_PFA_PAIRS_SHARE`. With ``T_1, T_2`` the two counts, every comparison
of the run is at its stage's Sidak level, and for independent comparisons the probability of any false link is
``1 - (1 - alpha_1)^T_1 (1 - alpha_2)^T_2 = 1 - (1 - pfa_pairs)(1 - pfa_refine) = pfa`` (at most ``pfa``, since the
refinement makes at most ``T_2``). Without independence, Bonferroni's union bound gives at most
``T_1 alpha_1 + T_2 alpha_2 <= -ln(1 - pfa) = pfa + pfa^2/2 + ...`` (Sidak's level is below ``-ln(1 - p)/T``).

The ``1/n`` model assumes white residuals. Residuals of natural images are not quite white (edges leak
into them), and the observed spread of the off-diagonal NCCs is then wider (about 1.5 times on the
synthetic natural JPEGs of the tests). So the NCC threshold uses the larger of ``1/sqrt(n)`` and the
spread actually observed, once a group has at least :data:`MIN_NULL_PAIRS` pairs. The observed spread is
the root mean square of the negative pair NCCs: the null is symmetric about 0, and same-camera pairs
(positive) cannot inflate it, however many there are. The refinement uses the same spread (its
comparisons are of the same region; a fingerprint averages scene leakage out, so its null is no wider).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from camid_gpu.config import CLUSTER_PFA_PAIRS_SHARE

#: bins of the null histogram kept for the report
NULL_BINS = 80
#: pairs needed before the observed spread is trusted over the 1/n model
MIN_NULL_PAIRS = 30


#: the two stages that compare, in order
STAGES = ("pairs", "refine")


@dataclass(frozen=True)
class PairThreshold:
    """Thresholds of one stage in one geometry group (dimensionless NCC; PCE).

    ``pfa``: the whole run's false-alarm probability (``--pfa``); ``share``: the stage's share of it and
    ``stage_pfa = 1 - (1 - pfa)^share`` what the stage spends; ``tests``: the comparisons that share is
    spread over (exact for the pairs, an upper bound for the refinement); ``alpha`` the level of each.
    """

    pfa: float
    tests: int
    pixels: int
    alpha: float
    z: float
    ncc: float
    pce: float
    null_std: float
    null_source: str  # "model" (1/sqrt(n)) or "observed" (robust spread of the pairs)
    stage: str = "pairs"
    share: float = 1.0
    stage_pfa: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def stage_pfa(pfa: float, share: float) -> float:
    """The false-alarm probability a stage with ``share`` of the run's ``pfa`` spends: ``1 - (1 - pfa)^share``.

    Shares of the expected number of false links ``-ln(1 - pfa)``: stages whose shares add to 1 compose
    (Sidak) to exactly ``pfa``. ``share`` 1 gives ``pfa`` itself.
    """
    if not 0.0 < pfa < 1.0:
        raise ValueError(f"pfa must lie in (0, 1), got {pfa!r}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must lie in (0, 1], got {share!r}")
    return float(pfa) if share == 1.0 else -math.expm1(share * math.log1p(-pfa))


def split_pfa(pfa: float, pairs_share: float = CLUSTER_PFA_PAIRS_SHARE) -> dict[str, tuple[float, float]]:
    """``{stage: (share, stage pfa)}`` for the pair stage and the refinement; the shares add to 1 and
    ``1 - (1 - pfa_pairs)(1 - pfa_refine) = pfa``."""
    if not 0.0 < pairs_share < 1.0:
        raise ValueError(f"the pair stage's share must lie in (0, 1), got {pairs_share!r}")
    shares = {"pairs": float(pairs_share), "refine": 1.0 - float(pairs_share)}
    return {k: (f, stage_pfa(pfa, f)) for k, f in shares.items()}


def comparison_level(pfa: float, tests: int) -> float:
    """Sidak's per-comparison level ``1 - (1 - pfa)^(1/tests)`` (accurate for tiny values)."""
    if not 0.0 < pfa < 1.0:
        raise ValueError(f"pfa must lie in (0, 1), got {pfa!r}")
    return -math.expm1(math.log1p(-pfa) / max(int(tests), 1))


def pair_threshold(pfa: float, tests: int, pixels: int, observed_std: float | None = None, *,
                   share: float = 1.0, stage: str = "pairs") -> PairThreshold:
    """Thresholds for ``tests`` comparisons of residuals of ``pixels`` pixels each.

    ``observed_std``: the robust spread of the group's pair NCCs (None: use the model ``1/sqrt(n)``);
    the larger of the two sets the NCC threshold. ``share``: the part of the run's ``pfa`` this stage
    spends (:func:`stage_pfa`; 1: all of it), over its ``tests`` comparisons.
    """
    from scipy import special  # on first use: scipy.special costs ~0.3 s of every start-up

    if pixels < 1:
        raise ValueError(f"pixels must be >= 1, got {pixels}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    spent = stage_pfa(pfa, share)
    alpha = comparison_level(spent, tests)
    z = float(-special.ndtri(alpha))  # upper tail: Q(z) = alpha
    model = 1.0 / math.sqrt(pixels)
    observed = observed_std is not None and observed_std > model
    spread = float(observed_std) if observed else model
    return PairThreshold(pfa=float(pfa), tests=int(tests), pixels=int(pixels), alpha=alpha, z=z, ncc=z * spread,
                         pce=z * z, null_std=spread, null_source="observed" if observed else "model",
                         stage=stage, share=float(share), stage_pfa=spent)


def stage_threshold(stage: str, pfa: float, tests: int, pixels: int, observed_std: float | None = None,
                    pairs_share: float = CLUSTER_PFA_PAIRS_SHARE) -> PairThreshold:
    """One stage's thresholds (``stage`` in :data:`STAGES`): its share of the run's ``pfa``
    (:func:`split_pfa`) over its ``tests`` comparisons in the whole run (at least 1)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    share = split_pfa(pfa, pairs_share)[stage][0]
    return pair_threshold(pfa, max(int(tests), 1), pixels, observed_std, share=share, stage=stage)


def stage_thresholds(pfa: float, pair_tests: int, refine_tests: int, pixels: int,
                     observed_std: float | None = None,
                     pairs_share: float = CLUSTER_PFA_PAIRS_SHARE) -> dict[str, PairThreshold]:
    """Both stages' thresholds of one group: ``pair_tests`` image comparisons in the whole run (exact) and
    ``refine_tests`` refinement comparisons in the whole run (an upper bound, fixed before refining)."""
    return {stage: stage_threshold(stage, pfa, tests, pixels, observed_std, pairs_share)
            for stage, tests in (("pairs", pair_tests), ("refine", refine_tests))}


def robust_spread(values: np.ndarray) -> float | None:
    """Null spread from the negative half: ``sqrt(mean(v^2 | v < 0))``; None with fewer than MIN_NULL_PAIRS."""
    v = np.asarray(values, dtype=np.float64).ravel()
    negative = v[v < 0]
    if v.size < MIN_NULL_PAIRS or negative.size < MIN_NULL_PAIRS // 3:
        return None
    return float(np.sqrt(np.mean(negative * negative)))


def null_summary(values: np.ndarray, pixels: int, threshold: float) -> dict:
    """What the off-diagonal NCCs of a group look like, against the ``N(0, 1/n)`` model.

    ``values``: the NCC of every image pair (same-camera pairs included: the robust spread, the root mean
    square of the negative NCCs (:func:`robust_spread`), is barely moved by them: they are positive, all but
    the weakest). Returns the theoretical and observed spreads,
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

"""The PCE decision: where an image is attributed to a camera, or to none.

The rule (Goljan, Fridrich & Filler 2009; the field's threshold 60, ``Params.pce_threshold``): a camera
matches when its PCE is *strictly* above the threshold; the decision is the matching camera with the
largest PCE, else no camera. A non-finite PCE (NaN, infinite, or None as written in a record) is never a
match and never ``best`` ahead of a finite one. Every record builder (identify, the scale/crop search,
the selftest, the evaluation's false-alarm and miss rates, the report's colours) takes the decision from
here.

A camera tried at several rotations (or scale/crop positions counted separately) has the false-alarm
probability of the union of the tries, bounded by :func:`union_bound` (Bonferroni).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Generic, Hashable, Mapping, TypeVar

import numpy as np

from camid_gpu.config import is_finite_number

Key = TypeVar("Key", bound=Hashable)


def _value(pce: Any) -> float:
    """A PCE as a float for ordering: anything but a finite number (None, NaN, infinite) counts as minus
    infinity."""
    return float(pce) if is_finite_number(pce) else -math.inf


def exceeds(pce: Any, threshold: float) -> Any:
    """Whether ``pce`` (a number, None, or an array) is a match: finite and strictly above ``threshold``.

    Arrays give a boolean array of the same shape (NaN and infinities False)."""
    if isinstance(pce, np.ndarray):
        return np.isfinite(pce) & (pce > threshold)
    return _value(pce) > threshold


@dataclass(frozen=True)
class Decision(Generic[Key]):
    """The PCE decision over some cameras (keys in the order given).

    best : the camera with the largest PCE (first given among equals; a non-finite PCE ranks last), or
        None when there is no camera.
    above : the matches (:func:`exceeds`), in decreasing PCE.
    decision : the first of ``above``, or None (no camera took the image).
    """

    best: Key | None
    above: list[Key]

    @property
    def decision(self) -> Key | None:
        return self.above[0] if self.above else None


def decide(pces: Mapping[Key, Any], threshold: float) -> Decision[Key]:
    """The decision over ``pces`` (camera -> PCE; None or non-finite for a score that is not usable)."""
    cameras = list(pces)
    order = sorted(cameras, key=lambda c: -_value(pces[c]))  # stable: equal PCEs keep the given order
    return Decision(best=order[0] if order else None,
                    above=[c for c in order if exceeds(pces[c], threshold)])


def union_bound(log10_p_fa: Any, tries: int) -> Any:
    """log10 of the false-alarm probability of ``tries`` tries, each of one-try ``log10_p_fa``: at most
    ``tries`` times the one-try probability, and at most 1. One try, None or a non-finite value: unchanged."""
    if tries <= 1 or log10_p_fa is None or not math.isfinite(log10_p_fa):
        return log10_p_fa
    return min(0.0, float(log10_p_fa) + math.log10(tries))


__all__ = ["Decision", "decide", "exceeds", "union_bound"]

"""The scale grid of the scale and crop search (:mod:`camid_gpu.prnu.search`): the grid, the size of a
resized frame, the crop offsets a frame leaves, the coarse-to-fine refinement around a best scale, and the
check of a caller's grid."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from camid_gpu.config import is_finite_number


def scale_grid(lo: float = 0.5, hi: float = 1.0, step: float = 0.01) -> np.ndarray:
    """Scales ``lo, lo + step, ...`` up to and including ``hi`` (ascending float64).

    Needs ``0 < lo <= hi <= 1`` and ``step > 0``; ``hi`` is included even when ``hi - lo`` is not a
    multiple of ``step``. Values are rounded to 10 decimals (0.7, not 0.7000000000000001).
    """
    for name, value in (("lo", lo), ("hi", hi), ("step", step)):
        if not is_finite_number(value):
            raise ValueError(f"scale_grid: {name} must be a finite number, got {value!r}")
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale_grid: need 0 < lo <= hi <= 1, got lo={lo!r}, hi={hi!r}")
    if not step > 0:
        raise ValueError(f"scale_grid: step must be positive, got {step!r}")
    count = int(math.floor((hi - lo) / step + 1e-9))
    if count > 100_000:
        raise ValueError(f"scale_grid: step {step!r} gives {count + 1} scales between {lo} and {hi}; too many")
    grid = np.round(lo + step * np.arange(count + 1), 10)
    if grid[-1] < hi - 1e-9:
        grid = np.append(grid, hi)
    return grid


def scaled_size(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """``(round(scale H), round(scale W))`` of a ``(H, W)`` frame, halves rounded up, at least 1."""
    return (max(1, int(math.floor(scale * shape[0] + 0.5))), max(1, int(math.floor(scale * shape[1] + 0.5))))


def crop_positions(size: tuple[int, int], image_shape: tuple[int, int]) -> int:
    """Crop offsets at which an ``image_shape`` image fits inside a ``size`` frame (0 if it does not)."""
    if size[0] < image_shape[0] or size[1] < image_shape[1]:
        return 0
    return (size[0] - image_shape[0] + 1) * (size[1] - image_shape[1] + 1)


def refinement_scales(grid: np.ndarray, best: float, step: float) -> list[float]:
    """Scales ``best +- i step`` strictly between ``best``'s neighbours on ``grid``, within (0, 1].

    At an end of the grid the interval is mirrored (as wide beyond ``best`` as the gap on its
    other side).
    """
    below = [float(s) for s in grid if s < best]
    above = [float(s) for s in grid if s > best]
    if not below and not above:
        return []
    gap_low = best - max(below) if below else min(above) - best
    gap_high = min(above) - best if above else gap_low
    out = []
    for direction, gap in ((-1, gap_low), (1, gap_high)):
        i = 1
        while i * step < gap - 1e-9 and i <= 100_000:
            s = round(best + direction * i * step, 10)
            if 0 < s <= 1:
                out.append(s)
            i += 1
    return out


def check_scales(scales: Any) -> np.ndarray:
    """A caller's scales as a float64 grid, descending (1, no resize, first); ValueError naming the problem."""
    try:
        arr = np.asarray(scales, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"scales must be a 1-D sequence of numbers in (0, 1], got {scales!r}") from None
    if arr.ndim != 1:
        raise ValueError(f"scales must be a 1-D sequence of numbers in (0, 1], got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("scales is empty: give at least one scale in (0, 1] (e.g. scale_grid())")
    bad = arr[~(np.isfinite(arr) & (arr > 0) & (arr <= 1))]
    if bad.size:
        raise ValueError(f"scales must lie in (0, 1] (downscaling only); got {bad[:5].tolist()}")
    return np.unique(arr)[::-1]  # descending: 1 (no resize) first


__all__ = ["scale_grid", "scaled_size", "crop_positions", "refinement_scales", "check_scales"]

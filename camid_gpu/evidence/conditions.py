"""The conditions of a questioned image that a calibration is valid for, read from its record and its file.

A calibration is fitted on images of some sizes, JPEG qualities and kinds, scored with some PCE geometry
(``match``: full-frame, clip or crop). An image outside them still gets its LR, flagged as outside with the
reasons (said, not hidden): the LR's validity there is not established.

The JPEG quality is estimated from the file's luminance quantisation table (the IJG quality whose scaled
standard table is nearest); the file is opened read-only and only its header is parsed.
"""
from __future__ import annotations

from typing import Any, Optional, TypedDict

import numpy as np

from camid_gpu._shared.files import open_regular

#: the IJG (libjpeg) standard luminance quantisation table, in natural (row-major) order
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMINANCE * scale + 50) // 100, 1, 255)


_IJG_TABLES = np.stack([_ijg_table(q) for q in range(1, 101)])


def quality_from_table(table: Any) -> int:
    """The IJG quality (1..100) whose luminance table is nearest (sum of absolute differences) to ``table``."""
    values = np.asarray(list(table), dtype=np.int64)
    if values.size != 64:
        raise ValueError(f"a quantisation table has 64 entries, got {values.size}")
    # Pillow gives the tables in natural order (zigzag undone) like _IJG_LUMINANCE; compare sorted too, so a
    # table in zigzag order is still matched to its quality
    err = np.minimum(np.abs(_IJG_TABLES - values).sum(axis=1), np.abs(np.sort(_IJG_TABLES, axis=1)
                                                                      - np.sort(values)).sum(axis=1))
    return int(np.argmin(err)) + 1


def jpeg_quality(path: str) -> Optional[int]:
    """The estimated JPEG quality of the file at ``path``; None when it is not a JPEG or cannot be read."""
    try:
        from PIL import Image

        with open_regular(path) as handle, Image.open(handle) as image:
            tables = getattr(image, "quantization", None)
            if image.format != "JPEG" or not tables:
                return None
            return quality_from_table(tables[min(tables)])
    except (OSError, ValueError, SyntaxError):
        return None


class Conditions(TypedDict):
    kind: str
    size: list[int]              # [short side, long side] (the orientation does not matter to the score)
    format: str
    jpeg_quality: Optional[int]  # None: not a JPEG, or not readable now


def conditions_of(record: dict[str, Any]) -> Conditions:
    """The conditions of the image of a (successful) result record; its file is read for the JPEG quality."""
    size = sorted(int(v) for v in record.get("size") or [0, 0])
    path = record.get("realpath") or record.get("path") or ""
    return {"kind": str(record.get("kind")), "size": size, "format": str(record.get("format")),
            "jpeg_quality": jpeg_quality(path) if record.get("format") == "JPEG" else None}


def ranges_of(conditions: list[Conditions], matches: set[str]) -> dict[str, Any]:
    """What a calibration was fitted on: the range of each condition over its images."""
    shorts = [c["size"][0] for c in conditions]
    longs = [c["size"][1] for c in conditions]
    qualities = [c["jpeg_quality"] for c in conditions if c["jpeg_quality"] is not None]
    return {"short_side": [min(shorts), max(shorts)], "long_side": [min(longs), max(longs)],
            "formats": sorted({c["format"] for c in conditions}),
            "jpeg_quality": [min(qualities), max(qualities)] if qualities else None,
            "jpeg_quality_unknown": sum(1 for c in conditions if c["format"] == "JPEG" and c["jpeg_quality"] is None),
            "match": sorted(matches)}


def outside_reasons(cond: Conditions, fitted: dict[str, Any], match: Optional[str]) -> list[str]:
    """Why an image's conditions fall outside those a calibration kind was fitted on (empty: inside)."""
    reasons = []
    for side, key in ((cond["size"][0], "short_side"), (cond["size"][1], "long_side")):
        lo, hi = fitted[key]
        if not lo <= side <= hi:
            reasons.append(f"{key.replace('_', ' ')} {side} px outside the calibrated {lo}..{hi} px")
    if cond["format"] not in fitted["formats"]:
        reasons.append(f"format {cond['format']} not among the calibrated {', '.join(fitted['formats'])}")
    elif cond["format"] == "JPEG":
        q, rng = cond["jpeg_quality"], fitted.get("jpeg_quality")
        if q is None:
            reasons.append("JPEG quality could not be read from the file now")
        elif rng is None:
            reasons.append(f"JPEG quality {q}: the calibration records no JPEG quality")
        elif not rng[0] <= q <= rng[1]:
            reasons.append(f"JPEG quality {q} outside the calibrated {rng[0]}..{rng[1]}")
    if match is not None and match not in fitted["match"]:
        reasons.append(f"PCE geometry {match!r} not among the calibrated {', '.join(fitted['match'])}")
    return reasons

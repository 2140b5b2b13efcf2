"""The conditions of a questioned image that a calibration is valid for, read from its record and its file.

A calibration is fitted on images of some sizes, JPEG qualities and kinds, scored under some search conditions
(:mod:`.score`: geometry, clip size, positions and rotations searched). A pair outside them gets no calibrated
LR and no verbal equivalent: the reasons are said instead (``--lr-outside-calibration`` shows the number,
marked), because the LR's validity there is not established.

The JPEG quality is estimated from the file's luminance quantisation table (the IJG quality whose scaled
standard table is nearest); the file is opened read-only and only its header is parsed.
"""
from __future__ import annotations

from typing import Any, Optional, TypedDict

import numpy as np

from camid_gpu._shared.files import open_regular
from camid_gpu.evidence.score import PairCondition

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


def ranges_of(conditions: list[Conditions], pairs: list[PairCondition],
              matched_sizes: Optional[list[list[int]]] = None) -> dict[str, Any]:
    """What a calibration model was fitted on: the range of each condition over its images and pairs.
    ``matched_sizes``: the sizes ([short, long]) of the images a simulated calibration stands for (its images
    were scaled down from them, as its assumptions say)."""
    shorts = [c["size"][0] for c in conditions]
    longs = [c["size"][1] for c in conditions]
    qualities = [c["jpeg_quality"] for c in conditions if c["jpeg_quality"] is not None]
    positions = [p["positions"] for p in pairs if p["positions"] is not None]
    out = {"short_side": [min(shorts), max(shorts)], "long_side": [min(longs), max(longs)],
           "formats": sorted({c["format"] for c in conditions}),
           "jpeg_quality": [min(qualities), max(qualities)] if qualities else None,
           "jpeg_quality_unknown": sum(1 for c in conditions if c["format"] == "JPEG" and c["jpeg_quality"] is None),
           "geometries": sorted({p["geometry"] for p in pairs}),
           "clips": sorted({tuple(p["clip"]) for p in pairs if p["clip"]}),
           "compared_short": [min(p["compared"][0] for p in pairs), max(p["compared"][0] for p in pairs)],
           "compared_long": [min(p["compared"][1] for p in pairs), max(p["compared"][1] for p in pairs)],
           "positions": [min(positions), max(positions)] if positions else None,
           "rotations": [min(p["rotations"] for p in pairs), max(p["rotations"] for p in pairs)]}
    out["clips"] = [list(c) for c in out["clips"]]
    if matched_sizes:
        out["matched_sizes"] = sorted([int(a), int(b)] for a, b in matched_sizes)
    return out


def image_reasons(cond: Conditions, fitted: dict[str, Any]) -> list[str]:
    """Why an image's own conditions (size, format, JPEG quality) fall outside those a calibration model was
    fitted on (empty: inside)."""
    reasons = []
    matched = [list(s) for s in fitted.get("matched_sizes") or []]
    if list(cond["size"]) not in matched:  # a simulated calibration stands for the sizes it was matched to
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
    return reasons


def pair_reasons(pair: PairCondition, fitted: dict[str, Any]) -> list[str]:
    """Why a pair's search condition falls outside those a calibration model was fitted on (empty: inside).
    The score accounts for the number of positions and rotations searched; the geometry and the compared
    region's size it does not (the PCE of a true pair grows with the pixels compared)."""
    reasons = []
    if pair["geometry"] not in fitted["geometries"]:
        reasons.append(f"PCE geometry {pair['geometry']} not among the calibrated {', '.join(fitted['geometries'])}")
    elif pair["clip"] is not None and pair["clip"] not in [list(c) for c in fitted["clips"]]:
        clips = ", ".join("x".join(str(v) for v in c) for c in fitted["clips"]) or "none"
        reasons.append(f"{pair['clip'][0]}x{pair['clip'][1]} clip not among the calibrated clips ({clips})")
    return reasons

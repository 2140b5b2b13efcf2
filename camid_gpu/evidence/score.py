"""The calibrated score of an (image, camera) pair and the search condition it was obtained under.

**One score under every search.** A PCE is not one quantity under every search: the PCE of a different camera
at its best of N crop offsets (or scales, or rotations) is the maximum of N draws, and reaches values that a
zero-shift full-frame comparison of a different camera never does (a 6 MP photo crop-searched in a 10 MP
fingerprint: PCE 26 over ~10^6 offsets). The score calibrated here is therefore not the PCE but the
**search-corrected false-alarm probability** the record already gives for every pair (``log10_p_fa``: the
one-shift tail probability of the peak, turned into the probability that the best of every shift, offset,
scale and rotation searched reaches it; see :func:`camid_gpu.prnu.pce.log10_false_alarm` and
:func:`camid_gpu.prnu.decision.union_bound`)::

    score = log10(1 + max(0, -log10 P_FA))

Under Hd (another camera) ``P_FA`` is (close to) uniform whatever was searched, so the score of a wrong camera
has one distribution under every search: a crop-searched maximum of PCE 26 over 10^6 offsets has P_FA ~0.1 and
scores 0.3, among the wrong cameras' full-frame scores, not among the true ones'. Under Hp the search lowers the
score (the same peak counts for less after N tries), which makes an LR from an unsearched calibration
conservative, never inflated. The log keeps the huge ``-log10 P_FA`` of strong matches (PCE 35,000 gives ~7,600)
on a scale a calibrator can fit.

**The condition** of a pair is recorded beside every LR and in every calibration: the geometry (``full-frame``,
``clip`` and its size, ``crop``, ``scale-crop``), the compared region's size, the positions (shifts or offsets)
and rotations searched. Calibrations keep one model per image kind and **search**: ``aligned`` (zero-shift full
frame or centre clip), ``crop`` (crop search over offsets) and ``scale`` (scale and crop search).
"""
from __future__ import annotations

import math
from typing import Any, Optional, TypedDict

from camid_gpu.config import is_finite_number

SCORE_NAME = "log10(1 + max(0, -log10 P_FA)), P_FA corrected for every shift, offset, scale and rotation searched"
#: the searches a calibration keeps a model for, and the geometries (``match`` of a record) of each
SEARCHES = {"aligned": ("full-frame", "clip"), "crop": ("crop",), "scale": ("scale-crop",)}
SCALE_SEARCH_METHOD = "pce-scale-crop-search"  # ``pce.method`` of a record made by --search-scales


class PairCondition(TypedDict):
    search: str                  # aligned, crop or scale (the model that applies)
    geometry: str                # full-frame, clip, crop or scale-crop
    compared: list[int]          # [short side, long side] of the compared region (the clip, else the image)
    clip: Optional[list[int]]    # the centre clip [rows, columns] when geometry is clip
    positions: Optional[int]     # shifts (aligned) or offsets x scales (crop, scale) searched
    rotations: int               # rotations tried


def score_of(log10_p_fa: Any) -> Optional[float]:
    """The calibrated score of a search-corrected ``log10 P_FA`` (None when it is not a finite number)."""
    if not is_finite_number(log10_p_fa):
        return None
    return math.log10(1.0 + max(0.0, -float(log10_p_fa)))


def _shifts(shift_range: Any) -> Optional[int]:
    if shift_range is None:  # the whole plane: every shift (counted by the P_FA already)
        return None
    sy, sx = (int(v) for v in shift_range)
    return (sy + 1) * (sx + 1)


def pair_condition(record: dict[str, Any], score: dict[str, Any], geometry: dict[str, Any]) -> PairCondition:
    """The condition of one camera's score in a result record. ``geometry``: the run's PCE parameters
    (``pce_clip``, ``shift_range``, as ``Params.to_dict`` or the manifest's ``params`` give them)."""
    rows_cols = [int(v) for v in record.get("size") or [0, 0]]
    rotations = max(1, len(record.get("rotations_tried") or [0]))
    if (record.get("pce") or {}).get("method") == SCALE_SEARCH_METHOD:
        match = "scale-crop"
    else:
        match = str(score.get("match") or "full-frame")
    clip = geometry.get("pce_clip")
    if match == "clip" and clip:
        compared, clip_rc = sorted(int(v) for v in clip), [int(v) for v in clip]
    else:
        compared, clip_rc = sorted(rows_cols), None
    if match in ("crop", "scale-crop"):
        positions = score.get("positions_searched")
        positions = int(positions) if is_finite_number(positions) else None
    else:
        positions = _shifts(geometry.get("shift_range"))
    search = next((s for s, matches in SEARCHES.items() if match in matches), "aligned")
    return {"search": search, "geometry": match, "compared": compared, "clip": clip_rc, "positions": positions,
            "rotations": rotations}


def condition_text(cond: PairCondition) -> str:
    """A short readable condition: ``crop search, 384x512 compared, 40401 positions, 1 rotation``."""
    geometry = {"full-frame": "full frame", "clip": "centre clip", "crop": "crop search",
                "scale-crop": "scale and crop search"}.get(cond["geometry"], cond["geometry"])
    size = "x".join(str(v) for v in (cond["clip"] or cond["compared"]))
    positions = "all shifts" if cond["positions"] is None else (
        f"{cond['positions']} position{'s' * (cond['positions'] != 1)}")
    return (f"{geometry}, {size} compared, {positions}, {cond['rotations']} rotation"
            f"{'s' * (cond['rotations'] != 1)}")

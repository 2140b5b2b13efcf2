"""The per-image result record: its schema (typed once, here) and the functions that build it.

One JSON object per image in ``results.jsonl``, in input order. A file that could not be used has only
``path`` and ``error`` (``{"kind", "reason"}``); every other record has ``error: null``, the image facts
(:func:`base_record`), ``pce`` (:func:`pce_record`, or the scale/crop search's ``prnu.search.search_record``)
and/or ``mahalanobis`` (:func:`mahalanobis_record`), the ``rotation`` that won, and ``truth`` when the
camera is known from the folder (``camid evaluate``). Scores are rounded by ``json_number``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional, Sequence, TypedDict

import numpy as np

from camid_gpu._shared.jsonio import json_number
from camid_gpu.errors import ImageError, ScoreError
from camid_gpu.pipeline.prepare import Prepared

if TYPE_CHECKING:
    from camid_gpu import mahalanobis as maha


class ErrorInfo(TypedDict):
    kind: str    # the error class (e.g. ImageDecodeError)
    reason: str  # a sentence naming what is wrong


class _CameraScoreRequired(TypedDict):
    pce: Optional[float]
    ncc: Optional[float]
    log10_p_fa: Optional[float]
    peak_shift: list[int]  # [rows, columns]


class CameraScore(_CameraScoreRequired, total=False):
    error: str  # only when the score came out non-finite: that pair takes no part in any decision


class PCERecord(TypedDict, total=False):
    scores: dict[str, CameraScore]      # per camera
    best: str
    best_pce: Optional[float]
    decision: Optional[str]             # the best camera above the threshold, else None
    above_threshold: list[str]          # by decreasing PCE
    threshold: float
    max_pce_by_rotation: dict[str, float]  # only when more than one rotation was tried


class MahalanobisRecord(TypedDict, total=False):
    mode: str                           # flat, aligned or paper
    membership: dict[str, Optional[float]]  # percent, per camera
    associated: list[str]               # more than one on a tie
    tie: bool
    pairwise: dict[str, Any]            # cameras, satisfied, unsatisfied (C x C)
    selected_pixels: dict[str, int]
    diagnostics: dict[str, Any]
    trace: dict[str, Any]               # the disputed trace's mean, covariance, I0 histogram


class ImageRecord(TypedDict, total=False):
    path: str                           # as given on the command line (or found in a given folder)
    realpath: str                       # canonical path (symlinks and ./ resolved): the key of a record on resume
    error: Optional[ErrorInfo]
    sha256: str
    file_size: int
    format: str
    size: list[int]                     # [rows, columns] as stored
    channels: int
    bit_depth: int
    exif: dict[str, Any]
    kind: str                           # flat or natural
    kind_source: str                    # name, content or given
    rotations_tried: list[int]
    decoder: str                        # which decoder made the pixels: cpu or gpu
    decoder_note: str                   # only when --decode gpu/auto was asked and the CPU decoded: why
    rotation: int                       # degrees, counter-clockwise, of the best PCE
    pce: PCERecord
    mahalanobis: MahalanobisRecord
    truth: Optional[str]
    mahalanobis_skipped: str            # why the Mahalanobis method did not run (the scale/crop search)


def record_key(record: ImageRecord | dict[str, Any]) -> str:
    """What identifies the input a record is about: its canonical path (older records: the path given)."""
    return record.get("realpath") or record["path"]


# Typed accessors: the fields that are present only for some records (by outcome or by method) are read here,
# once, so that readers (evaluation, CLI tables, CSV) do not each guess with .get chains.
def is_error(record: ImageRecord | dict[str, Any]) -> bool:
    """True for a per-file error record (it has only ``path``, ``realpath`` and ``error``)."""
    return bool(record.get("error"))


def error_of(record: ImageRecord) -> Optional[ErrorInfo]:
    return record.get("error") or None


def pce_of(record: ImageRecord) -> Optional[PCERecord]:
    """The PCE result of a successful record, or None (an error record, or a run without PCE)."""
    return None if is_error(record) else record.get("pce")


def mahalanobis_of(record: ImageRecord) -> Optional[MahalanobisRecord]:
    """The Mahalanobis result of a successful record, or None (an error record, a run without the method)."""
    return None if is_error(record) else record.get("mahalanobis")


def truth_of(record: ImageRecord) -> Optional[str]:
    """The camera the record's image is known to come from (``camid evaluate``), or None."""
    return record.get("truth")


def final_view(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """One record per input: a later record for the same input (a retried error, a changed file's flag)
    supersedes an earlier one and takes its place in the order."""
    latest: dict[str, ImageRecord] = {}
    for record in records:
        latest[record_key(record)] = record  # a dict keeps the first position of a key
    return list(latest.values())


def error_entry(path: str, exc: BaseException) -> dict[str, Any]:
    """A JSON-ready per-file error record (an exception without a message gets one naming what happened)."""
    if isinstance(exc, ImageError):
        return {"path": exc.path, "error": {"kind": exc.kind, "reason": exc.reason}}
    reason = str(exc).strip()
    if isinstance(exc, MemoryError):
        reason = (f"out of memory while processing {path}" + (f" ({reason})" if reason else "")
                  + "; lower --workers or --max-host-memory, or use a smaller --clip")
    elif not reason:
        reason = f"{type(exc).__name__} while processing {path} (no further detail from the library)"
    return {"path": path, "error": {"kind": type(exc).__name__, "reason": reason}}


def mahalanobis_record(outcome: "maha.MahalanobisResult", d: int) -> dict[str, Any]:
    """Compact JSON-ready method-2 result of image ``d``: membership, association (ties listed),
    the pairwise counts (the paper's Tables 2-3) as C x C matrices, pixels used, and the diagnostics
    of what drove the vote for this image alone."""
    one = replace(outcome.take_images(slice(d, d + 1)), image_names=outcome.image_names[d:d + 1], true_cameras=None)
    cams = outcome.camera_names
    member = one.membership[0]
    return {
        "mode": outcome.mode,
        "membership": {c: json_number(m) for c, m in zip(cams, member)},
        "associated": list(one.associations[0]),
        "tie": len(one.associations[0]) > 1,
        "pairwise": {"cameras": list(cams), "satisfied": one.satisfied[0].tolist(),
                     "unsatisfied": one.unsatisfied[0].tolist()},
        "selected_pixels": {c: int(v) for c, v in zip(cams, one.selected[0])},
        "diagnostics": one.diagnostics(),
    }


def base_record(item: Prepared) -> dict[str, Any]:
    info = item.info
    return {"path": item.path, "sha256": info.sha256, "file_size": info.file_size, "format": info.format,
            "size": [info.height, info.width], "channels": info.channels, "bit_depth": info.bit_depth,
            "exif": info.exif, "kind": item.kind, "kind_source": item.kind_source,
            "rotations_tried": list(item.rotations), "decoder": item.decoder, "error": None,
            **({"decoder_note": item.decoder_note} if item.decoder_note else {})}


def pce_record(cameras: Sequence[str], scores: dict[str, np.ndarray], threshold: float,
               path: str | None = None) -> dict[str, Any]:
    """JSON-ready PCE result of one image: per-camera statistics and the decision.

    A non-finite PCE (NaN, infinite) is an error for that camera (``error`` in its entry) and takes no part in
    ``best`` or the decision; when every camera's is non-finite, :class:`ScoreError` is raised (the caller makes
    it a per-image error record).
    """
    pce = np.asarray(scores["pce"], dtype=np.float64)
    finite = np.isfinite(pce)
    per_camera = {}
    for c, cam in enumerate(cameras):
        per_camera[cam] = {"pce": json_number(scores["pce"][c]), "ncc": json_number(scores["ncc"][c]),
                           "log10_p_fa": json_number(scores["log10_p_fa"][c]),
                           "peak_shift": [int(v) for v in scores["peak_shift"][c]]}
        if not finite[c]:
            per_camera[cam]["error"] = "non-finite PCE (NaN or infinite): not used for any decision"
    if not finite.any():
        raise ScoreError(path or "?", "every PCE came out non-finite (NaN or infinite); no decision is possible")
    order = [int(c) for c in np.argsort(-np.where(finite, pce, -np.inf), kind="stable") if finite[int(c)]]
    best = cameras[order[0]]
    above = [cameras[c] for c in order if pce[c] > threshold]
    return {"scores": per_camera, "best": best, "best_pce": json_number(pce[order[0]]),
            "decision": above[0] if above else None, "above_threshold": above, "threshold": threshold}

"""The per-image result record: its schema (typed once, here) and the functions that build it.

One JSON object per image in ``results.jsonl``, in input order. A file that could not be used has only
``path`` and ``error`` (``{"kind", "reason"}``); every other record has ``error: null``, the image facts
(:func:`base_record`), ``pce`` (:func:`pce_record`, or the scale/crop search's ``prnu.search.search_record``)
and/or ``mahalanobis`` (:func:`mahalanobis_record`), the ``rotation`` that won, and ``truth`` when the
camera is known from the folder (``camid evaluate``). Scores are rounded by ``json_number``.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional, Sequence, TypedDict

from camid_gpu._shared.jsonio import json_number
from camid_gpu.errors import ImageError, ScoreError
from camid_gpu.pipeline.prepare import Prepared
from camid_gpu.prnu.decision import decide, union_bound

if TYPE_CHECKING:
    from camid_gpu import mahalanobis as maha


class ErrorInfo(TypedDict):
    kind: str    # the error class (e.g. ImageDecodeError)
    reason: str  # a sentence naming what is wrong


class CameraScore(TypedDict, total=False):
    pce: Optional[float]
    ncc: Optional[float]                # None for a crop (the search reports PCE and P_FA)
    log10_p_fa: Optional[float]         # counts every shift (and rotation) searched
    peak_shift: list[int]               # [rows, columns]
    match: str                          # full-frame, clip (both methods' centre clipping) or crop
    rotation: int                       # degrees, counter-clockwise, of this camera's best PCE
    offset: list[int]                   # crop only: [rows, columns] of the image's corner in the frame
    positions_searched: int             # crop only: admissible offsets searched
    error: str                          # only when the PCE came out non-finite: no part in any decision
    log10_p_fa_library: Optional[float]  # library search: the false-alarm probability over every camera compared


class NotComparable(TypedDict):
    reason: str                         # e.g. "image 512x384, fingerprint 384x512: other sensor size"
    image_size: list[int]               # [rows, columns] as stored
    fingerprint_size: list[int]         # the fingerprint's sensor frame [rows, columns]
    rotations_tried: list[int]


class PCERecord(TypedDict, total=False):
    scores: dict[str, CameraScore]      # per comparable camera
    not_comparable: dict[str, NotComparable]  # per camera of another geometry: no score, no part in the decision
    best: Optional[str]                 # None when no camera is comparable
    best_pce: Optional[float]
    decision: Optional[str]             # the best camera above the threshold, else None
    above_threshold: list[str]          # by decreasing PCE
    threshold: float
    max_pce_by_rotation: dict[str, float]  # only when more than one rotation was tried
    searched: "Searched"                # which cameras were searched how (:func:`searched_record`)


class Searched(TypedDict):
    """How the PCE compared the image with each camera (issue 25: search in proportion to the evidence)."""

    crops: str                          # the crop rule applied: one of CROP_RULES
    full_frame: list[str]               # compared on the same frame (or clip): zero shift, or --shift-range
    crop: list[str]                     # every offset of the image inside a larger sensor (scale search: and scales)
    crop_skipped: list[str]             # a crop would fit, not searched: the image has a compared sensor's size


#: the crop rule of a record (``Searched.crops``): no comparable camera has a larger sensor the image fits in;
#: crops skipped as the image has the native size of a compared sensor (upright or turned); crops searched as
#: it matches no compared sensor; searched on request (--search-crops); the scale/crop search (--search-scales)
CROPS_NONE, CROPS_SKIPPED, CROPS_NO_NATIVE, CROPS_REQUESTED, CROPS_SCALES = (
    "none", "skipped-native-size", "searched-no-native-size", "searched-on-request", "scale-search")
CROP_RULES = (CROPS_NONE, CROPS_SKIPPED, CROPS_NO_NATIVE, CROPS_REQUESTED, CROPS_SCALES)


class MahalanobisRecord(TypedDict, total=False):
    mode: str                           # flat, aligned or paper
    membership: dict[str, Optional[float]]  # percent, per camera
    associated: list[str]               # more than one on a tie
    tie: bool
    pairwise: dict[str, Any]            # cameras, satisfied, unsatisfied (C x C)
    selected_pixels: dict[str, int]
    diagnostics: dict[str, Any]
    trace: dict[str, Any]               # the disputed trace's mean, covariance, I0 histogram
    not_comparable: dict[str, NotComparable]  # cameras left out of the votes (other geometry)
    undetermined: str                   # only when a single camera has the image's geometry: why no association


class LibrarySearch(TypedDict, total=False):
    """What a ``camid library search`` record adds (built by ``camid_gpu.library.search.search_chunk``)."""

    version: str                        # the library's version (SHA-256 of its catalogue) searched
    cameras: int                        # active cameras in the library
    compared: int                       # cameras of the image's geometry: N of the Sidak decision threshold
    screened: int                       # of those, screened on the compact form
    unscreened: dict[str, str]          # camera -> why it went to the confirmation unscreened (crop, shifts, scales)
    crops: str                          # the crop rule over the whole library (one of CROP_RULES)
    crop_skipped: int                   # cameras a crop would fit, not searched (the image has a library sensor's size)
    not_comparable: int                 # cameras of other geometries
    threshold: dict[str, Any]           # screening and decision thresholds with their models (ScreenThreshold)
    shortlist: list[dict[str, Any]]     # {camera, z, rotation}, by decreasing z
    screen_top: list[dict[str, Any]]    # the best screen scores, shortlisted or not


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
    library: LibrarySearch              # only in a library search


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


def error_record(path: str, kind: str, reason: str, **facts: Any) -> dict[str, Any]:
    """The one shape of an error record: ``{"path", "error": {"kind", "reason", **facts}}`` (a file, a folder or a
    camera that could not be used; ``facts``: further JSON values, e.g. the SHA-256s of a changed file)."""
    return {"path": path, "error": {"kind": kind, "reason": reason, **facts}}


def error_entry(path: str, exc: BaseException) -> dict[str, Any]:
    """A JSON-ready per-file error record (an exception without a message gets one naming what happened)."""
    if isinstance(exc, ImageError):
        return error_record(exc.path, exc.kind, exc.reason)
    reason = str(exc).strip()
    if isinstance(exc, MemoryError):
        reason = (f"out of memory while processing {path}" + (f" ({reason})" if reason else "")
                  + "; lower --workers or --max-host-memory, or use a smaller --clip")
    elif not reason:
        reason = f"{type(exc).__name__} while processing {path} (no further detail from the library)"
    return error_record(path, type(exc).__name__, reason)


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
            **({"decoder_note": item.decoder_note} if item.decoder_note else {}),
            **({"frame": info.frame} if info.frame else {})}  # a multi-page TIFF: the page analysed, among which


def camera_score(found: dict[str, Any], rotation: int, rotations: int) -> dict[str, Any]:
    """JSON-ready score of one camera at its best rotation. With ``rotations`` > 1 tried, the false-alarm
    probability is bounded by the union over them (``rotations`` times the one-rotation value, at most 1)."""
    log_pfa = union_bound(found["log10_p_fa"], rotations)
    out = {"pce": json_number(found["pce"]), "ncc": json_number(found["ncc"]) if found["ncc"] is not None else None,
           "log10_p_fa": json_number(log_pfa), "peak_shift": [int(v) for v in found["peak_shift"]],
           "match": found["match"], "rotation": int(rotation)}
    if "offset" in found:
        out["offset"] = [int(v) for v in found["offset"]]
        out["positions_searched"] = int(found["positions_searched"])
    if out["pce"] is None:
        out["error"] = "non-finite PCE (NaN or infinite): not used for any decision"
    return out


def crop_rule(native: bool, crops_fit: bool, requested: bool) -> str:
    """The crop rule (one of :data:`CROP_RULES`, not the scale search's) for an image that has (``native``) or has
    not the size of a compared sensor, when some camera is comparable only as a crop (``crops_fit``)."""
    if not crops_fit:
        return CROPS_NONE
    if requested:
        return CROPS_REQUESTED
    return CROPS_SKIPPED if native else CROPS_NO_NATIVE


def searched_record(how: dict[str, str], skipped: Sequence[str], crops: str) -> dict[str, Any]:
    """:class:`Searched`: ``how`` maps each camera scored to its match (full-frame, clip or crop), in store order;
    ``skipped`` the cameras a crop would fit but that were not searched; ``crops`` the rule applied."""
    if crops not in CROP_RULES:
        raise ValueError(f"crops must be one of {CROP_RULES}, got {crops!r}")
    return {"crops": crops, "full_frame": [c for c, m in how.items() if m != "crop"],
            "crop": [c for c, m in how.items() if m == "crop"], "crop_skipped": list(skipped)}


def skipped_crop_entry(image_size: Sequence[int], sensor: Sequence[int], rotations: Sequence[int]) -> dict[str, Any]:
    """The ``not_comparable`` entry of a camera the image would fit in as a crop, not searched (:data:`CROPS_SKIPPED`)."""
    return {"reason": f"image {image_size[0]}x{image_size[1]}, fingerprint {sensor[0]}x{sensor[1]}: a crop would fit, "
                      f"not searched: the image has the sensor size of a camera compared, so it is compared at full "
                      f"frame with the cameras of its size (--search-crops searches the larger sensors too)",
            "image_size": [int(v) for v in image_size], "fingerprint_size": [int(v) for v in sensor],
            "rotations_tried": [int(d) for d in rotations]}


def pce_record(scores: dict[str, dict[str, Any]], not_comparable: dict[str, dict[str, Any]],
               threshold: float, path: str | None = None, searched: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready PCE result of one image: the comparable cameras' scores (:func:`camera_score`, in store
    order), the cameras that are not comparable (no score, no part in the decision) and the decision.

    A non-finite PCE (None here) is never ``best`` and never above the threshold; when every comparable camera's
    PCE is non-finite, :class:`ScoreError` is raised (the caller makes it a per-image error record).
    """
    cams = list(scores)
    if cams and all(scores[c]["pce"] is None for c in cams):
        raise ScoreError(path or "?", "every PCE came out non-finite (NaN or infinite); no decision is possible")
    made = decide({c: scores[c]["pce"] for c in cams}, threshold)
    best = made.best
    record = {"scores": scores, "not_comparable": dict(sorted(not_comparable.items())), "best": best,
              "best_pce": scores[best]["pce"] if best else None,
              "decision": made.decision, "above_threshold": made.above, "threshold": threshold}
    if searched is not None:
        record["searched"] = searched
    return record


def video_record(info: Any, kind: tuple[str, str], pooled: dict[str, dict[str, Any]],
                 hybrid: dict[str, dict[str, Any]], not_comparable: dict[str, dict[str, Any]], threshold: float,
                 options: dict[str, Any], frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The record of a video (``camid_gpu.pipeline.video``): the image fields a reader expects (size, format,
    kind, ...), ``video`` (container hash, codec, decoder and version, frame rate, the selection, every frame
    used: index, PTS, time, picture type), ``pce`` over the pooled frames (per camera ``match`` video-pooled or
    video-hybrid, with their alignment or scale/offset facts) and ``frames``: the per-frame PCE series."""
    video = info.to_dict()
    record = {"path": info.path, "sha256": info.sha256, "file_size": info.file_size, "format": info.format,
              "size": [info.height, info.width], "channels": 1, "bit_depth": 8, "exif": {},
              "kind": kind[0], "kind_source": kind[1], "rotations_tried": [0], "decoder": "cpu", "error": None,
              "rotation": 0, "video": dict(video, options=options),
              "mahalanobis_skipped": "videos are scored by PCE only (pooled frames)"}
    scores = {**pooled, **hybrid}
    # the pooled frames are compared at full frame; a still fingerprint is searched over scales and offsets
    how = {**{c: "full-frame" for c in pooled}, **{c: "crop" for c in hybrid}}
    searched = searched_record(how, [], CROPS_SCALES if hybrid else CROPS_NONE)
    record["pce"] = pce_record(scores, not_comparable, threshold, info.path, searched)
    record["pce"]["method"] = "pce-video"
    record["frames"] = frames
    best = record["pce"]["best"]
    if best is not None and best in pooled:
        record["video"]["stabilisation_detected"] = pooled[best]["stabilisation_detected"]
    return record


# -- records read back (resume, report, verify): each must agree with itself ---------------------------------
def record_problems(record: Any) -> list[str]:
    """Why a record read back contradicts itself (empty when it does not): its PCE decision, best camera and
    cameras above the threshold must be what :func:`~camid_gpu.prnu.decision.decide` gives from its own scores
    and threshold; a Mahalanobis association must be the highest membership its own pairwise votes give. A
    forged decision (C03 written over a record whose best is C02 at PCE 28.5) is caught here, even where no
    manifest can say the file changed. Equal PCEs may come in either order (they were ranked unrounded)."""
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        return ["not a result record (no path)"]
    if is_error(record):
        return [] if isinstance(record.get("error"), dict) else ["its error is not an object"]
    problems = []
    if record.get("pce") is not None:
        problems += _pce_problems(record["pce"])
    if record.get("mahalanobis") is not None:
        problems += _mahalanobis_problems(record["mahalanobis"])
    return problems


def _pce_problems(pce: Any) -> list[str]:
    from camid_gpu.config import is_finite_number

    if not isinstance(pce, dict) or not isinstance(pce.get("scores"), dict):
        return ["its PCE result has no scores"]
    threshold = pce.get("threshold")
    if not is_finite_number(threshold):
        return [f"its PCE threshold {threshold!r} is not a finite number"]
    scores = {c: (s.get("pce") if isinstance(s, dict) else None) for c, s in pce["scores"].items()}
    made = decide(scores, threshold)
    value = (lambda c: scores.get(c) if isinstance(c, str) else None)  # noqa: E731
    # a PCE within the records' rounding (6 significant digits) of the threshold may lie on either side of it
    near = {c for c, v in scores.items() if is_finite_number(v) and abs(v - threshold) <= 1e-5 * max(abs(threshold), 1)}
    above = pce.get("above_threshold")
    if not isinstance(above, list) or not set(map(str, above)) <= set(scores) or \
            set(map(str, above)) - near != set(made.above) - near:
        return [f"its cameras above the threshold {above!r} are not those of its own scores ({made.above} against "
                f"its threshold {threshold:g})"]
    problems = []
    top = max((value(c) for c in above), default=None)
    decision = pce.get("decision")
    if (decision is None) != (not above) or (decision is not None and (decision not in above or value(decision) != top)):
        shown = f"{made.decision} at PCE {value(made.decision)}" if made.decision else "no camera"
        problems.append(f"its decision {decision!r} is not what its own scores give ({shown} against its threshold "
                        f"{threshold:g}; best {made.best} at PCE {value(made.best)})")
    best = pce.get("best")
    if (best is None) != (made.best is None) or (best is not None and value(best) != value(made.best)):
        problems.append(f"its best camera {best!r} is not the largest of its own scores ({made.best} at PCE "
                        f"{value(made.best)})")
    elif best is not None and pce.get("best_pce") != value(best):
        problems.append(f"its best_pce {pce.get('best_pce')!r} is not its best camera's PCE ({value(best)})")
    return problems


def _mahalanobis_problems(maha: Any) -> list[str]:
    import numpy as np

    from camid_gpu.mahalanobis.results import associate, membership, wins

    pairwise = maha.get("pairwise") if isinstance(maha, dict) else None
    if not isinstance(pairwise, dict) or not isinstance(maha.get("membership"), dict):
        return []  # a result without its votes (an older or partial record): nothing to recompute
    try:
        cams = [str(c) for c in pairwise["cameras"]]
        sat, unsat = (np.asarray(pairwise[k], dtype=np.int64)[None] for k in ("satisfied", "unsatisfied"))
        member, won = membership(sat, unsat)[0], wins(sat, unsat)
    except (KeyError, TypeError, ValueError):
        return ["its Mahalanobis votes cannot be read"]
    problems = []
    for cam, m in zip(cams, member):
        recorded = maha["membership"].get(cam)
        if (recorded is None) != bool(np.isnan(m)) or (recorded is not None and abs(recorded - m) > 1e-5 * max(abs(m), 1)):
            problems.append(f"its Mahalanobis membership of {cam} ({recorded!r}) is not what its own votes give "
                            f"({None if np.isnan(m) else round(float(m), 6)})")
    if "associated" in maha and list(maha["associated"]) != list(associate(won, cams)[0]):
        problems.append(f"its Mahalanobis association {maha['associated']!r} is not what its own votes give "
                        f"({list(associate(won, cams)[0])})")
    return problems


def inconsistent_records(path: str) -> list[str]:
    """One sentence per complete record of the JSON Lines file ``path`` (results.jsonl) that contradicts itself
    (:func:`record_problems`), naming its line and image. A cut last line (a crash) is no record."""
    import json

    out = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith(b"\n") or not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                out.append(f"{os.path.basename(path)} line {number} is not a JSON record")
                continue
            problems = record_problems(record)
            if problems:
                name = record.get("path") if isinstance(record, dict) else None
                out.append(f"{os.path.basename(path)} line {number} ({name}): " + "; ".join(problems))
    return out

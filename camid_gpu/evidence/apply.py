"""Using a calibration: log10 LR of every comparable (image, camera) pair, bounded, with its verbal equivalent.

:func:`apply_calibration` needs NumPy only (the fitted model is stored as numbers, never as a pickle), so that
``identify``, ``evaluate`` and a library search can all call it. The calibration is read with
:func:`load_calibration`, which checks the calibration folder as a run folder is checked (its files against
``manifest.json``, the manifest against ``manifest.sha256``) and then the model itself
(:func:`camid_gpu.evidence.model.check_calibration`), before any image is read.

The LR answers: how much more probable is this pair's score (:mod:`.score`: the search-corrected false-alarm
probability) if the image was taken by this camera (Hp) than if it was taken by another camera of the
calibration's population (Hd)? It is bounded by the ELUB bounds the calibration data support, says so when it
sits at a bound, and is given only for a pair whose conditions (kind, size, format, JPEG quality, search,
clip) lie within those its model was fitted on. Outside them the pair gets no calibrated LR and no verbal
equivalent, only its own reasons (``show_outside`` adds the number, under another key, marked). The threshold
decision is unchanged; the LR stands beside it. An LR from a simulated calibration (``camid calibrate --like``)
says "calibrated on simulated data" wherever it is shown.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from camid_gpu._shared.custody import check_files
from camid_gpu._shared.files import open_regular
from camid_gpu._shared.jsonio import sha256_file
from camid_gpu.errors import CamidError
from camid_gpu.evidence.conditions import conditions_of, image_reasons, pair_reasons
from camid_gpu.evidence.model import bounded, check_calibration, llr_of_model
from camid_gpu.evidence.score import condition_text, pair_condition, score_of
from camid_gpu.pipeline.records import is_error

CALIBRATION_NAME = "calibration.json"
EVIDENCE_NAME = "evidence.json"
SIMULATED = "calibrated on simulated data"

#: the verbal scale: ENFSI Guideline for Evaluative Reporting in Forensic Science (2015), Table 3; (lowest log10
#: LR of the band, words). The same words with "the alternative" for 1/LR.
VERBAL_SCALE_NAME = "ENFSI Guideline for Evaluative Reporting in Forensic Science (2015), verbal scale"
_VERBAL = [(6.0, "extremely strong support"), (4.0, "very strong support"), (3.0, "strong support"),
           (2.0, "moderately strong support"), (1.0, "moderate support"), (0.0, "weak support")]


def verbal(log10_lr: Optional[float]) -> str:
    """The verbal equivalent of a log10 LR on the ENFSI scale, naming which proposition it supports."""
    if log10_lr is None:
        return "no LR"
    if abs(log10_lr) < 1e-9:
        return "no support for either proposition (LR 1)"
    words = next(w for lo, w in _VERBAL if abs(log10_lr) >= lo)
    return f"{words} for {'Hp (this camera)' if log10_lr > 0 else 'Hd (another camera)'}"


@dataclass(frozen=True)
class Calibration:
    data: dict[str, Any]
    path: str          # calibration.json
    sha256: str        # of calibration.json: the calibration's identity in every record that uses it

    @property
    def models(self) -> dict[str, Any]:
        return self.data["models"]

    @property
    def simulated(self) -> bool:
        return bool(self.data["data"]["simulated"])


def calibration_files(folder: str) -> list[str]:
    """The files of a calibration folder that are read (and so checked): the model and its validation page."""
    return [n for n in (CALIBRATION_NAME, "validation.html") if os.path.lexists(os.path.join(folder, n))]


def load_calibration(path: str) -> Calibration:
    """Read a calibration (``camid calibrate -o CAL``: the folder, or its ``calibration.json``) after checking
    its folder as a run folder is checked (files against ``manifest.json``, which must agree with
    ``manifest.sha256``) and the model's contents; refused with the file and the problem named."""
    file = os.path.join(path, CALIBRATION_NAME) if os.path.isdir(path) else path
    folder = os.path.dirname(os.path.abspath(file))
    if not os.path.isfile(file):
        raise CamidError(f"{path}: no calibration ({CALIBRATION_NAME}) there; make one with camid calibrate")
    for name in ("manifest.json", "manifest.sha256"):
        if not os.path.isfile(os.path.join(folder, name)):
            raise CamidError(f"{file}: no {name} beside it; a calibration is used only with the manifest that "
                             f"records its SHA-256 (and manifest.sha256, the manifest's own)")
    check = check_files(folder, calibration_files(folder))
    if check.problems:
        raise CamidError(f"{folder}: the calibration is not the one its manifest recorded: "
                         + "; ".join(check.problems) + f" (camid verify {folder})")
    digest = sha256_file(file)  # what the check above found
    with open_regular(file) as handle:
        raw = handle.read()
    if hashlib.sha256(raw).hexdigest() != digest:
        raise CamidError(f"{file}: changed while it was read")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CamidError(f"{file}: not JSON ({exc})") from None
    return Calibration(check_calibration(data, file), os.path.abspath(file), digest)


def model_for(calibration: Calibration, kind: str, search: str) -> tuple[Optional[str], Optional[dict[str, Any]]]:
    """(name, entry) of the calibration's model of an image kind and search, or (None, None)."""
    for name, entry in calibration.models.items():
        if entry["kind"] == kind and entry["search"] == search:
            return name, entry
    return None, None


def _no_model_reason(calibration: Calibration, kind: str, search: str) -> str:
    fitted = ", ".join(calibration.models) or "none"
    return f"no calibration for {kind} images compared by {search} search (calibrated: {fitted})"


def camera_lr(record: dict[str, Any], score: dict[str, Any], cond: dict[str, Any], calibration: Calibration,
              geometry: dict[str, Any], show_outside: bool = False) -> dict[str, Any]:
    """One pair's evidence: its PCE, search-corrected score and condition, the model used, its own reasons
    for being outside the calibration (empty inside), and inside it the bounded log10 LR and its verbal
    equivalent; outside it ``log10_lr`` and ``verbal`` are None (``show_outside``: the number under
    ``log10_lr_outside_calibration``)."""
    pair = pair_condition(record, score, geometry)
    value = score_of(score.get("log10_p_fa"))
    name, fitted = model_for(calibration, cond["kind"], pair["search"])
    reasons = [] if fitted else [_no_model_reason(calibration, cond["kind"], pair["search"])]
    if fitted:
        reasons += image_reasons(cond, fitted["conditions"]) + pair_reasons(pair, fitted["conditions"])
    if value is None:
        reasons.append("no search-corrected false-alarm probability in the record (non-finite PCE)")
    out = {"pce": score.get("pce"), "log10_p_fa": score.get("log10_p_fa"),
           "score": None if value is None else round(value, 6), "condition": pair,
           "condition_text": condition_text(pair), "model": name, "within_calibration": not reasons,
           "outside": reasons, "log10_lr": None, "at_bound": None, "verbal": None}
    if calibration.simulated:
        out["calibrated_on"] = SIMULATED
    if value is None:
        return out
    if fitted is None:  # shown outside only through the kind's aligned model, if any
        fitted = model_for(calibration, cond["kind"], "aligned")[1]
        if fitted is None or not show_outside:
            return out
    raw = float(llr_of_model(fitted["model"], [value])[0])
    b = fitted["bounds"]
    lr = round(float(bounded([raw], b)[0]), 3)
    at_bound = "upper" if raw >= b["upper"] else "lower" if raw <= b["lower"] else None
    if not reasons:
        out.update(log10_lr=lr, at_bound=at_bound, verbal=verbal(lr))
    elif show_outside:
        out.update(log10_lr_outside_calibration=lr, at_bound=at_bound)
    return out


def _ranked(cameras: dict[str, dict[str, Any]]) -> list[str]:
    """The cameras best first: by decreasing score (search-corrected), then PCE."""
    def key(cam: str) -> tuple[float, float]:
        c = cameras[cam]
        return (-(c["score"] if c["score"] is not None else -1.0),
                -(c["pce"] if isinstance(c["pce"], (int, float)) else float("-inf")))
    return sorted(cameras, key=key)


def apply_calibration(records: Sequence[dict[str, Any]], calibration: Calibration,
                      geometry: Optional[dict[str, Any]] = None, show_outside: bool = False) -> list[dict[str, Any]]:
    """One evidence record per analysed image: its conditions, and for each comparable camera (best first,
    ``ranking``) :func:`camera_lr`. ``geometry``: the run's PCE parameters (``pce_clip``, ``shift_range``;
    default full frame, zero shift). ``within_calibration`` of the image: whether its decided (else best)
    camera's pair is. The threshold decision is repeated from the record, unchanged. Error records get none."""
    geometry = geometry or {"pce_clip": None, "shift_range": [0, 0]}
    out = []
    for r in records:
        if is_error(r) or not isinstance(r.get("pce"), dict):
            continue
        cond = conditions_of(r)
        scores = r["pce"].get("scores") or {}
        cameras = {cam: camera_lr(r, s, cond, calibration, geometry, show_outside) for cam, s in scores.items()}
        ranking = _ranked(cameras)
        lead = r["pce"].get("decision") or r["pce"].get("best")
        shown = cameras.get(lead) if lead else None
        out.append({"path": r["path"], "sha256": r.get("sha256"), "calibration_sha256": calibration.sha256,
                    "conditions": cond, "within_calibration": bool(shown and shown["within_calibration"]),
                    "outside": shown["outside"] if shown else ["no comparable camera"],
                    "decision": r["pce"].get("decision"), "best": r["pce"].get("best"),
                    "ranking": ranking, "cameras": {cam: cameras[cam] for cam in ranking},
                    **({"calibrated_on": SIMULATED} if calibration.simulated else {})})
    return out


def evidence_document(records: Sequence[dict[str, Any]], calibration: Calibration,
                      geometry: Optional[dict[str, Any]] = None, show_outside: bool = False) -> dict[str, Any]:
    """The JSON document ``RUN/evidence.json``: the calibration used (path, SHA-256, propositions, scale, models
    and their conditions, whether it is simulated) and :func:`apply_calibration`'s records."""
    data = calibration.data
    return {"format": "camid-evidence", "version": 2,
            "calibration": {"path": calibration.path, "sha256": calibration.sha256,
                            "hypotheses": data.get("hypotheses"), "score": data.get("score"),
                            "calibrator": data.get("calibrator"), "simulated": calibration.simulated,
                            **({"calibrated_on": SIMULATED, "assumptions": data["data"].get("assumptions")}
                               if calibration.simulated else {}),
                            "models": {k: {"kind": v["kind"], "search": v["search"], "bounds": v["bounds"],
                                           "conditions": v["conditions"]} for k, v in calibration.models.items()}},
            "lr_outside_calibration_shown": bool(show_outside),
            "verbal_scale": VERBAL_SCALE_NAME,
            "images": apply_calibration(records, calibration, geometry, show_outside)}

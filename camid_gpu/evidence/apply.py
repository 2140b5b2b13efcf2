"""Using a calibration: log10 LR of every comparable (image, camera) pair, bounded, with its verbal equivalent.

:func:`apply_calibration` needs NumPy only (the fitted model is stored as numbers, never as a pickle), so that
``identify``, ``evaluate`` and a library search can all call it. The calibration is read with
:func:`load_calibration`, which checks ``calibration.json`` against the SHA-256 its folder's manifest recorded.

The LR answers: how much more probable is this PCE if the image was taken by this camera (Hp) than if it was
taken by another camera of the calibration's population (Hd)? It is bounded by the ELUB bounds the calibration
data support, says so when it sits at a bound, and says when the image's conditions fall outside those the
calibration was fitted on. The threshold decision is unchanged; the LR stands beside it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from camid_gpu._shared.files import open_regular
from camid_gpu._shared.jsonio import sha256_file
from camid_gpu.errors import CamidError
from camid_gpu.evidence.conditions import conditions_of, outside_reasons
from camid_gpu.evidence.pairs import score_of
from camid_gpu.pipeline.records import is_error

FORMAT, VERSION = "camid-calibration", 1
CALIBRATION_NAME = "calibration.json"
EVIDENCE_NAME = "evidence.json"

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


def llr_of_model(model: dict[str, Any], scores: Any) -> np.ndarray:
    """Unbounded log10 LRs of scores under a stored model (``logistic``: intercept + slope x score;
    ``table``: linear interpolation of (score, log10 LR), constant beyond its ends)."""
    s = np.asarray(scores, dtype=float)
    if model["type"] == "logistic":
        return model["intercept"] + model["slope"] * s
    if model["type"] == "table":
        return np.interp(s, model["score"], model["log10_lr"])
    raise CamidError(f"unknown calibration model type {model.get('type')!r}")


def bounded(llrs: Any, bounds: dict[str, float]) -> np.ndarray:
    return np.clip(np.asarray(llrs, dtype=float), bounds["lower"], bounds["upper"])


@dataclass(frozen=True)
class Calibration:
    data: dict[str, Any]
    path: str          # calibration.json
    sha256: str        # of calibration.json: the calibration's identity in every record that uses it

    @property
    def kinds(self) -> dict[str, Any]:
        return self.data["kinds"]


def load_calibration(path: str) -> Calibration:
    """Read a calibration (``camid calibrate -o CAL``: the folder, or its ``calibration.json``), after checking
    the file against the SHA-256 its folder's manifest recorded."""
    file = os.path.join(path, CALIBRATION_NAME) if os.path.isdir(path) else path
    folder = os.path.dirname(os.path.abspath(file))
    manifest_path = os.path.join(folder, "manifest.json")
    if not os.path.isfile(file):
        raise CamidError(f"{path}: no calibration ({CALIBRATION_NAME}) there; make one with camid calibrate")
    if not os.path.isfile(manifest_path):
        raise CamidError(f"{file}: no manifest.json beside it; a calibration is used only with the manifest that "
                         f"records its SHA-256")
    digest = sha256_file(file)
    with open_regular(manifest_path) as handle:
        manifest = json.loads(handle.read().decode("utf-8"))
    recorded = [e.get("sha256") for e in manifest.get("outputs") or []
                if isinstance(e, dict) and os.path.basename(str(e.get("path"))) == CALIBRATION_NAME]
    if digest not in recorded:
        raise CamidError(f"{file}: its SHA-256 {digest[:16]}... is not the one its manifest recorded; the calibration "
                         f"changed since it was made (camid verify {folder})")
    with open_regular(file) as handle:
        data = json.loads(handle.read().decode("utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CamidError(f"{file}: not a camid calibration of version {VERSION} (format {found!r})")
    return Calibration(data, os.path.abspath(file), digest)


def _camera_lr(pce: Optional[float], fitted: Optional[dict[str, Any]]) -> dict[str, Any]:
    if pce is None or fitted is None:
        return {"pce": pce, "score": None, "log10_lr": None, "at_bound": None, "verbal": verbal(None)}
    score = score_of(pce)
    raw = float(llr_of_model(fitted["model"], [score])[0])
    b = fitted["bounds"]
    value = float(bounded([raw], b)[0])
    at_bound = "upper" if raw >= b["upper"] else "lower" if raw <= b["lower"] else None
    return {"pce": pce, "score": round(score, 6), "log10_lr": round(value, 3), "at_bound": at_bound,
            "verbal": verbal(value)}


def apply_calibration(records: Sequence[dict[str, Any]], calibration: Calibration) -> list[dict[str, Any]]:
    """One evidence record per analysed image: for each comparable camera its PCE, score, bounded log10 LR,
    whether it sits at an ELUB bound and its verbal equivalent; the image's conditions and, when they fall
    outside those the calibration was fitted on, the reasons (``within_calibration`` false). The threshold
    decision is repeated from the record, unchanged. Error records get no evidence record."""
    out = []
    for r in records:
        if is_error(r) or not isinstance(r.get("pce"), dict):
            continue
        cond = conditions_of(r)
        fitted = calibration.kinds.get(cond["kind"])
        scores = r["pce"].get("scores") or {}
        reasons = [] if fitted else [f"no calibration for {cond['kind']} images (calibrated: "
                                     f"{', '.join(calibration.kinds) or 'none'}): no LR"]
        if fitted:
            matches = {s.get("match") for s in scores.values()} or {None}
            for m in sorted(matches, key=str):
                reasons += [x for x in outside_reasons(cond, fitted["conditions"], m) if x not in reasons]
        out.append({"path": r["path"], "sha256": r.get("sha256"), "calibration_sha256": calibration.sha256,
                    "conditions": cond,
                    "within_calibration": not reasons, "outside": reasons,
                    "decision": r["pce"].get("decision"), "best": r["pce"].get("best"),
                    "cameras": {cam: _camera_lr(s.get("pce"), fitted) for cam, s in scores.items()}})
    return out


def evidence_document(records: Sequence[dict[str, Any]], calibration: Calibration) -> dict[str, Any]:
    """The JSON document ``RUN/evidence.json``: the calibration used (path, SHA-256, propositions, scale) and
    :func:`apply_calibration`'s records."""
    data = calibration.data
    return {"format": "camid-evidence", "version": 1,
            "calibration": {"path": calibration.path, "sha256": calibration.sha256,
                            "hypotheses": data.get("hypotheses"), "score": data.get("score"),
                            "calibrator": data.get("calibrator"),
                            "bounds": {k: v["bounds"] for k, v in calibration.kinds.items()}},
            "verbal_scale": VERBAL_SCALE_NAME,
            "images": apply_calibration(records, calibration)}

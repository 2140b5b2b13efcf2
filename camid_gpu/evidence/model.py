"""A calibration's stored score-to-LR models: evaluated here, and checked here before any image is read.

A model is plain numbers (never a pickle): ``logistic`` (log10 LR = intercept + slope x score, slope > 0) or
``table`` (linear interpolation of (score, log10 LR), constant beyond its ends, non-decreasing). Every model
a calibrator stores goes through :func:`monotone` (pool-adjacent-violators), so that a larger score never
gives a smaller LR (a KDE fitted across a gap in the scores dips between the populations; its table is made
non-decreasing before it is stored). :func:`check_calibration` validates a whole calibration document when it
is loaded: the types, finite numbers, ordered bounds, a model non-decreasing in the score, the conditions
each model was fitted on. A calibration edited in any of these ways is refused, naming the file and the field.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from camid_gpu.config import is_finite_number
from camid_gpu.errors import CamidError
from camid_gpu.evidence.score import SCORE_NAME, SEARCHES

FORMAT, VERSION = "camid-calibration", 2
#: largest |log10 LR| a model or bound may hold (isotonic fits give infinities at their ends: stored clipped
#: here; the ELUB bounds are always much narrower)
TABLE_CLIP = 12.0
#: largest |intercept| or slope of a stored logistic model (a fitted one is of order 1 to 100)
_MAX_COEFFICIENT = 1e6


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


def monotone(values: Any) -> np.ndarray:
    """The non-decreasing sequence nearest to ``values`` in least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in np.asarray(values, float):
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, n2 = blocks.pop()
            m1, n1 = blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    return np.concatenate([np.full(int(n), m) for m, n in blocks]) if blocks else np.zeros(0)


class _Checker:
    def __init__(self, file: str):
        self.file = file

    def fail(self, field: str, problem: str) -> None:
        raise CamidError(f"{self.file}: field {field}: {problem}; the calibration is refused (make it again with "
                         f"camid calibrate)")

    def number(self, value: Any, field: str, limit: float = TABLE_CLIP) -> float:
        if not is_finite_number(value):
            self.fail(field, f"{value!r} is not a finite number")
        if abs(float(value)) > limit:
            self.fail(field, f"{value!r} is beyond the plausible +-{limit:g}")
        return float(value)

    def numbers(self, value: Any, field: str, limit: float) -> np.ndarray:
        if not isinstance(value, list) or len(value) < 2:
            self.fail(field, "a list of at least two numbers is needed")
        return np.array([self.number(v, f"{field}[{i}]", limit) for i, v in enumerate(value)])

    def interval(self, value: Any, field: str, optional: bool = False) -> None:
        if value is None and optional:
            return
        if not isinstance(value, list) or len(value) != 2:
            self.fail(field, f"{value!r} is not a [lowest, highest] pair")
        lo, hi = (self.number(v, field, 1e12) for v in value)
        if lo > hi:
            self.fail(field, f"lowest {lo:g} above highest {hi:g}")

    def text(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(field, f"{value!r} is not a text")
        return value

    def mapping(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, f"{type(value).__name__} where an object is needed")
        return value


def _check_model(c: _Checker, model: Any, field: str) -> None:
    model = c.mapping(model, field)
    kind = model.get("type")
    if kind == "logistic":
        c.number(model.get("intercept"), f"{field}.intercept", _MAX_COEFFICIENT)
        slope = c.number(model.get("slope"), f"{field}.slope", _MAX_COEFFICIENT)
        if slope <= 0:
            c.fail(f"{field}.slope", f"{slope:g}: the LR must grow with the score (a positive slope)")
    elif kind == "table":
        score = c.numbers(model.get("score"), f"{field}.score", 1e6)
        llr = c.numbers(model.get("log10_lr"), f"{field}.log10_lr", TABLE_CLIP)
        if score.size != llr.size:
            c.fail(field, f"{score.size} scores but {llr.size} log10 LRs")
        if np.any(np.diff(score) <= 0):
            c.fail(f"{field}.score", "not strictly increasing")
        if np.any(np.diff(llr) < 0):
            c.fail(f"{field}.log10_lr", "decreases as the score grows: a model must be non-decreasing in the score")
    else:
        c.fail(f"{field}.type", f"{kind!r} is not a model type (logistic or table)")


def _check_conditions(c: _Checker, cond: Any, field: str) -> None:
    cond = c.mapping(cond, field)
    for key in ("short_side", "long_side", "compared_short", "compared_long", "rotations"):
        c.interval(cond.get(key), f"{field}.{key}")
    c.interval(cond.get("positions"), f"{field}.positions", optional=True)
    c.interval(cond.get("jpeg_quality"), f"{field}.jpeg_quality", optional=True)
    for key in ("formats", "geometries"):
        values = cond.get(key)
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            c.fail(f"{field}.{key}", f"{values!r} is not a list of names")
    clips = cond.get("clips")
    if not isinstance(clips, list) or not all(isinstance(v, list) and len(v) == 2 and all(
            is_finite_number(x) and x > 0 for x in v) for v in clips):
        c.fail(f"{field}.clips", f"{clips!r} is not a list of [rows, columns]")


def check_calibration(data: Any, file: str) -> dict[str, Any]:
    """``data`` (a parsed ``calibration.json``) when it is a calibration this camid can use; else
    :class:`CamidError` naming ``file`` and the first field that is wrong."""
    c = _Checker(file)
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        found = (data.get("format"), data.get("version")) if isinstance(data, dict) else type(data).__name__
        raise CamidError(f"{file}: not a camid calibration of version {VERSION} (found {found!r}); a calibration "
                         f"of an older camid (fitted on the PCE, not the search-corrected score) must be made "
                         f"again with camid calibrate")
    score = c.mapping(data.get("score"), "score")
    if score.get("name") != SCORE_NAME:
        c.fail("score.name", f"{score.get('name')!r} is not the score this camid computes ({SCORE_NAME})")
    hyp = c.mapping(data.get("hypotheses"), "hypotheses")
    for key in ("hp", "hd", "different_source"):
        c.text(hyp.get(key), f"hypotheses.{key}")
    source = c.mapping(data.get("data"), "data")
    if not isinstance(source.get("simulated"), bool):
        c.fail("data.simulated", f"{source.get('simulated')!r} is not true or false")
    if not isinstance(source.get("cameras"), list):
        c.fail("data.cameras", "not a list")
    models = c.mapping(data.get("models"), "models")
    if not models:
        c.fail("models", "no model")
    for name, entry in models.items():
        field = f"models[{name!r}]"
        entry = c.mapping(entry, field)
        c.text(entry.get("kind"), f"{field}.kind")
        if entry.get("search") not in SEARCHES:
            c.fail(f"{field}.search", f"{entry.get('search')!r} is not one of {', '.join(SEARCHES)}")
        _check_model(c, entry.get("model"), f"{field}.model")
        bounds = c.mapping(entry.get("bounds"), f"{field}.bounds")
        lower = c.number(bounds.get("lower"), f"{field}.bounds.lower")
        upper = c.number(bounds.get("upper"), f"{field}.bounds.upper")
        if not lower <= 0.0 <= upper:
            c.fail(f"{field}.bounds", f"lower {lower:g} and upper {upper:g} must hold 0 between them, in order")
        _check_conditions(c, entry.get("conditions"), f"{field}.conditions")
    return data

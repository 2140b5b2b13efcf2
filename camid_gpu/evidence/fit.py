"""``camid calibrate``: a score-to-LR model per image kind and search, fitted with ``lir``, bounded and validated.

For each image kind (flat, natural) and search (:mod:`.score`: aligned, crop, scale) the same-source pairs (label 1) and the different-source pairs of the
chosen population (label 0: ``all`` other cameras, or only ``same-model`` ones) of :mod:`.pairs` are fitted
with one of lir's calibrators (logistic regression by default, with balanced class weights so the LR does not
depend on how many pairs of each kind there were; KDE; isotonic/PAV; a table model is made non-decreasing by
:func:`~camid_gpu.evidence.model.monotone` before it is stored). The LR is bounded by the empirical lower
and upper bounds (ELUB, Vergeer et al., Sci. Justice 56 (2016) 482-491) the fitted data support.

Validation holds one camera out at a time: the model and its bounds are fitted on the pairs that involve
neither the held-out camera's images nor its fingerprint, and applied to the pairs of its images. Every pair is
scored once, by a model that never saw that camera. From those LRs: Cllr, Cllr-min (after PAV), the rates of
misleading evidence in both directions (per population), the Tippett, ECE and PAV curves.

``lir`` (and its dependencies: scikit-learn, pandas, ...) is the ``evidence`` extra, imported only here.
"""
from __future__ import annotations

import importlib.metadata
import types
from typing import Any, Sequence

import numpy as np

from camid_gpu import config as cfg
from camid_gpu._shared.optional import import_optional
from camid_gpu._version import __version__
from camid_gpu.errors import CamidError
from camid_gpu.evidence.apply import VERBAL_SCALE_NAME
from camid_gpu.evidence.conditions import image_reasons, pair_reasons, ranges_of
from camid_gpu.evidence.model import FORMAT, TABLE_CLIP, VERSION, bounded, llr_of_model, monotone
from camid_gpu.evidence.pairs import DIFFERENT_SOURCE, SAME_MODEL, Pair, RunPairs
from camid_gpu.evidence.score import SCORE_NAME, SEARCHES
from camid_gpu.provenance import utc_now

_TABLE_CLIP = TABLE_CLIP
#: prior log10 odds of the ECE curves
_ECE_PRIOR_LOG_ODDS = np.round(np.arange(-3.0, 3.0001, 0.1), 2)


class CalibrationDataError(CamidError):
    """Too few pairs (or cameras) to fit or validate a calibration; the message says how many are needed."""


def _lir() -> Any:
    import_optional("lir", "evidence", "camid calibrate (likelihood-ratio calibration)")
    import lir.algorithms.bayeserror as bayeserror
    import lir.algorithms.isotonic_regression as isotonic
    import lir.algorithms.kde as kde
    import lir.algorithms.logistic_regression as logistic
    import lir.data.models as models
    import lir.metrics as metrics

    return types.SimpleNamespace(bayeserror=bayeserror, isotonic=isotonic, kde=kde, logistic=logistic, models=models,
                                 metrics=metrics)


def lir_version() -> str:
    try:
        return importlib.metadata.version("lir")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def fit_model(scores: np.ndarray, labels: np.ndarray, calibrator: str) -> dict[str, Any]:
    """The stored model (:func:`camid_gpu.evidence.apply.llr_of_model`) of a lir calibrator fitted on scores."""
    lir = _lir()
    if calibrator == "logistic":
        fitted = lir.logistic.LogitCalibrator().fit(scores, labels)
        ln10 = np.log(10.0)
        return {"type": "logistic", "calibrator": "lir LogitCalibrator (balanced class weights)",
                "intercept": float(fitted._logit.intercept_[0] / ln10), "slope": float(fitted._logit.coef_[0, 0] / ln10)}
    grid = np.linspace(0.0, float(scores.max()) * 1.25 + 0.5, 401)
    if calibrator == "kde":
        fitted = lir.kde.KDECalibrator(bandwidth="silverman").fit(scores, labels)
        name = "lir KDECalibrator (Silverman bandwidth)"
    elif calibrator == "isotonic":
        fitted = lir.isotonic.IsotonicCalibrator(add_misleading=1).fit(scores, labels)
        name = "lir IsotonicCalibrator (PAV, one misleading pair added each side)"
    else:
        raise ValueError(f"calibrator must be one of {', '.join(cfg.CALIBRATORS)}, got {calibrator!r}")
    llrs = np.asarray(fitted.transform(grid), float)
    defined = ~np.isnan(llrs)
    if not defined.all():  # a NaN (no data near that score): refused rather than guessed
        raise CalibrationDataError(f"the {calibrator} fit gives no LR at scores "
                                   f"{', '.join(f'{g:.2f}' for g in grid[~defined][:3])}; use --calibrator logistic")
    llrs = monotone(np.clip(llrs, -_TABLE_CLIP, _TABLE_CLIP))  # never falls as the score grows (a KDE may)
    return {"type": "table", "calibrator": name + ", made non-decreasing (pool adjacent violators)",
            "score": np.round(grid, 6).tolist(), "log10_lr": np.round(llrs, 6).tolist()}


def elub_bounds(llrs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    lower, upper = _lir().bayeserror.elub(np.array(llrs, float), np.asarray(labels), add_misleading=1)
    return {"lower": float(lower), "upper": float(upper),
            "method": "ELUB (empirical lower and upper bound; Vergeer et al. 2016), lir.algorithms.bayeserror.elub"}


def _arrays(pairs: Sequence[Pair]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([p.score for p in pairs], float), np.array([1 if p.same_source else 0 for p in pairs], int))


def fit_bounded(pairs: Sequence[Pair], calibrator: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, ELUB bounds) fitted on pairs."""
    scores, labels = _arrays(pairs)
    model = fit_model(scores, labels, calibrator)
    return model, elub_bounds(llr_of_model(model, scores), labels)


def cross_validate(pairs: Sequence[Pair], calibrator: str) -> dict[str, Any]:
    """Log10 LRs of every pair from a model fitted with its image's camera held out (see the module docstring)."""
    llrs, labels, populations, folds = [], [], [], []
    for cam in sorted({p.image_camera for p in pairs}):
        train = [p for p in pairs if p.image_camera != cam and p.camera != cam]
        test = [p for p in pairs if p.image_camera == cam]
        _, y = _arrays(train)
        if y.sum() < 2 or (1 - y).sum() < 2:
            folds.append({"camera": cam, "tested": 0, "skipped": "too few pairs of each kind left to fit on"})
            continue
        model, bounds = fit_bounded(train, calibrator)
        scores, y_test = _arrays(test)
        llrs += bounded(llr_of_model(model, scores), bounds).tolist()
        labels += y_test.tolist()
        populations += [p.population for p in test]
        folds.append({"camera": cam, "tested": len(test), "bounds": [bounds["lower"], bounds["upper"]]})
    return {"llrs": llrs, "labels": labels, "populations": populations, "folds": folds}


def validation_figures(llrs: Sequence[float], labels: Sequence[int], populations: Sequence[str]) -> dict[str, Any]:
    """Cllr, Cllr-min, rates of misleading evidence (per population too), the PAV-transformed LRs and the ECE
    curves of validation LRs."""
    lir = _lir()
    x, y = np.asarray(llrs, float), np.asarray(labels, int)
    if y.sum() == 0 or (1 - y).sum() == 0:
        raise CalibrationDataError("the validation left no same-source or no different-source pair")
    data = lir.models.LLRData(features=x, labels=y)
    pav = np.clip(lir.isotonic.IsotonicCalibrator().fit_transform(x, y), -_TABLE_CLIP, _TABLE_CLIP)
    pops = np.asarray(populations)
    misleading = {"same-source (LR < 1)": float(np.mean(x[y == 1] < 0))}
    for pop in DIFFERENT_SOURCE:
        sel = (y == 0) & (pops == pop)
        if sel.any():
            misleading[f"{pop} (LR > 1)"] = float(np.mean(x[sel] > 0))
    return {"pairs": int(y.size), "same_source": int(y.sum()), "different_source": int((1 - y).sum()),
            "cllr": float(lir.metrics.cllr(data)), "cllr_min": float(lir.metrics.cllr_min(data)),
            "rate_misleading_same_source": float(np.mean(x[y == 1] < 0)),
            "rate_misleading_different_source": float(np.mean(x[y == 0] > 0)),
            "misleading_by_population": misleading,
            "strongest_misleading": {"same_source": float(x[y == 1].min()), "different_source": float(x[y == 0].max())},
            "llrs": np.round(x, 3).tolist(), "labels": y.tolist(), "populations": list(populations),
            "pav_llrs": np.round(pav, 3).tolist(), "ece": ece_curves(x, y, pav)}


def ece_curves(llrs: np.ndarray, labels: np.ndarray, pav: np.ndarray) -> dict[str, Any]:
    """Empirical cross-entropy (Ramos) of the LRs, of their PAV transform and of LR = 1, per prior log10 odds."""
    def ece(x: np.ndarray) -> list[float]:
        out = []
        for lo in _ECE_PRIOR_LOG_ODDS:
            p = 1.0 / (1.0 + 10.0 ** -float(lo))
            post1 = 1.0 / (1.0 + 10.0 ** -(x[labels == 1] + lo))   # P(Hp | LR) of same-source pairs
            post0 = 1.0 / (1.0 + 10.0 ** (x[labels == 0] + lo))    # P(Hd | LR) of different-source pairs
            with np.errstate(divide="ignore"):
                out.append(float(-p * np.mean(np.log2(post1)) - (1 - p) * np.mean(np.log2(post0))))
        return [round(v, 5) if np.isfinite(v) else None for v in out]

    return {"prior_log10_odds": _ECE_PRIOR_LOG_ODDS.tolist(), "lr": ece(llrs), "pav": ece(pav),
            "neutral": ece(np.zeros_like(llrs))}


def _select(pairs: Sequence[Pair], kind: str, search: str, different_source: str) -> list[Pair]:
    keep = (SAME_MODEL,) if different_source == "same-model" else DIFFERENT_SOURCE
    return [p for p in pairs if p.kind == kind and p.search == search and (p.same_source or p.population in keep)]


def _shortfall(name: str, selected: Sequence[Pair]) -> list[str]:
    same = sum(p.same_source for p in selected)
    diff = len(selected) - same
    cams = len({p.image_camera for p in selected})
    need = []
    if same < cfg.CALIBRATION_MIN_SAME_SOURCE:
        need.append(f"{same} same-source pairs, at least {cfg.CALIBRATION_MIN_SAME_SOURCE} needed")
    if diff < cfg.CALIBRATION_MIN_DIFFERENT_SOURCE:
        need.append(f"{diff} different-source pairs, at least {cfg.CALIBRATION_MIN_DIFFERENT_SOURCE} needed")
    if cams < cfg.CALIBRATION_MIN_CAMERAS:
        need.append(f"{cams} cameras with images, at least {cfg.CALIBRATION_MIN_CAMERAS} needed (each is held out "
                    f"in turn to validate)")
    return [f"{name}: {', '.join(need)}"] if need else []


def _model_entry(data: RunPairs, kind: str, search: str, pairs: list[Pair], calibrator: str,
                 matched_sizes: Any) -> dict[str, Any]:
    model, bounds = fit_bounded(pairs, calibrator)
    if model["type"] == "logistic" and model["slope"] <= 0:
        raise CalibrationDataError(f"{kind} {search}: the fitted LR does not grow with the score (slope "
                                   f"{model['slope']:.3g}); the score does not separate the populations in these data")
    cv = cross_validate(pairs, calibrator)
    images = sorted({p.sha256 for p in pairs})
    return {
        "kind": kind, "search": search,
        "sizes": {"same-source": sum(p.same_source for p in pairs),
                  **{pop: sum(p.population == pop for p in pairs) for pop in DIFFERENT_SOURCE},
                  "images": len(images), "cameras": len({p.image_camera for p in pairs})},
        "model": model, "bounds": bounds,
        "conditions": ranges_of([data.conditions[s] for s in images], [p.condition for p in pairs], matched_sizes),
        "validation": {"method": "leave one camera out: each camera's image pairs scored by a model (and bounds) "
                                 "fitted without any pair of that camera's images or fingerprint",
                       "folds": cv["folds"], **validation_figures(cv["llrs"], cv["labels"], cv["populations"])}}


def calibrate(data: RunPairs, calibrator: str = "logistic", different_source: str = "all",
              kinds: Sequence[str] | None = None, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The calibration document (``calibration.json``) of the pairs of ``data``: one model per image kind and
    search that has enough pairs (the others are listed under ``not_calibrated`` with their shortfall); raises
    :class:`CalibrationDataError` naming each shortfall when no model can be fitted, or when a kind asked for
    with ``kinds`` has too few pairs. ``source``: how the pairs were made (``simulated``, ``assumptions``, ...)."""
    if calibrator not in cfg.CALIBRATORS:
        raise ValueError(f"--calibrator must be one of {', '.join(cfg.CALIBRATORS)}, got {calibrator!r}")
    if different_source not in cfg.DIFFERENT_SOURCE_CHOICES:
        raise ValueError(f"--different-source must be one of {', '.join(cfg.DIFFERENT_SOURCE_CHOICES)}")
    source = dict(source or {"from": "camid evaluate runs", "simulated": False})
    asked = list(kinds) if kinds else None
    kinds = asked or sorted({p.kind for p in data.pairs})
    groups = {(k, s): _select(data.pairs, k, s, different_source) for k in kinds for s in SEARCHES}
    groups = {key: pairs for key, pairs in groups.items() if pairs or key[1] == "aligned"}
    short = {key: _shortfall(f"{key[0]} {key[1]}", pairs) for key, pairs in groups.items()}
    fit_keys = [key for key in groups if not short[key]]
    missing = [k for k in (asked or []) if not any(key[0] == k for key in fit_keys)]
    if not fit_keys or missing:
        raise CalibrationDataError("too few pairs to calibrate: " + "; ".join(
            s for key, v in short.items() for s in v if not fit_keys or key[0] in missing)
            + " (add evaluate runs with more cameras or images, or calibrate fewer kinds with --kind)")
    out = {f"{k} {s}": _model_entry(data, k, s, groups[(k, s)], calibrator, source.get("matched_sizes"))
           for k, s in fit_keys}
    hd = ("another camera of the same model as the questioned camera" if different_source == "same-model"
          else "another camera (cameras of the same model included)")
    return {"format": FORMAT, "version": VERSION, "created": utc_now(),
            "software": {"camid_gpu": __version__, "lir": lir_version()},
            "score": {"name": SCORE_NAME, "method": "pce", "from": "the search-corrected log10 P_FA of each "
                      "comparable (image, camera) pair as the run computed it (camid_gpu.evidence.score)"},
            "hypotheses": {"hp": "the questioned image was taken by the camera of the fingerprint",
                           "hd": f"the questioned image was taken by {hd}", "different_source": different_source},
            "calibrator": calibrator, "verbal_scale": VERBAL_SCALE_NAME,
            "minimum": {"same_source": cfg.CALIBRATION_MIN_SAME_SOURCE,
                        "different_source": cfg.CALIBRATION_MIN_DIFFERENT_SOURCE, "cameras": cfg.CALIBRATION_MIN_CAMERAS},
            "data": {**source, "runs": data.runs, "duplicate_pairs_dropped": data.duplicates,
                     "cameras": sorted({p.image_camera for p in data.pairs} | {p.camera for p in data.pairs})},
            "models": out,
            "not_calibrated": [s for key, v in short.items() for s in v if key not in fit_keys]}


def validate_on(calibration: Any, run_dirs: Sequence[str], models: dict[str, str] | None = None) -> dict[str, Any]:
    """Validation figures of a calibration (:class:`camid_gpu.evidence.apply.Calibration`) on other runs, whose
    cameras must all differ from those it was fitted on (a camera the model saw would flatter it)."""
    from camid_gpu.evidence.pairs import read_pairs

    data = read_pairs(run_dirs, models)
    fitted_on = set(calibration.data["data"]["cameras"])
    seen = sorted({p.image_camera for p in data.pairs} & fitted_on)
    if seen:
        raise CalibrationDataError(f"{len(seen)} camera(s) of these runs were used to fit the calibration ("
                                   f"{', '.join(seen[:3])}{', ...' if len(seen) > 3 else ''}); validate on other "
                                   f"cameras only")
    out = {}
    for name, fitted in calibration.models.items():
        chosen = _select(data.pairs, fitted["kind"], fitted["search"], calibration.data["hypotheses"]["different_source"])
        # only the pairs the calibration would give an LR: inside its conditions (the others are counted)
        pairs = [p for p in chosen if not image_reasons(data.conditions[p.sha256], fitted["conditions"])
                 and not pair_reasons(p.condition, fitted["conditions"])]
        if not pairs:
            continue
        scores, labels = _arrays(pairs)
        llrs = bounded(llr_of_model(fitted["model"], scores), fitted["bounds"])
        out[name] = {"bounds": fitted["bounds"], "outside_left_out": len(chosen) - len(pairs),
                     "validation": validation_figures(llrs, labels, [p.population for p in pairs])}
    if not out:
        raise CalibrationDataError("these runs hold no pair within the kinds, searches and conditions the "
                                   f"calibration covers ({', '.join(calibration.models)})")
    return out

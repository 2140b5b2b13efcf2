"""Evaluation of identification results against ground truth: accuracy, confusion, ROC, EER, tables.

Input: per-image result records (``camid_gpu.pipeline.identify``) with a ``truth`` camera. Output: a JSON-ready
dict with top-level keys ``pce`` and ``mahalanobis``, each with ``accuracy`` (fraction 0..1; ties and
"no camera" count as wrong), ``per_kind`` (flat, natural), ``confusion`` and ``images``; PCE adds
ROC AUC, EER and FAR/FRR at its threshold; Mahalanobis adds ties, per-camera membership and the
effectiveness rate (the paper's Tables 7-12).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from camid_gpu.config import PCE_THRESHOLD
from camid_gpu.io.listing import printable
from camid_gpu.mahalanobis.results import summarise_diagnostics
from camid_gpu.pipeline.records import ImageRecord, error_of, is_error, truth_of
from camid_gpu.prnu.decision import exceeds

NONE_LABEL = "(none)"
TIE_LABEL = "(tie)"
#: prediction of an image that no fingerprint's geometry fits (distinct from "(none)": below threshold)
NOT_COMPARABLE_LABEL = "(not comparable)"
#: a cell of a camera that an image is not comparable with (no score), in text tables
NOT_COMPARABLE_CELL = "n/c"


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, Any]:
    """ROC of scores (higher = same camera): AUC (Mann-Whitney, ties count half), EER, and the curve."""
    genuine, impostor = np.asarray(genuine, float), np.asarray(impostor, float)
    if genuine.size == 0 or impostor.size == 0:
        return {"auc": None, "eer": None, "eer_threshold": None, "far": [], "frr": [], "thresholds": []}
    allv = np.concatenate([genuine, impostor])
    ranks = _average_ranks(allv)
    auc = (ranks[: genuine.size].sum() - genuine.size * (genuine.size + 1) / 2) / (genuine.size * impostor.size)
    thresholds = np.unique(allv)
    far = np.array([(impostor >= t).mean() for t in thresholds])
    frr = np.array([(genuine < t).mean() for t in thresholds])
    k = int(np.argmin(np.abs(far - frr)))
    return {"auc": float(auc), "eer": float((far[k] + frr[k]) / 2), "eer_threshold": float(thresholds[k]),
            "far": far.tolist(), "frr": frr.tolist(), "thresholds": thresholds.tolist()}


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    sorted_v = values[order]
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def confusion(truths: Sequence[str], predictions: Sequence[str], cameras: Sequence[str]) -> dict[str, Any]:
    """Confusion counts, rows = true camera, columns = cameras plus '(none)', '(tie)' and '(not comparable)'."""
    columns = list(cameras) + [NONE_LABEL, TIE_LABEL, NOT_COMPARABLE_LABEL]
    matrix = {t: {c: 0 for c in columns} for t in cameras}
    for t, p in zip(truths, predictions):
        if t in matrix:
            matrix[t][p if p in matrix[t] else NONE_LABEL] += 1
    return {"rows": list(cameras), "columns": columns, "counts": [[matrix[t][c] for c in columns] for t in cameras]}


def _pce_prediction(record: ImageRecord) -> str:
    if not record["pce"]["scores"]:
        return NOT_COMPARABLE_LABEL
    return record["pce"]["decision"] or NONE_LABEL


def _maha_prediction(record: ImageRecord) -> str:
    if not record["mahalanobis"].get("membership"):
        return NOT_COMPARABLE_LABEL
    assoc = record["mahalanobis"]["associated"]
    if not assoc:  # no association (a single camera of the image's geometry: no vote), which is not a tie
        return NONE_LABEL
    return assoc[0] if len(assoc) == 1 else TIE_LABEL


def _not_comparable_summary(records: Sequence[dict[str, Any]], method: str) -> dict[str, Any]:
    """How many images and (image, camera) pairs were not comparable (other geometry), and how many of
    those pairs were the image's own camera."""
    pairs = [(r, cam) for r in records for cam in (r[method].get("not_comparable") or {})]
    return {"pairs": len(pairs), "own_camera_pairs": sum(1 for r, cam in pairs if cam == r["truth"]),
            "images_with_no_comparable_camera": sum(1 for r in records
                                                    if _prediction_of(method)(r) == NOT_COMPARABLE_LABEL)}


def _prediction_of(method: str):
    return _pce_prediction if method == "pce" else _maha_prediction


def summarise(records: Sequence[dict[str, Any]], cameras: Sequence[str], methods: Sequence[str],
              pce_threshold: float = PCE_THRESHOLD) -> dict[str, Any]:
    """Evaluation of records that carry ``truth`` (error records are counted separately)."""
    ok = [r for r in records if not is_error(r) and truth_of(r)]
    failed = [(r["path"], error_of(r)) for r in records if is_error(r)]
    out: dict[str, Any] = {"cameras": list(cameras), "images_total": len(records),
                           "images_with_errors": len(failed),
                           "errors": [{"path": path, **error} for path, error in failed]}
    if "pce" in methods:
        out["pce"] = _method_summary(ok, cameras, _pce_prediction)
        genuine = [r["pce"]["scores"][r["truth"]]["pce"] for r in ok if r["truth"] in r["pce"]["scores"]]
        impostor = [s["pce"] for r in ok for cam, s in r["pce"]["scores"].items() if cam != r["truth"]]
        genuine = [g for g in genuine if g is not None]
        impostor = [i for i in impostor if i is not None]
        roc = roc_curve(np.array(genuine), np.array(impostor))
        out["pce"]["roc"] = {k: roc[k] for k in ("auc", "eer", "eer_threshold")}
        out["pce"]["roc_curve"] = {k: roc[k] for k in ("far", "frr", "thresholds")}
        out["pce"]["threshold"] = pce_threshold
        out["pce"]["far_at_threshold"] = float(np.mean(exceeds(np.array(impostor), pce_threshold))) if impostor else None
        out["pce"]["frr_at_threshold"] = float(np.mean(~exceeds(np.array(genuine), pce_threshold))) if genuine else None
        out["pce"]["genuine_pce"] = {"min": _stat(np.min, genuine), "median": _stat(np.median, genuine)}
        out["pce"]["impostor_pce"] = {"max": _stat(np.max, impostor), "median": _stat(np.median, impostor)}
        out["pce"]["not_comparable"] = _not_comparable_summary(ok, "pce")
    if "mahalanobis" in methods:
        m = _method_summary(ok, cameras, _maha_prediction)
        m["ties"] = sum(1 for r in ok if len(r["mahalanobis"]["associated"]) > 1)
        # None where the image was not comparable with the camera (see "comparable")
        m["membership_matrix"] = {"images": [r["path"] for r in ok], "cameras": list(cameras),
                                  "membership": [[r["mahalanobis"]["membership"].get(c) for c in cameras] for r in ok],
                                  "comparable": [[c in r["mahalanobis"]["membership"] for c in cameras] for r in ok]}
        m["not_comparable"] = _not_comparable_summary(ok, "mahalanobis")
        m["effectiveness"] = {}
        for cam in cameras:
            own = [r for r in ok if r["truth"] == cam]
            m["effectiveness"][cam] = {
                "images": len(own),
                "associated_alone": sum(1 for r in own if r["mahalanobis"]["associated"] == [cam]),
                "rate": (sum(1 for r in own if r["mahalanobis"]["associated"] == [cam]) / len(own)) if own else None,
                "mean_membership_own": _stat(np.mean, [r["mahalanobis"]["membership"][cam] for r in own
                                                       if r["mahalanobis"]["membership"].get(cam) is not None]),
            }
        m["diagnostics"] = summarise_diagnostics([r["mahalanobis"]["diagnostics"] for r in ok])
        out["mahalanobis"] = m
    return out


def _stat(func, values):
    return float(func(values)) if len(values) else None


def _method_summary(records: Sequence[ImageRecord], cameras: Sequence[str], predict) -> dict[str, Any]:
    def block(subset):
        preds = [predict(r) for r in subset]
        truths = [r["truth"] for r in subset]
        correct = sum(p == t for p, t in zip(preds, truths))
        return {"count": len(subset), "correct": correct,
                "accuracy": (correct / len(subset)) if subset else None,
                "confusion": confusion(truths, preds, cameras)}

    summary = block(records)
    summary["per_kind"] = {kind: block([r for r in records if r["kind"] == kind]) for kind in ("flat", "natural")}
    summary["images"] = [{"path": r["path"], "truth": r["truth"], "kind": r["kind"], "predicted": predict(r),
                          "correct": predict(r) == r["truth"]} for r in records]
    return summary


# ----------------------------------------------------------------------------------------------
# Text tables
# ----------------------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width text table; cells escaped by ``printable`` (a file name cannot fake a row)."""
    cells = [[printable(_fmt(v)) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(str(v).rjust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _short(path: str) -> str:
    """The last two path components (camera folder and file)."""
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def format_report(summary: dict[str, Any]) -> str:
    """Human-readable evaluation tables."""
    out = []
    if "pce" in summary:
        p = summary["pce"]
        out.append("PCE (primary decision): same camera when PCE > %g" % p["threshold"])
        out.append(table(["kind", "images", "correct", "accuracy"],
                         [[k, b["count"], b["correct"], b["accuracy"]] for k, b in
                          [("all", p)] + list(p["per_kind"].items())]))
        out.append(f"ROC AUC {_fmt(p['roc']['auc'])}  EER {_fmt(p['roc']['eer'])}  "
                   f"FAR@{p['threshold']:g} {_fmt(p['far_at_threshold'])}  FRR@{p['threshold']:g} "
                   f"{_fmt(p['frr_at_threshold'])}  genuine PCE min {_fmt(p['genuine_pce']['min'])}  "
                   f"impostor PCE max {_fmt(p['impostor_pce']['max'])}")
        nc = p.get("not_comparable") or {}
        if nc.get("pairs"):
            out.append(f"not comparable (other geometry; no score, not below threshold): {nc['pairs']} image-camera "
                       f"pairs, {nc['own_camera_pairs']} of them the image's own camera; "
                       f"{nc['images_with_no_comparable_camera']} image(s) with no comparable camera")
        out.append("confusion (rows: true camera)")
        c = p["confusion"]
        out.append(table(["true"] + c["columns"], [[r] + row for r, row in zip(c["rows"], c["counts"])]))
    if "mahalanobis" in summary:
        m = summary["mahalanobis"]
        out.append("")
        out.append("Mahalanobis 2-DOF (PeerJ CS 2024; reported beside PCE, weaker evidence): associated = highest "
                   "membership, ties count as wrong")
        out.append(table(["kind", "images", "correct", "accuracy"],
                         [[k, b["count"], b["correct"], b["accuracy"]] for k, b in
                          [("all", m)] + list(m["per_kind"].items())]) + f"\nties: {m['ties']}")
        out.append("effectiveness per camera")
        out.append(table(["camera", "images", "alone", "rate", "mean membership"],
                         [[cam, e["images"], e["associated_alone"], e["rate"], e["mean_membership_own"]]
                          for cam, e in m["effectiveness"].items()]))
        d = m["diagnostics"]
        if d.get("images"):
            out.append("what drove the votes (fraction of pairwise votes agreeing with the full 2-D vote; "
                       "0.5 = coin flip): intensity %.3f, PRNU %.3f; drivers per image: %s"
                       % (d["vote_agreement_with_full"]["intensity"], d["vote_agreement_with_full"]["prnu"],
                          ", ".join(f"{k} {v}" for k, v in d["driver_counts"].items())))
        mm = m["membership_matrix"]
        out.append("membership matrix, percent (the paper's Table 5)")
        comparable = mm.get("comparable") or [[True] * len(mm["cameras"]) for _ in mm["images"]]
        out.append(table(["image"] + mm["cameras"],
                         [[_short(p)] + [v if ok else NOT_COMPARABLE_CELL for v, ok in zip(row, flags)]
                          for p, row, flags in zip(mm["images"], mm["membership"], comparable)]))
        if (m.get("not_comparable") or {}).get("pairs"):
            out.append(f"{NOT_COMPARABLE_CELL} = not comparable (other geometry), left out of the votes")
        c = m["confusion"]
        out.append("confusion (rows: true camera)")
        out.append(table(["true"] + c["columns"], [[r] + row for r, row in zip(c["rows"], c["counts"])]))
    if summary.get("images_with_errors"):
        out.append("")
        out.append(f"{summary['images_with_errors']} file(s) with errors:")
        out.extend(f"  {printable(e['path'])}: {printable(e['reason'])}" for e in summary["errors"])
    return "\n".join(out)

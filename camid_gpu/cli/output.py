"""What the ``camid`` commands print and write besides the run folder: error lines, text tables, CSV."""
from __future__ import annotations

import os
import sys
from typing import Any, Sequence


def print_errors(errors: Sequence[dict[str, Any]]) -> None:
    for e in errors:
        print(f"camid: error: {e['path']}: {e['error']['reason']}", file=sys.stderr)


def write_csv(path: str, records: Sequence[dict[str, Any]]) -> None:
    """One row per image and camera. ``pce_status`` / ``mahalanobis_status``: "scored", or "not comparable"
    (another geometry: no score, no part in the decision; ``not_comparable_reason`` says why), never to be
    read as "below threshold"; crops add the ``offset`` found."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        w = csv.writer(handle)
        w.writerow(["path", "sha256", "camera", "pce", "ncc", "log10_p_fa", "pce_decision", "rotation",
                    "mahalanobis_membership", "mahalanobis_associated", "error", "pce_status", "mahalanobis_status",
                    "not_comparable_reason", "match", "offset"])
        for r in records:
            if r.get("error"):
                w.writerow([r["path"], "", "", "", "", "", "", "", "", "", r["error"]["reason"], "", "", "", "", ""])
                continue
            pce = r.get("pce") or {}
            maha = r.get("mahalanobis") or {}
            scores, membership = pce.get("scores", {}), maha.get("membership", {})
            refused = {**(maha.get("not_comparable") or {}), **(pce.get("not_comparable") or {})}
            cams = list(dict.fromkeys([*scores, *membership, *refused]))
            for cam in cams:
                s = scores.get(cam, {})
                status = lambda part, have: ("" if not part else "scored" if have else "not comparable")  # noqa: E731
                w.writerow([r["path"], r["sha256"], cam, s.get("pce"), s.get("ncc"), s.get("log10_p_fa"),
                            pce.get("decision"), s.get("rotation", r.get("rotation")), membership.get(cam),
                            ",".join(maha.get("associated", [])), "", status(pce, cam in scores),
                            status(maha, cam in membership), refused.get(cam, {}).get("reason", ""),
                            s.get("match", ""), "x".join(map(str, s["offset"])) if "offset" in s else ""])


def print_identification(records, cameras, methods) -> None:
    from camid_gpu.evaluate import table

    rows = []
    for r in records:
        if r.get("error"):
            rows.append([os.path.basename(r["path"]), "error", "-", "-", "-"])
            continue
        pce = r.get("pce")
        maha = r.get("mahalanobis")
        if pce and not pce.get("scores"):
            decision = "not comparable"
        else:
            decision = (pce["decision"] or "none") if pce else "-"
        rows.append([os.path.basename(r["path"]), decision,
                     pce["best_pce"] if pce else "-",
                     r.get("rotation", 0),
                     ",".join(maha["associated"]) if maha else "-"])
    print(table(["image", "PCE decision", "max PCE", "rotation", "Mahalanobis (beside PCE)"], rows))

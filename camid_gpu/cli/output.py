"""What the ``camid`` commands print and write besides the run folder: error lines, text tables, CSV."""
from __future__ import annotations

import os
import sys
from typing import Any, Sequence


def print_errors(errors: Sequence[dict[str, Any]]) -> None:
    for e in errors:
        print(f"camid: error: {e['path']}: {e['error']['reason']}", file=sys.stderr)


def write_csv(path: str, records: Sequence[dict[str, Any]]) -> None:
    import csv

    from camid_gpu._shared.files import atomic_write

    with atomic_write(path, "w") as handle:
        w = csv.writer(handle)
        w.writerow(["path", "sha256", "camera", "pce", "ncc", "log10_p_fa", "pce_decision", "rotation",
                    "mahalanobis_membership", "mahalanobis_associated", "error"])
        for r in records:
            if r.get("error"):
                w.writerow([r["path"], "", "", "", "", "", "", "", "", "", r["error"]["reason"]])
                continue
            pce = r.get("pce", {}).get("scores", {})
            maha = r.get("mahalanobis", {})
            cams = list(pce) or list(maha.get("membership", {}))
            for cam in cams:
                s = pce.get(cam, {})
                w.writerow([r["path"], r["sha256"], cam, s.get("pce"), s.get("ncc"), s.get("log10_p_fa"),
                            r.get("pce", {}).get("decision"), r.get("rotation"),
                            maha.get("membership", {}).get(cam), ",".join(maha.get("associated", [])), ""])


def print_identification(records, cameras, methods) -> None:
    from camid_gpu.evaluate import table

    rows = []
    for r in records:
        if r.get("error"):
            rows.append([os.path.basename(r["path"]), "error", "-", "-", "-"])
            continue
        pce = r.get("pce")
        maha = r.get("mahalanobis")
        rows.append([os.path.basename(r["path"]),
                     (pce["decision"] or "none") if pce else "-",
                     pce["best_pce"] if pce else "-",
                     r.get("rotation", 0),
                     ",".join(maha["associated"]) if maha else "-"])
    print(table(["image", "PCE decision", "max PCE", "rotation", "Mahalanobis (beside PCE)"], rows))

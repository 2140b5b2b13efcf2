"""What the ``camid`` commands print and write besides the run folder: error lines, text tables, CSV."""
from __future__ import annotations

import sys
from typing import Any, Sequence

from camid_gpu.io.listing import printable
from camid_gpu.pipeline.records import ImageRecord, error_of, is_error, mahalanobis_of, pce_of


def print_errors(errors: Sequence[dict[str, Any]]) -> None:
    """One line per file error on stderr; names and reasons escaped (a file name cannot fake a line)."""
    for e in errors:
        print(f"camid: error: {printable(e['path'])}: {printable(e['error']['reason'])}", file=sys.stderr)


def print_skipped(skipped: Sequence[dict[str, Any]]) -> None:
    """One line per file found under the inputs and not analysed, with the reason, on stderr."""
    for s in skipped:
        print(f"camid: skipped: {printable(s['path'])}: {printable(s['reason'])}", file=sys.stderr)


def write_csv(path: str, records: Sequence[ImageRecord]) -> None:
    """One row per image and camera (error records: one row with the reason), written atomically."""
    import csv

    from camid_gpu._shared.files import atomic_write

    with atomic_write(path, "w") as handle:
        w = csv.writer(handle)
        w.writerow(["path", "sha256", "camera", "pce", "ncc", "log10_p_fa", "pce_decision", "rotation",
                    "mahalanobis_membership", "mahalanobis_associated", "error"])
        for r in records:
            error = error_of(r)
            if error:
                w.writerow([printable(r["path"]), "", "", "", "", "", "", "", "", "", printable(error["reason"])])
                continue
            pce, maha = pce_of(r), mahalanobis_of(r)
            cams = list(pce["scores"]) if pce else list(maha["membership"]) if maha else []
            for cam in cams:
                s = pce["scores"][cam] if pce else None
                w.writerow([printable(r["path"]), r["sha256"], printable(cam), s["pce"] if s else None,
                            s["ncc"] if s else None, s["log10_p_fa"] if s else None, pce["decision"] if pce else None,
                            r["rotation"], maha["membership"][cam] if maha else None,
                            ",".join(maha["associated"]) if maha else "", s.get("error", "") if s else ""])


def print_identification(records: Sequence[ImageRecord], cameras, methods) -> None:
    from camid_gpu.evaluate import table

    rows = []
    for r in records:
        if is_error(r):
            rows.append([r["path"], "error", "-", "-", "-"])
            continue
        pce, maha = pce_of(r), mahalanobis_of(r)
        rows.append([r["path"],  # the full path; table() escapes every cell
                     (pce["decision"] or "none") if pce else "-",
                     pce["best_pce"] if pce else "-",
                     r["rotation"],
                     ",".join(maha["associated"]) if maha else "-"])
    print(table(["image", "PCE decision", "max PCE", "rotation", "Mahalanobis (beside PCE)"], rows))


def print_clusters(result, outdir: str) -> None:
    """Per group the pairs, the threshold and the links; per cluster its size; the totals."""
    for g in result["groups"]:
        t = g["threshold"]
        print(f"group {g['name']}: {g['images']} images, {g['image_pairs']} pairs, NCC threshold {t['ncc']:.4g} "
              f"(z {t['z']:.2f} x null spread {t['null_std']:.3g}, {t['null_source']}), PCE >= {t['pce']:.1f}; "
              f"{g['confirmed_pairs']} linked pairs")
    for c in result["clusters"]:
        print(f"{c['id']}: {c['size']} images ({c['group']})")
    print(f"{len(result['clusters'])} clusters, {len(result['unclustered'])} images unclustered; run folder: "
          f"{outdir} (clusters.json, clusters.csv, fingerprints/, report: camid report {outdir})")

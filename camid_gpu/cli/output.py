"""What the ``camid`` commands print and write besides the run folder: error lines, text tables, CSV."""
from __future__ import annotations

import sys
from typing import Any, Sequence

from camid_gpu.io.listing import printable
from camid_gpu.pipeline.records import ImageRecord, pce_of


def print_errors(errors: Sequence[dict[str, Any]]) -> None:
    """One line per file error on stderr; names and reasons escaped (a file name cannot fake a line)."""
    for e in errors:
        print(f"camid: error: {printable(e['path'])}: {printable(e['error']['reason'])}", file=sys.stderr)


def print_skipped(skipped: Sequence[dict[str, Any]]) -> None:
    """One line per file found under the inputs and not analysed, with the reason, on stderr."""
    for s in skipped:
        print(f"camid: skipped: {printable(s['path'])}: {printable(s['reason'])}", file=sys.stderr)


def print_not_comparable(records: Sequence[ImageRecord], cameras: int) -> int:
    """One note on stderr per image that no fingerprint's geometry fits (PCE compared it with nothing: not "below
    threshold"), with the first camera's reason; returns how many."""
    count = 0
    for r in records:
        pce = pce_of(r)
        if pce is None or pce.get("scores") or not pce.get("not_comparable"):
            continue
        count += 1
        first = next(iter(pce["not_comparable"].values()))
        print(f"camid: note: {printable(r['path'])}: not comparable with any of the {cameras} fingerprints (no "
              f"fingerprint of its geometry): {printable(first['reason'])}", file=sys.stderr)
    return count


def write_csv(path: str, records: Sequence[dict[str, Any]]) -> None:
    """One row per image and camera. ``pce_status`` / ``mahalanobis_status``: "scored", or "not comparable"
    (another geometry: no score, no part in the decision; ``not_comparable_reason`` says why), never to be
    read as "below threshold"; crops add the ``offset`` found. Text cells that a spreadsheet would run as a
    formula (starting with = + - @, tab, CR) get a leading ``'``."""
    from camid_gpu._shared.files import atomic_write
    from camid_gpu._shared.spreadsheet import SafeCsvWriter

    with atomic_write(path, "w") as handle:
        w = SafeCsvWriter(handle)  # a cell starting with = + - @ gets a leading ' (names are attacker-controlled)
        w.writerow(["path", "sha256", "camera", "pce", "ncc", "log10_p_fa", "pce_decision", "rotation",
                    "mahalanobis_membership", "mahalanobis_associated", "error", "pce_status", "mahalanobis_status",
                    "not_comparable_reason", "match", "offset"])
        for r in records:
            if r.get("error"):
                w.writerow([printable(r["path"]), "", "", "", "", "", "", "", "", "", printable(r["error"]["reason"]),
                            "", "", "", "", ""])
                continue
            pce = r.get("pce") or {}
            maha = r.get("mahalanobis") or {}
            scores, membership = pce.get("scores", {}), maha.get("membership", {})
            refused = {**(maha.get("not_comparable") or {}), **(pce.get("not_comparable") or {})}
            cams = list(dict.fromkeys([*scores, *membership, *refused]))
            for cam in cams:
                s = scores.get(cam, {})
                status = lambda part, have: ("" if not part else "scored" if have else "not comparable")  # noqa: E731
                w.writerow([printable(r["path"]), r["sha256"], printable(cam), s.get("pce"), s.get("ncc"),
                            s.get("log10_p_fa"), pce.get("decision"), s.get("rotation", r.get("rotation")),
                            membership.get(cam), ",".join(maha.get("associated", [])), "", status(pce, cam in scores),
                            status(maha, cam in membership), printable(refused.get(cam, {}).get("reason", "")),
                            s.get("match", ""), "x".join(map(str, s["offset"])) if "offset" in s else ""])


def print_clusters(result, outdir: str) -> None:
    """Per group the pairs, the threshold and the links; per cluster its size; the totals."""
    for g in result["groups"]:
        t = g["threshold"]
        print(f"group {g['name']}: {g['images']} images, {g['image_pairs']} pairs, NCC threshold {t['ncc']:.4g} "
              f"(z {t['z']:.2f} x null spread {t['null_std']:.3g}, {t['null_source']}), PCE >= {t['pce']:.1f}; "
              f"{g['confirmed_pairs']} linked pairs")
        r = g.get("refine_threshold")
        if r:  # the fingerprint merges and attachments: their own share of --pfa, over a bound fixed beforehand
            print(f"  refinement: NCC threshold {r['ncc']:.4g} (z {r['z']:.2f}), PCE >= {r['pce']:.1f}; "
                  f"{g['refine_rounds']} rounds")
    if result["groups"] and result["groups"][0].get("refine_threshold"):
        t, r = result["groups"][0]["threshold"], result["groups"][0]["refine_threshold"]
        print(f"--pfa {t['pfa']:g} for the whole run: pairs {t['stage_pfa']:.3g} over {t['tests']} comparisons "
              f"(alpha {t['alpha']:.3g}), refinement {r['stage_pfa']:.3g} over at most {r['tests']} "
              f"(alpha {r['alpha']:.3g})")
    for c in result["clusters"]:
        print(f"{c['id']}: {c['size']} images ({c['group']})")
    for paths in result.get("identical_files", []):
        print(f"note: byte-identical files (same SHA-256; their link is one image's evidence): "
              f"{', '.join(printable(p) for p in paths)}")
    for paths in result.get("same_pixels_files", []):
        print(f"note: files with the same decoded pixels (one photo in several containers; compared once, as one "
              f"image): {', '.join(printable(p) for p in paths)}")
    from camid_gpu.cluster.region import region_lines
    from camid_gpu.cluster.scene import scene_lines

    # the region auto chose; when little links, what was compared and what to try; the pairs of one scene
    for line in region_lines(result) + scene_lines(result):
        print(line)
    print(f"{len(result['clusters'])} clusters, {len(result['unclustered'])} images unclustered; run folder: "
          f"{outdir} (clusters.json, clusters.csv, fingerprints/, report: camid report {outdir})")

"""The outputs of a clustering run: ``clusters.json`` (clusters with members, SHA-256s and the evidence of every
link and merge; the same inputs and parameters give the same bytes), ``clusters.csv`` and the cluster
fingerprints (``fingerprints/<group>/``, a store ``camid identify`` accepts)."""
from __future__ import annotations

import json
import os
from typing import Any

from camid_gpu._shared.files import atomic_write
from camid_gpu.cluster.residuals import region_clip
from camid_gpu.io.listing import printable
from camid_gpu.store import CameraFingerprint, save_fingerprint, software_versions


FORMAT = "camid-clusters"


VERSION = 1


def _write_outputs(run_dir, records, by_group, groups, params, ctx, tests, timings, skipped,
                   copies: dict[str, str], refine_tests: int, region_choice: dict | None = None) -> dict[str, Any]:
    """``copies``: path of a byte-identical copy -> the path of the first file with its bytes (the one compared)."""
    copies_of: dict[str, list[str]] = {}
    for copy, first in copies.items():
        copies_of.setdefault(first, []).append(copy)
    clusters_out, unclustered = [], []
    cluster_of: dict[str, str] = {}
    number = 0
    for g in groups:
        name, recs = g["name"], by_group[g["name"]]
        ordered = sorted(g["final"], key=lambda c: (-len(c.members), c.images[0]))
        for c in ordered:
            number += 1
            cid = f"cluster-{number:03d}"
            members = sorted(c.members)
            fp = g["ops"].accumulate(members).fingerprint() if c.acc is None else c.acc.fingerprint()
            group = tuple(int(v) for v in name.split("x"))
            clip = region_clip(group, params.region)
            member_info = [{"path": recs[i]["path"], "sha256": recs[i]["sha256"],
                            "rotation": recs[i]["rotations"][k], "size": recs[i]["size"]} for i, k in members]
            store_fp = CameraFingerprint(
                camera=cid, methods=("pce",), arrays={"k": fp}, clips={"pce": clip}, source_shape=group,
                params=dict(params.fingerprint_params(), refs=len(members)),
                references=[{"path": m["path"], "abspath": os.path.abspath(m["path"]), "sha256": m["sha256"], "size": m["size"],
                             "pixels_sha256": recs[i].get("pixels_sha256")} for m, (i, _) in zip(member_info, members)],
                software=software_versions())
            fp_dir = os.path.join(run_dir, "fingerprints", name)
            meta = save_fingerprint(store_fp, fp_dir)
            index = {i for i, _ in members}
            links = [dict(l, a=recs[l["a"]]["path"], b=recs[l["b"]]["path"]) for l in g["links"]
                     if l["a"] in index and l["b"] in index]
            events = [_event_paths(e, recs) for e in c.events]
            # with portrait members only, the frame is known up to a half turn (see member_candidates)
            frame_known = any(m["rotation"] == 0 for m in member_info)
            clusters_out.append({"id": cid, "group": name, "size": len(members), "members": member_info,
                                 "frame_known": frame_known,
                                 "links": links, "events": events,
                                 "fingerprint": {"metadata": meta, "arrays": os.path.join(fp_dir, f"{cid}.npz")}})
            member_info += [dict(m, path=copy, identical_to=m["path"]) for m in list(member_info)
                            for copy in copies_of.get(m["path"], [])]
            clusters_out[-1]["copies"] = len(member_info) - len(members)
            for m in member_info:
                cluster_of[m["path"]] = cid
        for i in g["singles"]:
            unclustered.append({"path": recs[i]["path"], "sha256": recs[i]["sha256"], "group": name})
            unclustered += [dict(unclustered[-1], path=copy, identical_to=recs[i]["path"])
                            for copy in copies_of.get(recs[i]["path"], [])]
    groups_out = []
    for g in groups:
        t = g["threshold"]
        recs = by_group[g["name"]]
        groups_out.append({"name": g["name"], "images": len(recs), "region": recs[0]["region"],
                           "image_pairs": len(recs) * (len(recs) - 1) // 2,
                           "threshold": t.to_dict(), "refine_threshold": g["refine_threshold"].to_dict(),
                           "refine_bound": g["refine_bound"], "null": g["null"], "gram": g["gram_info"],
                           "candidate_pairs": len(g["links"]),
                           "confirmed_pairs": sum(link["confirmed"] for link in g["links"]),
                           "refine_rounds": g["rounds"], "same_scene": g["scene"].to_json(recs, g["sim"]),
                           "order": [r["path"] for r in recs]})
    errors = [r for r in records if r.get("error")]
    by_sha: dict[str, list[str]] = {}
    for r in records:
        if not r.get("error"):
            by_sha.setdefault(r["sha256"], []).append(r["path"])
    # byte-identical copies link with NCC 1: their link is one image's evidence, not two, so they are named; so are
    # files of other bytes with the same decoded pixels (one photo in several containers), folded the same way
    identical = [paths for paths in by_sha.values() if len(paths) > 1]
    result = {"format": FORMAT, "version": VERSION, "params": params.to_dict(), "comparisons": tests,
              "refine_comparisons": refine_tests,
              "backend": ctx.describe(),
              "groups": groups_out, "clusters": clusters_out, "unclustered": unclustered,
              "errors": [{"path": r["path"], "error": r["error"]} for r in errors], "skipped": skipped,
              "identical_files": identical, "same_pixels_files": _same_pixels(copies, identical), "region_choice": region_choice}
    # the same inputs and parameters give the same bytes: times go to the manifest, not here
    with atomic_write(os.path.join(run_dir, "clusters.json"), "w") as handle:
        json.dump(result, handle, indent=1, sort_keys=True, allow_nan=False)
        handle.write("\n")
    _write_csv(os.path.join(run_dir, "clusters.csv"), records, cluster_of)
    return dict(result, timings_s={k: round(v, 3) for k, v in timings.items()})


def _same_pixels(copies: dict[str, str], identical: list[list[str]]) -> list[list[str]]:
    """The groups of files folded for their decoded pixels (not their bytes): first file, then its copies."""
    same: dict[str, list[str]] = {}
    for copy, first in copies.items():
        if not any(copy in paths for paths in identical):
            same.setdefault(first, [first]).append(copy)
    return list(same.values())


def _event_paths(event: dict[str, Any], recs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(event)
    for key in ("members", "members_before", "merged"):
        if key in out:
            out[key] = [recs[i]["path"] for i in out[key]]
    if "image" in out:
        out["image"] = recs[out["image"]]["path"]
    return out


def _write_csv(path: str, records: list[dict[str, Any]], cluster_of: dict[str, str]) -> None:
    from camid_gpu._shared.spreadsheet import SafeCsvWriter

    # names escaped as on the terminal (a name that is not UTF-8 cannot be written raw), formulas neutralised
    with atomic_write(path, "w") as handle:
        w = SafeCsvWriter(handle)
        w.writerow(["path", "sha256", "group", "cluster", "error"])
        for r in records:
            if r.get("error"):
                w.writerow([printable(r["path"]), "", "", "", printable(r["error"]["reason"])])
            else:
                w.writerow([printable(r["path"]), r["sha256"], r["group"], cluster_of.get(r["path"], ""), ""])

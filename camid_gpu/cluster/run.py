"""A clustering run: residuals on the scheduler, the tiled Gram per geometry group, links, clusters, outputs.

Run folder ``RUN``::

    cluster-params.json       the parameters that shape the residuals (a resumed run must use the same)
    images.jsonl              one record per input (path, SHA-256, size, group, residual rows; or the error)
    residuals/<group>.f32     normalised residual rows of the group's region, float32, append-only
    gram/<group>.npy          the row Gram (NCC of every pair of rows), kept for incremental runs
    similarity/<group>.npy    image-level NCC matrix; <group>-linkage.npy the average-linkage tree
    clusters.json             clusters with members, SHA-256s and the evidence of every link and merge
    clusters.csv              one row per image: its cluster (or none)
    fingerprints/<group>/     the cluster fingerprints, a fingerprint store ``camid identify`` accepts
    manifest.json             provenance (inputs, outputs, parameters, software)

A geometry group holds the images of one sensor size (rows x columns, landscape; portrait images are
turned both ways, 90 and 270 degrees, and each turn is a row). Images of different groups are never
compared. ``resume`` continues a run: files already done are skipped, new inputs are added, and only
the pairs that involve new rows are multiplied.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

from camid_gpu._cuda.loader import kernels_status
from camid_gpu._shared.files import atomic_write
from camid_gpu.cluster.linkage import comparisons
from camid_gpu.cluster.residuals import already_in_run, check_resume_params, compute_residuals, region_clip
from camid_gpu.cluster.rows import _stores_from_records
from camid_gpu.cluster.similarity import resolve_precision
from camid_gpu.cluster.stages import pair_stage, refine_stage
from camid_gpu.config import ClusterParams, RunConfig
from camid_gpu.engine import run_folder
from camid_gpu.engine.runner import DASK_KERNELS
from camid_gpu.io.listing import printable
from camid_gpu.pipeline.prepare import disputed_listing
from camid_gpu.provenance import file_entry, utc_now
from camid_gpu.store import CameraFingerprint, save_fingerprint, software_versions

FORMAT = "camid-clusters"
VERSION = 1
# ----------------------------------------------------------------------------------------------
# the whole run
# ----------------------------------------------------------------------------------------------
def cluster_images(inputs: Sequence[str], run_dir: str, params: ClusterParams = ClusterParams(),
                   config: RunConfig | None = None, resume: bool = False,
                   argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Cluster the images in ``inputs`` (files or folders) by camera; writes ``run_dir`` (see module doc).

    Returns the content of ``clusters.json``.
    """
    config = config or RunConfig()
    run_folder.check_outputs(inputs, folders=[run_dir], command="cluster")  # never into the evidence; before any work
    if not config.dask:  # a Gram precision this device cannot do is refused before the run folder is made
        resolve_precision(config.backend_obj(), params.precision)
    with run_folder.locked(run_dir):
        return _cluster_images(inputs, run_dir, params, config, resume, argv)


def _cluster_images(inputs: Sequence[str], run_dir: str, params: ClusterParams, config: RunConfig, resume: bool,
                    argv: Sequence[str] | None) -> dict[str, Any]:
    started = utc_now()
    listing = disputed_listing(inputs)
    paths, skipped = listing.images, [s.to_dict() for s in listing.skipped]
    check_resume_params(run_dir, params, resume, config.precision)
    if resume:
        paths, again = already_in_run(paths, os.path.join(run_dir, "images.jsonl"))
        skipped += again
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    records, processed = compute_residuals(paths, run_dir, params, config, resume)
    timings["residuals"] = time.perf_counter() - t0
    ok = [r for r in records if not r.get("error")]
    # byte-identical copies are one image: compared once (the first), and they follow it into its cluster
    first_of: dict[str, str] = {}
    copies: dict[str, str] = {}
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        if r["sha256"] in first_of:
            copies[r["path"]] = first_of[r["sha256"]]
            continue
        first_of[r["sha256"]] = r["path"]
        by_group.setdefault(r["group"], []).append(r)
    stores = _stores_from_records(run_dir, ok)
    tests = sum(comparisons([r["rows"] for r in g]) for g in by_group.values())
    # the pair stage of every group first: the refinement's bound is then fixed, for the whole run, from the
    # pair stage's outcome alone, before any refinement comparison is made (a count made later would void --pfa)
    firsts = [pair_stage(run_dir, name, by_group[name], stores[name], tests, params, config, resume, timings)
              for name in sorted(by_group)]
    refine_tests = sum(g["refine_bound"]["comparisons"] for g in firsts)
    groups = [refine_stage(run_dir, g, by_group[g["name"]], stores[g["name"]], refine_tests, params, config, timings)
              for g in firsts]
    result = _write_outputs(run_dir, records, by_group, groups, params, config, tests, timings, skipped, copies,
                            refine_tests)
    outputs = [os.path.join(run_dir, f) for f in ("images.jsonl", "cluster-params.json", "clusters.json",
                                                   "clusters.csv")]
    outputs += [c["fingerprint"]["metadata"] for c in result["clusters"]]
    outputs += [c["fingerprint"]["arrays"] for c in result["clusters"]]
    inputs_manifest = []
    for r in records:
        if r.get("error"):
            e = file_entry(r["path"], "image")
            e["error"] = r["error"]
        else:
            e = {"path": r["path"], "abspath": os.path.abspath(r["path"]), "role": "image", "size": r["file_size"],
                 "sha256": r["sha256"], "pixels": r["size"], "format": r["format"], "exif": r.get("exif", {})}
        inputs_manifest.append(e)
    bk = config.backend_obj()
    run_folder.write_manifest(
        run_dir, "cluster", argv, params.to_dict(), bk.describe() if not config.dask else f"dask {config.dask}",
        started, inputs_manifest, None, outputs,
        extra={"resumed": resume, "processed": processed, "timings_s": result["timings_s"],
               "skipped_inputs": skipped, "inputs_found": listing.counts()},
        kernels=kernels_status(bk) if not config.dask else DASK_KERNELS)
    return result


def _write_outputs(run_dir, records, by_group, groups, params, config, tests, timings, skipped,
                   copies: dict[str, str], refine_tests: int) -> dict[str, Any]:
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
                references=[{"path": m["path"], "abspath": os.path.abspath(m["path"]), "sha256": m["sha256"],
                             "size": m["size"]} for m in member_info],
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
                           "refine_rounds": g["rounds"],
                           "order": [r["path"] for r in recs]})
    errors = [r for r in records if r.get("error")]
    by_sha: dict[str, list[str]] = {}
    for r in records:
        if not r.get("error"):
            by_sha.setdefault(r["sha256"], []).append(r["path"])
    # byte-identical copies link with NCC 1: their link is one image's evidence, not two, so they are named
    identical = [paths for paths in by_sha.values() if len(paths) > 1]
    result = {"format": FORMAT, "version": VERSION, "params": params.to_dict(), "comparisons": tests,
              "refine_comparisons": refine_tests,
              "backend": config.backend_obj().describe() if not config.dask else f"dask {config.dask}",
              "groups": groups_out, "clusters": clusters_out, "unclustered": unclustered,
              "errors": [{"path": r["path"], "error": r["error"]} for r in errors], "skipped": skipped,
              "identical_files": identical}
    # the same inputs and parameters give the same bytes: times go to the manifest, not here
    with atomic_write(os.path.join(run_dir, "clusters.json"), "w") as handle:
        json.dump(result, handle, indent=1, sort_keys=True, allow_nan=False)
        handle.write("\n")
    _write_csv(os.path.join(run_dir, "clusters.csv"), records, cluster_of)
    return dict(result, timings_s={k: round(v, 3) for k, v in timings.items()})


def _event_paths(event: dict[str, Any], recs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(event)
    for key in ("members", "members_before", "merged"):
        if key in out:
            out[key] = [recs[i]["path"] for i in out[key]]
    if "image" in out:
        out["image"] = recs[out["image"]]["path"]
    return out


def _write_csv(path: str, records: list[dict[str, Any]], cluster_of: dict[str, str]) -> None:
    import csv

    # names escaped as on the terminal (a name that is not UTF-8 cannot be written raw)
    with atomic_write(path, "w") as handle:
        w = csv.writer(handle)
        w.writerow(["path", "sha256", "group", "cluster", "error"])
        for r in records:
            if r.get("error"):
                w.writerow([printable(r["path"]), "", "", "", printable(r["error"]["reason"])])
            else:
                w.writerow([printable(r["path"]), r["sha256"], r["group"], cluster_of.get(r["path"], ""), ""])

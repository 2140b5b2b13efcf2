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

import os
import time
from typing import Any, Sequence

from camid_gpu._shared import custody
from camid_gpu._shared.progress import Progress
from camid_gpu.cluster.linkage import comparisons
from camid_gpu.cluster.outputs import _write_outputs
from camid_gpu.cluster.region import resolve_region
from camid_gpu.cluster.residuals import already_in_run, check_resume_params, compute_residuals
from camid_gpu.cluster.rows import _stores_from_records
from camid_gpu.cluster.similarity import resolve_precision
from camid_gpu.cluster.stages import pair_stage, refine_stage
from camid_gpu.config import ClusterParams, RunConfig
from camid_gpu.engine import run_folder
from camid_gpu.engine.context import RunContext, run_context
from camid_gpu.engine.video import video_spec
from camid_gpu.pipeline.prepare import disputed_listing
from camid_gpu.provenance import file_entry, utc_now


#: the working files of a clustering run (hashed into its manifest: every file of a run folder is listed), and
#: those a resume reads back (residual rows and scene descriptors only grow; the Gram of the rows already done)
WORKING_FOLDERS = ("residuals", "scene", "gram", "similarity")
KEPT_ON_RESUME = ("residuals", "scene", "gram")


def _checked_resume(run_dir: str, adopt_unverified: bool) -> list[dict[str, Any]]:
    """The records, parameters and working files a resume keeps must be the ones the manifest recorded; with no
    manifest, refused unless ``adopt_unverified``. Returns the run's adoptions (earlier ones and this one)."""
    records = os.path.join(run_dir, "images.jsonl")
    if run_folder.check_recorded_outputs(run_dir, only=("images.jsonl", "cluster-params.json")
                                         + tuple(f"{folder}/" for folder in KEPT_ON_RESUME)):
        adopted = custody.read_manifest(os.path.join(run_dir, "manifest.json")).data.get("adopted_unverified")
        return adopted if isinstance(adopted, list) else []
    if not os.path.exists(records):
        return []
    run_folder.refuse_unverified(run_dir, adopt_unverified)
    return [run_folder.adoption(records)]


def _input_entries(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest's entries of the images of ``images.jsonl``'s records (hashes taken at analysis time)."""
    out = []
    for r in records:
        if r.get("error"):
            e = file_entry(r["path"], "image")
            e["error"] = r["error"]
        else:
            e = {"path": r["path"], "abspath": os.path.abspath(r["path"]),
                 "role": "video" if r.get("video") else "image", "size": r["file_size"],
                 "sha256": r["sha256"], "pixels": r["size"], "format": r["format"], "exif": r.get("exif", {})}
        out.append(e)
    return out


def _working_files(run_dir: str) -> list[str]:
    found = []
    for folder in WORKING_FOLDERS:
        top = os.path.join(run_dir, folder)
        if os.path.isdir(top):
            found += [os.path.join(top, name) for name in sorted(os.listdir(top))
                      if os.path.isfile(os.path.join(top, name))]
    return found


def cluster_images(inputs: Sequence[str], run_dir: str, params: ClusterParams = ClusterParams(),
                   config: RunConfig | RunContext | None = None, resume: bool = False,
                   argv: Sequence[str] | None = None, adopt_unverified: bool = False) -> dict[str, Any]:
    """Cluster the images in ``inputs`` (files or folders) by camera; writes ``run_dir`` (see module doc).

    Returns the content of ``clusters.json``. ``adopt_unverified``: resume a run folder with records but no
    manifest (recorded in the manifest; see ``run_folder.record_spec``).
    """
    ctx = run_context(config)
    run_folder.check_outputs(inputs, folders=[run_dir], command="cluster")  # never into the evidence; before any work
    if not ctx.dask:  # a Gram precision this device cannot do is refused before the run folder is made
        resolve_precision(ctx.backend, params.precision)
    state: dict[str, Any] = {}  # what an interrupted run's manifest needs, once the run's checks passed
    with run_folder.locked(run_dir):
        try:
            return _cluster_images(inputs, run_dir, params, ctx, resume, argv, adopt_unverified, state)
        except BaseException as exc:
            if state:  # never before the checks passed: a refused resume must not get a new manifest
                _manifest_of_interrupted(run_dir, argv, ctx, exc, **state)
            raise


def _manifest_of_interrupted(run_dir: str, argv: Sequence[str] | None, ctx: RunContext, exc: BaseException,
                             params: ClusterParams, started: str, adopted: list[dict[str, Any]]) -> None:
    """The manifest of what an interrupted clustering run wrote (its records, parameters and working files:
    :func:`run_folder.write_interrupted_manifest`)."""
    from camid_gpu.engine.scheduler import read_results

    records_path = os.path.join(run_dir, "images.jsonl")

    def write(why: dict[str, Any]) -> None:
        records = read_results(records_path) if os.path.exists(records_path) else []
        outputs = [p for p in (records_path, os.path.join(run_dir, "cluster-params.json")) if os.path.exists(p)]
        run_folder.write_manifest(
            run_dir, "cluster", argv, params.to_dict(), ctx.describe(), started, _input_entries(records), None,
            outputs + _working_files(run_dir), extra={**why, **({"adopted_unverified": adopted} if adopted else {})},
            kernels=ctx.kernels())

    run_folder.write_interrupted_manifest(exc, write)


def _cluster_images(inputs: Sequence[str], run_dir: str, params: ClusterParams, ctx: RunContext, resume: bool,
                    argv: Sequence[str] | None, adopt_unverified: bool = False,
                    state: dict[str, Any] | None = None) -> dict[str, Any]:
    started = utc_now()
    listing = disputed_listing(inputs)
    paths, skipped = listing.images, [s.to_dict() for s in listing.skipped]
    params, region_choice = resolve_region(params, paths, run_dir, resume)  # --region auto: from frames and budget
    adopted = _checked_resume(run_dir, adopt_unverified) if resume else []
    check_resume_params(run_dir, params, resume, ctx.config.precision, video_spec(paths).get("video"))
    if state is not None:
        state.update(params=params, started=started, adopted=adopted)
    if resume:
        paths, again = already_in_run(paths, os.path.join(run_dir, "images.jsonl"))
        skipped += again
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    records, processed = compute_residuals(paths, run_dir, params, ctx, resume)
    timings["residuals"] = time.perf_counter() - t0
    ok = [r for r in records if not r.get("error")]
    # copies are one image: the same bytes, or the same decoded pixels in another container (a PNG, BMP or TIFF of
    # one photo); compared once (the first), they follow it into its cluster
    first_of: dict[str, str] = {}
    copies: dict[str, str] = {}
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        keys = [k for k in (r["sha256"], r.get("pixels_sha256")) if k]
        first = next((first_of[k] for k in keys if k in first_of), None)
        if first is not None:
            copies[r["path"]] = first
            continue
        first_of.update((k, r["path"]) for k in keys)
        by_group.setdefault(r["group"], []).append(r)
    stores = _stores_from_records(run_dir, ok)
    tests = sum(comparisons([r["rows"] for r in g]) for g in by_group.values())
    # the pair stage of every group first: the refinement's bound is then fixed, for the whole run, from the
    # pair stage's outcome alone, before any refinement comparison is made (a count made later would void --pfa)
    # after the residuals, a bar over the stages (each group's pair stage, then its refinement): the Gram products
    # and the PCE confirmations take minutes on a large run, and a bar stopped at the residuals' end said nothing
    with Progress(2 * len(by_group), "cluster stages (pairs, then refinement, per group)", ctx.config.progress) as bar:
        firsts = [bar.advanced(pair_stage(run_dir, name, by_group[name], stores[name], tests, params, ctx, resume,
                                          timings)) for name in sorted(by_group)]
        refine_tests = sum(g["refine_bound"]["comparisons"] for g in firsts)
        held: list = []  # the clusters' fingerprint sums held in memory, one budget for every group of the run
        groups = [bar.advanced(refine_stage(run_dir, g, by_group[g["name"]], stores[g["name"]], refine_tests, params,
                                            ctx, timings, held)) for g in firsts]
    result = _write_outputs(run_dir, records, by_group, groups, params, ctx, tests, timings, skipped, copies,
                            refine_tests, region_choice)
    outputs = [os.path.join(run_dir, f) for f in ("images.jsonl", "cluster-params.json", "clusters.json",
                                                   "clusters.csv")]
    outputs += [c["fingerprint"]["metadata"] for c in result["clusters"]]
    outputs += [c["fingerprint"]["arrays"] for c in result["clusters"]]
    outputs += _working_files(run_dir)
    run_folder.write_manifest(
        run_dir, "cluster", argv, params.to_dict(), ctx.describe(),
        started, _input_entries(records), None, outputs,
        extra={"resumed": resume, "processed": processed, "timings_s": result["timings_s"],
               "skipped_inputs": skipped, "inputs_found": listing.counts(),
               **({"adopted_unverified": adopted} if adopted else {})},
        kernels=ctx.kernels())
    return result

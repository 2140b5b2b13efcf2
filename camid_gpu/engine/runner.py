"""Whole runs on the scheduler: fingerprint a reference folder, identify files, evaluate a dataset, write residuals.

Every run keeps going past bad input: a file that cannot be used gets an error record naming the
path and the reason, and everything already computed is kept (results are appended as they come).
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import tifffile

from camid_gpu._cuda.loader import kernels_status
from camid_gpu._shared.files import write_bytes_atomic
from camid_gpu._shared.jsonio import write_json
from camid_gpu.backend.staging import UploadStager
from camid_gpu.config import Params, RunConfig
from camid_gpu.engine import run_folder
from camid_gpu.engine.distributed import identify_on_cluster
from camid_gpu.engine.scheduler import (
    Progress,
    ResultsWriter,
    chunk_size,
    default_gpu_memory,
    default_host_memory,
    is_out_of_memory,
    ordered_map,
    read_results,
    run_chunk_with_retry,
)
from camid_gpu.errors import CamidError, FingerprintMismatchError, ImageTooSmallError, OutputPathError
from camid_gpu.evaluate import summarise
from camid_gpu.io.decode import read_image
from camid_gpu.io.device_decode import decoder_for
from camid_gpu.io.geometry import center_clip, green_channel
from camid_gpu.io.listing import Listing, scan_inputs
from camid_gpu.pipeline import identify as ident
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline.records import ImageRecord, error_entry
from camid_gpu.prnu.residual import extract_residual
from camid_gpu.provenance import file_entry, input_entries, utc_now
from camid_gpu.store import CameraFingerprint, load_store, load_stores, save_fingerprint


#: the manifest's ``kernels`` entry for a Dask run: each worker self-checks the kernels on its own device
CLUSTER_KERNELS = "not recorded (dask cluster: each worker self-checks its own device and warns on a fallback)"


def fingerprint_folder(refs_dir: str, out_dir: str, methods: Sequence[str], params: Params,
                       config: RunConfig, argv: Sequence[str] | None = None, manifest: bool = True,
                       overwrite: bool = False) -> dict[str, Any]:
    """Build and save one fingerprint per camera subfolder of ``refs_dir``; with ``manifest``, write
    ``out_dir/manifest.json`` (when a fingerprint was built).

    Returns ``{"cameras": [...saved...], "errors": [...per-file and per-camera...], "manifest_sha256"}``.
    Existing fingerprint files in ``out_dir`` are refused unless ``overwrite``.
    """
    started = utc_now()
    run_folder.check_outputs([refs_dir], folders=[out_dir], command="fingerprint")
    existing = sorted(f for f in os.listdir(out_dir) if f.endswith((".npz", ".json"))
                      and f != "manifest.json") if os.path.isdir(out_dir) else []
    if existing and not overwrite:
        raise OutputPathError(f"{out_dir} already holds fingerprint files ({', '.join(existing[:3])}"
                              f"{', ...' if len(existing) > 3 else ''}); pass --overwrite to replace them, "
                              f"or choose another folder")
    listed = reference_listing(refs_dir)  # every folder is listed before any image is decoded
    cameras = {camera for camera, _, _ in listed}
    # --overwrite replaces this run's cameras; a camera it does not build would stay beside them, unlisted in
    # the new manifest, and every later identify would score it as part of this store
    strangers = sorted({os.path.splitext(f)[0] for f in existing} - cameras)
    if strangers:
        raise OutputPathError(f"{out_dir} holds fingerprints of cameras this run does not build ("
                              f"{', '.join(strangers[:3])}{', ...' if len(strangers) > 3 else ''}); one store holds "
                              f"one run's cameras: choose another folder or remove them")
    with run_folder.locked(out_dir):
        summary = _fingerprint_folder(listed, out_dir, methods, params, config)
        built = {c["camera"] for c in summary["cameras"]}
        for camera in sorted(cameras - built):  # failed this time: its earlier fingerprint must not stand in
            for suffix in (".json", ".npz"):
                stale = os.path.join(out_dir, camera + suffix)
                if os.path.lexists(stale):
                    os.remove(stale)
                    summary["errors"].append({"path": stale, "error": {
                        "kind": "stale-fingerprint-removed",
                        "reason": f"camera {camera!r} got no fingerprint in this run; its earlier {camera}{suffix} "
                                  f"(from another run, replaced under --overwrite) was removed"}})
        if manifest and summary["cameras"]:
            summary["manifest"], summary["manifest_sha256"] = run_folder.write_manifest(
                out_dir, "fingerprint", argv, params.to_dict(), summary["backend"], started,
                [file_entry(p, "reference") for p in summary["files"]], None,
                [f for c in summary["cameras"] for f in (c["metadata"], c["arrays"])],
                extra={"errors": summary["errors"], "methods": list(methods), "skipped_inputs": summary["skipped"],
                       "decode": config.decode},
                kernels=summary["kernels"])
    return summary


def _fingerprint_folder(listed: list[tuple[str, str, Listing]], out_dir: str, methods: Sequence[str], params: Params,
                        config: RunConfig) -> dict[str, Any]:
    """Fingerprint each camera of ``listed`` (:func:`reference_listing`) into ``out_dir``."""
    bk = config.backend_obj()
    decoder = decoder_for(config.decode, bk)
    saved, errors, tried, skipped = [], [], [], []
    gpu_budget = config.max_gpu_memory or default_gpu_memory(bk)
    host_budget = config.max_host_memory or default_host_memory()

    def batches(sensor: tuple[int, int]) -> int:
        """References per residual batch within the memory budgets (at most 4, as before budgets applied)."""
        frames = [math.prod(params.clip_of(m) or sensor) for m in methods]
        return chunk_size(max(frames), 0, gpu_budget, host_budget, value_bytes=bk.itemsize, limit=4)

    for camera, folder, listing in listed:
        paths = listing.images
        skipped.extend(s.to_dict() for s in listing.skipped)
        tried.extend(paths)
        if not paths:
            errors.append({"path": folder, "error": {"kind": "empty", "reason": f"camera {camera!r}: no images"}})
            continue
        prefetch = max(2 * config.workers, 2)
        # whole frames: build_fingerprint clips per method
        stream = ordered_map(prepare.load_reference, [(p, None, config.limits, decoder is not None) for p in paths],
                             config.workers, prefetch)
        loaded = ((task[0], result) for task, result in stream)
        if decoder is not None:
            loaded = prepare.decode_references(loaded, decoder, None)
        try:
            fp, errs = ident.build_fingerprint(camera, paths, bk, params, methods, loaded=loaded,
                                               batch_size=batches)
        except CamidError as exc:
            fp, errs = None, [{"path": folder, "error": {"kind": type(exc).__name__, "reason": str(exc)}}]
        errors.extend(errs)
        if fp is not None:
            path = save_fingerprint(fp, out_dir)
            saved.append({"camera": camera, "metadata": path, "references": len(fp.references),
                          "arrays": os.path.join(out_dir, f"{camera}.npz")})
    return {"cameras": saved, "errors": errors, "backend": bk.describe(), "kernels": kernels_status(bk),
            "files": tried, "skipped": skipped}


#: the parameters a fingerprint store fixes (its values are the ones used, whatever was requested)
STORE_PARAMS = ("sigma_fingerprint", "sigma_mahalanobis", "levels", "wavelet")


def reference_listing(refs_dir: str) -> list[tuple[str, str, Listing]]:
    """(camera, folder, listing of its images and skipped files) for every camera subfolder of ``refs_dir``;
    camera names are checked here, so a bad folder name is reported before any work."""
    from camid_gpu.store import check_camera_name

    listed = []
    seen: dict[str, str] = {}
    owner: dict[tuple[int, int], tuple[str, str]] = {}  # (device, inode) of a reference file -> (camera, path)
    for camera, folder in prepare.camera_folders(refs_dir):
        try:
            check_camera_name(camera)
        except ValueError as exc:
            raise CamidError(f"{folder}: {exc}") from None
        if camera.casefold() in seen:  # the store refuses them at load; on a case-insensitive disk one replaces
            raise CamidError(f"{folder}: camera {camera!r} and {seen[camera.casefold()]!r} differ only in case; "
                             f"a fingerprint store holds one of them (rename one folder)")
        seen[camera.casefold()] = camera
        listing = scan_inputs(folder)
        for path in listing.images:
            try:
                st = os.stat(path)
            except OSError:
                continue  # a missing or unreadable file gets its own error entry when it is read
            first = owner.setdefault((st.st_dev, st.st_ino), (camera, path))
            if first[0] != camera:  # one folder under two names (links), a nested folder or a hard link
                raise CamidError(f"{refs_dir}: cameras {first[0]!r} and {camera!r} share the reference file "
                                 f"{first[1]} (also reached as {path}); their fingerprints would be the same "
                                 f"and a decision would name either: give each camera its own references")
        listed.append((camera, folder, listing))
    return listed


def _resolve_params(store: Sequence[CameraFingerprint], params: Params, clip_given: bool,
                    methods: Sequence[str] = ("pce", "mahalanobis"), given: frozenset[str] = frozenset()) -> Params:
    """The fingerprints decide each method's geometry and the fingerprint-side parameters; check the rest.

    ``given``: the names of parameters the user set explicitly; one of :data:`STORE_PARAMS` given with another
    value than the store's is refused (the store's value is what would be used, and what is recorded).
    """
    fp = store[0]
    geometry = {m: next((f.clip_of(m) for f in store if m in f.methods), params.clip_of(m))
                for m in ("pce", "mahalanobis")}
    if params.search_scales is not None and geometry["pce"] is not None:
        raise FingerprintMismatchError(f"the scale/crop search needs full-frame fingerprints, but the PCE fingerprints "
                                       f"are {geometry['pce'][0]}x{geometry['pce'][1]} clips; rebuild them with "
                                       f"--pce-clip full")
    if clip_given:
        for m in methods:
            if params.clip_of(m) != geometry[m]:
                raise FingerprintMismatchError(f"requested {m} clip {params.clip_of(m)} but the fingerprints were "
                                               f"built with {m} clip {geometry[m]}")
    for other in store[1:]:
        if any(other.params.get(k) != fp.params.get(k) for k in STORE_PARAMS):
            raise FingerprintMismatchError(f"fingerprints {fp.camera!r} and {other.camera!r} were built with "
                                           f"different parameters: {fp.params} vs {other.params}")
    stored = {k: fp.params.get(k) for k in STORE_PARAMS}
    for name in sorted(given & set(STORE_PARAMS)):
        if stored[name] is not None and getattr(params, name) != stored[name]:
            raise FingerprintMismatchError(f"--{name.replace('_', '-')} {getattr(params, name)!r} was requested but "
                                           f"the fingerprints were built with {stored[name]!r}; leave it out (the "
                                           f"store's value is used) or rebuild the fingerprints")
    # the geometry is set outright: None (full frame) is a value here, not "unchanged"
    return replace(ident.with_params(params, **stored),
                   pce_clip=geometry["pce"], mahalanobis_clip=geometry["mahalanobis"])


def identify_files(fp_dir: str, inputs: Sequence[str], results_path: str, methods: Sequence[str],
                   params: Params, config: RunConfig, resume: bool = False, kind: str = "auto",
                   clip_given: bool = False, truth_root: str | None = None, given: frozenset[str] = frozenset(),
                   command: str = "identify", lock: bool = True) -> dict[str, Any]:
    """Identify every image in ``inputs`` (files or folders) against the fingerprints in ``fp_dir``.

    Records are appended to ``results_path`` (JSON Lines) in input order; its folder is the run folder
    (locked for the run unless ``lock`` is False because the caller holds it; its ``run.json`` is written,
    or checked on ``resume``: see :mod:`camid_gpu.engine.run_folder`). With ``truth_root`` (a ``disputed/``
    folder) each record also gets ``truth`` = its camera subfolder. With ``params.search_scales`` only PCE
    runs (the scale/crop search).
    """
    run_dir = os.path.dirname(os.path.abspath(results_path))
    if lock:
        with run_folder.locked(run_dir):
            return identify_files(fp_dir, inputs, results_path, methods, params, config, resume, kind, clip_given,
                                  truth_root, given, command, lock=False)
    if params.search_scales is not None:
        methods = ("pce",)
    # everything is checked before any residual: the store, the geometry, the parameters, the inputs
    if config.decode == "gpu" and (config.cluster or params.search_scales is not None):
        raise CamidError(f"--decode gpu is not available with {'--cluster' if config.cluster else '--search-scales'} "
                         f"(those decode on the CPU); use --decode auto or cpu")
    store = load_stores(fp_dir, methods=tuple(methods))
    params = _resolve_params(store, params, clip_given, methods, given)
    listing = prepare.disputed_listing(inputs)
    paths = listing.images
    if os.path.exists(results_path) and not resume:
        raise CamidError(f"{results_path}: results file exists; pass --resume to continue it or choose another "
                         f"output")
    # the backend and working precision shape every number: a resume on another one would mix two computations
    # in one results.jsonl under one manifest "backend" line
    computed_by = {"backend": "dask" if config.cluster else config.backend_obj().name, "precision": config.precision}
    run_folder.record_spec(run_dir, run_folder.run_spec(command, params.to_dict(), methods, fp_dir, paths,
                                                        kind=kind, computed_by=computed_by), resume)
    existing = run_folder.existing_records(results_path) if resume else []
    writer = ResultsWriter(results_path, resume)
    plan = run_folder.plan_resume(paths, existing)
    if plan.changed:
        writer.write(plan.changed)
    todo = plan.todo
    progress = Progress(len(todo), "identify", config.progress)
    try:
        if config.cluster:
            identify_on_cluster(fp_dir, todo, lambda records: writer.write(_annotate(records, truth_root)), methods,
                                params, config, kind, progress)
        else:
            _identify_local(store, todo, writer, methods, params, config, kind, truth_root, progress)
    finally:
        progress.close()
        writer.close()
    return {"results": results_path, "images": len(paths), "skipped_as_done": plan.done, "processed": len(todo),
            "retried": plan.retried, "changed": len(plan.changed), "duplicates": plan.duplicates,
            "skipped_inputs": [s.to_dict() for s in listing.skipped], "inputs_found": listing.counts(),
            "cameras": [fp.camera for fp in store], "params": params.to_dict(),
            "backend": config.backend_obj().describe() if not config.cluster else f"dask {config.cluster}",
            "kernels": kernels_status(config.backend_obj()) if not config.cluster else CLUSTER_KERNELS,
            "decode": config.decode}  # as asked; each record says which decoder made its pixels


def identify_run(fp_dir: str, inputs: Sequence[str], run_dir: str, methods: Sequence[str], params: Params,
                 config: RunConfig, *, resume: bool = False, kind: str = "auto", clip_given: bool = False,
                 given: frozenset[str] = frozenset(), argv: Sequence[str] | None = None,
                 extra_outputs: Callable[[list[ImageRecord], dict[str, Any]], list[str]] | None = None,
                 ) -> tuple[dict[str, Any], list[ImageRecord]]:
    """``camid identify``: :func:`identify_files` into ``run_dir/results.jsonl`` under the run folder's lock,
    then ``extra_outputs(records, run)`` (files it writes, e.g. ``--csv``; returns their paths), then the
    manifest. Returns (run summary with ``manifest`` and ``manifest_sha256``, the final records)."""
    started = utc_now()
    run_folder.check_outputs(list(inputs) + ([fp_dir] if isinstance(fp_dir, str) else list(fp_dir)), folders=[run_dir],
                             command="identify")
    results = os.path.join(run_dir, run_folder.RESULTS_NAME)
    with run_folder.locked(run_dir):
        run = identify_files(fp_dir, inputs, results, methods, params, config, resume=resume, kind=kind,
                             clip_given=clip_given, given=given, lock=False)
        records = read_results(results)
        outputs = [results] + (extra_outputs(records, run) if extra_outputs else [])
        run["manifest"], run["manifest_sha256"] = run_folder.write_manifest(
            run_dir, "identify", argv, run["params"], run["backend"], started, input_entries(records), fp_dir,
            outputs, extra={"methods": list(methods), "resumed": resume, "skipped_inputs": run["skipped_inputs"],
                            "inputs_found": run["inputs_found"], "decode": run["decode"]}, kernels=run["kernels"])
    return run, records


def _annotate(records: list[dict[str, Any]], truth_root: str | None) -> list[dict[str, Any]]:
    for r in records:
        r["realpath"] = run_folder.canonical(r["path"])
        if truth_root:
            r["truth"] = prepare.ground_truth_of(r["path"], truth_root)
    return records


def _identify_local(store, todo, writer, methods, params, config, kind, truth_root, progress) -> None:
    """Chunks through the device with one chunk of look-ahead: chunk k+1 is decoded (GPU JPEGs) and its host
    clips start uploading (:class:`~camid_gpu.backend.staging.UploadStager`) before chunk k computes, so the
    copy overlaps the computation. Results are still written in input order, chunk by chunk."""
    bk = config.backend_obj()
    # the scale/crop search works on host pixels: there "auto" decodes on the CPU ("gpu" was refused above)
    decoder = decoder_for(config.decode, bk) if params.search_scales is None else None
    # the largest frame any method works on bounds a chunk's working set (fingerprints travel per camera chunk)
    frames = [int(np.prod(fp.shape_of(m))) for fp in store for m in methods if m in fp.methods]
    gpu_budget = config.max_gpu_memory or default_gpu_memory(bk)
    host_budget = config.max_host_memory or default_host_memory()
    size = config.chunk or chunk_size(max(frames), len(store), gpu_budget, host_budget, value_bytes=bk.itemsize)
    state = {"size": size}
    fp_cache: dict = {}
    sensor_shapes = sorted({fp.source_shape for fp in store})
    tasks = [(p, params, sensor_shapes, kind, config.limits, decoder is not None) for p in todo]
    prefetch = max(size + config.workers, 2)
    stager = UploadStager(bk)

    def stage(pending):
        if decoder is not None:
            pending = prepare.decode_on_device(pending, decoder, params, sensor_shapes)
        pending = [error_entry(x.path, x) if isinstance(x, BaseException) else x for x in pending]
        prepared = [x for x in pending if isinstance(x, prepare.Prepared)]
        return pending, prepared, ident.stage_chunk(stager, prepared)

    def finish(staged):
        pending, prepared, uploads = staged

        def compute(items):  # the staged uploads hold the whole chunk; an out-of-memory retry re-uploads halves
            try:
                return ident.identify_chunk(bk, store, items, params, methods, fp_cache,
                                            uploads if items is prepared else None)
            except (MemoryError, RuntimeError) as exc:
                if len(items) > 1 or not is_out_of_memory(exc):
                    raise  # a chunk is halved and retried by run_chunk_with_retry
                bk.empty_cache()  # one image that does not fit even alone: that image's error, the run goes on
                return [error_entry(items[0].path, exc if isinstance(exc, MemoryError) else MemoryError(str(exc)))]

        scored = iter(run_chunk_with_retry(compute, prepared, lambda n: state.update(size=n), bk.empty_cache)
                      if prepared else [])
        records = [next(scored) if isinstance(x, prepare.Prepared) else x for x in pending]
        writer.write(_annotate(records, truth_root))
        progress.advance(len(records))

    pending: list = []
    in_flight = None
    for (path, *_), result in ordered_map(prepare.prepare_disputed, tasks, config.workers, prefetch):
        pending.append(error_entry(path, result) if isinstance(result, BaseException) else result)
        if sum(isinstance(x, prepare.Prepared) for x in pending) >= state["size"]:
            staged = stage(pending)
            if in_flight is not None:
                finish(in_flight)
            in_flight, pending = staged, []
    if pending:
        staged = stage(pending)
        if in_flight is not None:
            finish(in_flight)
        in_flight = staged
    if in_flight is not None:
        finish(in_flight)


def evaluate_dataset(dataset_dir: str, out_dir: str, methods: Sequence[str], params: Params,
                     config: RunConfig, resume: bool = False, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fingerprint ``refs/<camera>/``, identify ``disputed/<camera>/``, and score against the folders.

    Writes ``out_dir/fingerprints/``, ``results.jsonl``, ``evaluation.json`` and ``manifest.json`` (with
    ``manifest.sha256``), under the run folder's lock.
    """
    started = utc_now()
    refs, disputed = prepare.dataset_layout(dataset_dir)
    # fail early: folders, names and inputs are checked before any fingerprint is computed
    if params.search_scales is not None and params.pce_clip is not None:
        raise CamidError(f"the scale/crop search needs full-frame PCE fingerprints; --pce-clip is "
                         f"{params.pce_clip[0]}x{params.pce_clip[1]}")
    listed = reference_listing(refs)
    prepare.disputed_images([disputed])
    run_folder.check_outputs([refs, disputed], folders=[out_dir], command="evaluate")
    with run_folder.locked(out_dir):
        fp_dir = os.path.join(out_dir, "fingerprints")
        results_path = os.path.join(out_dir, "results.jsonl")
        if os.path.exists(results_path) and not resume:
            raise CamidError(f"{out_dir}: the run folder already holds results; pass --resume to continue that run "
                             f"or choose another folder")
        if resume and os.path.exists(results_path) and os.path.isdir(fp_dir):
            # the fingerprints of the run being resumed: rebuilding them first would replace the very files the
            # recorded run used before run.json could be compared (a crash before any result rebuilds them)
            fp_summary = _fingerprints_of(refs, fp_dir, config)
        else:
            fp_summary = _fingerprint_folder(listed, fp_dir, methods, params, config)
        if not fp_summary["cameras"]:
            raise CamidError(f"{refs}: no fingerprint could be built: "
                             + "; ".join(e["error"]["reason"] for e in fp_summary["errors"]))
        run = identify_files(fp_dir, [disputed], results_path, methods, params, config, resume=resume,
                             truth_root=disputed, command="evaluate", lock=False)
        records = read_results(results_path)
        summary = summarise(records, run["cameras"], methods, params.pce_threshold)
        summary["fingerprint_errors"] = fp_summary["errors"]
        skipped_inputs = fp_summary["skipped"] + run["skipped_inputs"]
        summary["params"] = run["params"]
        summary["backend"] = fp_summary["backend"]
        evaluation_path = os.path.join(out_dir, "evaluation.json")
        write_json(evaluation_path, summary)
        fp_files = [f for c in fp_summary["cameras"] for f in (c["metadata"], c["arrays"])]
        summary["manifest"], summary["manifest_sha256"] = run_folder.write_manifest(
            out_dir, "evaluate", argv, run["params"], run["backend"], started,
            input_entries(records) + [file_entry(p, "reference") for p in fp_summary["files"]],
            fp_dir, fp_files + [results_path, evaluation_path],
            extra={"dataset": os.path.abspath(dataset_dir), "methods": list(methods),
                   "skipped_inputs": skipped_inputs, "decode": run["decode"]}, kernels=run["kernels"])
        summary["skipped_inputs"] = skipped_inputs  # for the caller to print; the manifest records them
    return summary


def _fingerprints_of(refs: str, fp_dir: str, config: RunConfig) -> dict[str, Any]:
    """The summary :func:`_fingerprint_folder` would give for fingerprints already in ``fp_dir`` (resume)."""
    store = load_store(fp_dir)
    cameras = [{"camera": fp.camera, "metadata": os.path.join(fp_dir, f"{fp.camera}.json"),
                "arrays": os.path.join(fp_dir, f"{fp.camera}.npz"), "references": len(fp.references)} for fp in store]
    files = [r.get("path") for fp in store for r in fp.references if isinstance(r.get("path"), str)]
    bk = config.backend_obj()
    return {"cameras": cameras, "errors": [], "backend": bk.describe(), "kernels": kernels_status(bk), "files": files,
            "skipped": []}


def _residual_input(path: str, clip: tuple[int, int] | None, channel: str, limits) -> tuple[np.ndarray, Any]:
    pixels, info = read_image(path, limits=limits)
    pixels = center_clip(pixels, clip, path)
    if min(pixels.shape[:2]) < prepare.MIN_SIDE:  # a 1xN image gave an all-zero "residual" and NaN warnings
        raise ImageTooSmallError(path, f"image{' clip' if clip else ''} is {pixels.shape[0]}x{pixels.shape[1]} "
                                       f"(rows x columns), smaller than the {prepare.MIN_SIDE}x{prepare.MIN_SIDE} a "
                                       f"residual needs")
    return (green_channel(pixels) if channel == "green" else pixels), info


def residual_files(inputs: Sequence[str], out_dir: str, *, sigma: float, levels: int, wavelet: str,
                   clip: tuple[int, int] | None, channel: str, wiener: bool, config: RunConfig,
                   on_record: Callable[[dict[str, Any]], None] | None = None,
                   argv: Sequence[str] | None = None,
                   skipped: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Noise residuals of image files as float32 TIFFs ``OUT/<stem>-<sha8>.tif`` (``(H, W)``, 0..255 units),
    with one JSON line per image appended to ``OUT/residuals.jsonl`` and ``OUT/manifest.json``; returns the
    per-file error entries.

    ``channel``: "color" (per-channel residuals combined to gray, Binghamton) or "green"; ``wiener`` also
    applies WienerInDFT. Files under the inputs that are not images are appended to ``skipped`` (path, reason).
    """
    started = utc_now()
    params = Params(clip=clip, sigma_fingerprint=sigma, levels=levels, wavelet=wavelet)  # checks the values
    run_folder.check_outputs(inputs, folders=[out_dir], command="residual")
    index_path = os.path.join(out_dir, "residuals.jsonl")
    if os.path.lexists(index_path):  # appending would mix two runs' records (and replace TIFFs the first lists)
        raise OutputPathError(f"{out_dir} already holds residuals ({index_path}); choose a new output folder")
    listing = scan_inputs(*inputs)
    paths = listing.images
    if skipped is not None:
        skipped.extend(s.to_dict() for s in listing.skipped)
    if not paths:
        raise ValueError(f"no images found in {', '.join(inputs)}")
    errors: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    bk = config.backend_obj()
    tasks = [(p, clip, channel, config.limits) for p in paths]
    with run_folder.locked(out_dir), open(index_path, "a", encoding="utf-8") as index:
        for (path, *_), result in ordered_map(_residual_input, tasks, config.workers, 2 * config.workers):
            if isinstance(result, BaseException):
                errors.append(error_entry(path, result))
                continue
            pixels, info = result
            res = extract_residual(pixels[None], sigma=sigma, levels=levels, wavelet=wavelet,
                                   backend=bk, wiener=wiener)[0]
            stem = os.path.splitext(os.path.basename(path))[0]
            out = os.path.join(out_dir, f"{stem}-{info.sha256[:8]}.tif")
            buffer = io.BytesIO()
            tifffile.imwrite(buffer, res.astype(np.float32), metadata=None)
            write_bytes_atomic(out, buffer.getvalue())
            record = {"path": path, "sha256": info.sha256, "shape": list(res.shape), "output": out,
                      "params": {"sigma": sigma, "levels": levels, "wavelet": wavelet,
                                 "clip": list(clip) if clip else None, "channel": channel,
                                 "wiener": wiener, "zero_mean": True},
                      "backend": bk.describe(), "std": float(res.std())}
            index.write(json.dumps(record, sort_keys=True) + "\n")
            index.flush()
            os.fsync(index.fileno())
            records.append(record)
            if on_record is not None:
                on_record(record)
        index.close()
        inputs_done = [dict(file_entry(r["path"], "input"), sha256=r["sha256"]) for r in records]
        run_folder.write_manifest(out_dir, "residual", argv, dict(params.to_dict(), channel=channel, wiener=wiener),
                                  bk.describe(), started, inputs_done + [dict(file_entry(e["path"], "input"), error=e["error"]) for e in errors], None,
                                  [index_path] + [r["output"] for r in records],
                                  extra={"errors": errors, "skipped_inputs": [s.to_dict() for s in listing.skipped]},
                                  kernels=kernels_status(bk))
    return errors

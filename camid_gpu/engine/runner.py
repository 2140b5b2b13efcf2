"""Whole runs on the scheduler: fingerprint a reference folder, identify files, evaluate a dataset, write residuals.

Every run keeps going past bad input: a file that cannot be used gets an error record naming the
path and the reason, and everything already computed is kept (results are appended as they come).
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import tifffile

from camid_gpu._cuda.loader import kernels_status
from camid_gpu._shared.jsonio import sha256_file, write_json
from camid_gpu.backend.staging import UploadStager
from camid_gpu.config import Params, RunConfig
from camid_gpu.engine.distributed import identify_on_cluster
from camid_gpu.engine.scheduler import (
    Progress,
    ResultsWriter,
    chunk_size,
    default_gpu_memory,
    default_host_memory,
    ordered_map,
    read_results,
    run_chunk_with_retry,
)
from camid_gpu.errors import CamidError, FingerprintMismatchError
from camid_gpu.evaluate import summarise
from camid_gpu.io.decode import read_image
from camid_gpu.io.device_decode import decoder_for
from camid_gpu.io.geometry import center_clip, green_channel
from camid_gpu.io.listing import Listing, scan_inputs
from camid_gpu.pipeline import identify as ident
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline.records import error_entry
from camid_gpu.prnu.residual import extract_residual
from camid_gpu.provenance import file_entry, input_entries, utc_now, write_manifest
from camid_gpu.store import CameraFingerprint, load_store, save_fingerprint


#: the manifest's ``kernels`` entry for a Dask run: each worker self-checks the kernels on its own device
CLUSTER_KERNELS = "not recorded (dask cluster: each worker self-checks its own device and warns on a fallback)"


def fingerprint_folder(refs_dir: str, out_dir: str, methods: Sequence[str], params: Params,
                       config: RunConfig) -> dict[str, Any]:
    """Build and save one fingerprint per camera subfolder of ``refs_dir``.

    Returns ``{"cameras": [...saved...], "errors": [...per-file and per-camera...]}``.
    """
    listed = reference_listing(refs_dir)  # every folder is listed before any image is decoded
    bk = config.backend_obj()
    decoder = decoder_for(config.decode, bk)
    saved, errors, tried, skipped = [], [], [], []
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
            fp, errs = ident.build_fingerprint(camera, paths, bk, params, methods, loaded=loaded)
        except CamidError as exc:
            fp, errs = None, [{"path": folder, "error": {"kind": type(exc).__name__, "reason": str(exc)}}]
        errors.extend(errs)
        if fp is not None:
            path = save_fingerprint(fp, out_dir)
            saved.append({"camera": camera, "metadata": path, "references": len(fp.references),
                          "arrays": os.path.join(out_dir, f"{camera}.npz")})
    return {"cameras": saved, "errors": errors, "backend": bk.describe(), "kernels": kernels_status(bk),
            "files": tried, "skipped": skipped}


def reference_listing(refs_dir: str) -> list[tuple[str, str, Listing]]:
    """(camera, folder, listing of its images and skipped files) for every camera subfolder of ``refs_dir``;
    camera names are checked here, so a bad folder name is reported before any work."""
    from camid_gpu.store import check_camera_name

    listed = []
    for camera, folder in prepare.camera_folders(refs_dir):
        try:
            check_camera_name(camera)
        except ValueError as exc:
            raise CamidError(f"{folder}: {exc}") from None
        listed.append((camera, folder, scan_inputs(folder)))
    return listed


def _resolve_params(store: Sequence[CameraFingerprint], params: Params, clip_given: bool,
                    methods: Sequence[str] = ("pce", "mahalanobis")) -> Params:
    """The fingerprints decide each method's geometry and the fingerprint-side parameters; check the rest."""
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
        if other.params.get("sigma_mahalanobis") != fp.params.get("sigma_mahalanobis") or \
                other.params.get("levels") != fp.params.get("levels") or \
                other.params.get("wavelet") != fp.params.get("wavelet"):
            raise FingerprintMismatchError(f"fingerprints {fp.camera!r} and {other.camera!r} were built with "
                                           f"different parameters: {fp.params} vs {other.params}")
    # the geometry is set outright: None (full frame) is a value here, not "unchanged"
    return replace(ident.with_params(params, sigma_mahalanobis=fp.params.get("sigma_mahalanobis"),
                                     levels=fp.params.get("levels"), wavelet=fp.params.get("wavelet")),
                   pce_clip=geometry["pce"], mahalanobis_clip=geometry["mahalanobis"])


def identify_files(fp_dir: str, inputs: Sequence[str], results_path: str, methods: Sequence[str],
                   params: Params, config: RunConfig, resume: bool = False, kind: str = "auto",
                   clip_given: bool = False, truth_root: str | None = None) -> dict[str, Any]:
    """Identify every image in ``inputs`` (files or folders) against the fingerprints in ``fp_dir``.

    Records are appended to ``results_path`` (JSON Lines) in input order. With ``truth_root``
    (a ``disputed/`` folder) each record also gets ``truth`` = its camera subfolder. With
    ``params.search_scales`` only PCE runs (the scale/crop search).
    """
    if params.search_scales is not None:
        methods = ("pce",)
    # everything is checked before any residual: the store, the geometry, the parameters, the inputs
    if config.decode == "gpu" and (config.cluster or params.search_scales is not None):
        raise CamidError(f"--decode gpu is not available with {'--cluster' if config.cluster else '--search-scales'} "
                         f"(those decode on the CPU); use --decode auto or cpu")
    store = load_store(fp_dir, methods=tuple(methods))
    params = _resolve_params(store, params, clip_given, methods)
    listing = prepare.disputed_listing(inputs)
    paths = listing.images
    writer = ResultsWriter(results_path, resume)
    todo = [p for p in paths if not (p in writer.done and writer.is_done(p, _sha_or_none(p)))]
    skipped = len(paths) - len(todo)
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
    return {"results": results_path, "images": len(paths), "skipped_as_done": skipped, "processed": len(todo),
            "skipped_inputs": [s.to_dict() for s in listing.skipped], "inputs_found": listing.counts(),
            "cameras": [fp.camera for fp in store], "params": params.to_dict(),
            "backend": config.backend_obj().describe() if not config.cluster else f"dask {config.cluster}",
            "kernels": kernels_status(config.backend_obj()) if not config.cluster else CLUSTER_KERNELS,
            "decode": config.decode}  # as asked; each record says which decoder made its pixels


def _sha_or_none(path: str) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _annotate(records: list[dict[str, Any]], truth_root: str | None) -> list[dict[str, Any]]:
    if truth_root:
        for r in records:
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
            return ident.identify_chunk(bk, store, items, params, methods, fp_cache,
                                        uploads if items is prepared else None)

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

    Writes ``out_dir/fingerprints/``, ``results.jsonl``, ``evaluation.json`` and ``manifest.json``.
    """
    started = utc_now()
    refs, disputed = prepare.dataset_layout(dataset_dir)
    # fail early: folders, names and inputs are checked before any fingerprint is computed
    if params.search_scales is not None and params.pce_clip is not None:
        raise CamidError(f"the scale/crop search needs full-frame PCE fingerprints; --pce-clip is "
                         f"{params.pce_clip[0]}x{params.pce_clip[1]}")
    reference_listing(refs)
    prepare.disputed_images([disputed])
    fp_dir = os.path.join(out_dir, "fingerprints")
    fp_summary = fingerprint_folder(refs, fp_dir, methods, params, config)
    if not fp_summary["cameras"]:
        raise CamidError(f"{refs}: no fingerprint could be built: "
                         + "; ".join(e["error"]["reason"] for e in fp_summary["errors"]))
    results_path = os.path.join(out_dir, "results.jsonl")
    if os.path.exists(results_path) and not resume:
        os.remove(results_path)
    run = identify_files(fp_dir, [disputed], results_path, methods, params, config, resume=resume,
                         truth_root=disputed)
    records = read_results(results_path)
    summary = summarise(records, run["cameras"], methods, params.pce_threshold)
    summary["fingerprint_errors"] = fp_summary["errors"]
    skipped_inputs = fp_summary["skipped"] + run["skipped_inputs"]
    summary["params"] = run["params"]
    summary["backend"] = fp_summary["backend"]
    evaluation_path = os.path.join(out_dir, "evaluation.json")
    write_json(evaluation_path, summary)
    fp_files = [f for c in fp_summary["cameras"] for f in (c["metadata"], c["arrays"])]
    write_manifest(out_dir, "evaluate", argv, params.to_dict(), run["backend"], started,
                   input_entries(records) + [file_entry(p, "reference") for p in fp_summary["files"]],
                   fp_dir, fp_files + [results_path, evaluation_path],
                   extra={"dataset": os.path.abspath(dataset_dir), "methods": list(methods),
                          "skipped_inputs": skipped_inputs, "decode": run["decode"]}, kernels=run["kernels"])
    summary["skipped_inputs"] = skipped_inputs  # for the caller to print; the manifest records them
    return summary


def _residual_input(path: str, clip: tuple[int, int] | None, channel: str, limits) -> tuple[np.ndarray, Any]:
    pixels, info = read_image(path, limits=limits)
    pixels = center_clip(pixels, clip, path)
    return (green_channel(pixels) if channel == "green" else pixels), info


def residual_files(inputs: Sequence[str], out_dir: str, *, sigma: float, levels: int, wavelet: str,
                   clip: tuple[int, int] | None, channel: str, wiener: bool, config: RunConfig,
                   on_record: Callable[[dict[str, Any]], None] | None = None,
                   skipped: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Noise residuals of image files as float32 TIFFs ``OUT/<stem>-<sha8>.tif`` (``(H, W)``, 0..255 units),
    with one JSON line per image appended to ``OUT/residuals.jsonl``; returns the per-file error entries.

    ``channel``: "color" (per-channel residuals combined to gray, Binghamton) or "green"; ``wiener`` also
    applies WienerInDFT. Files under the inputs that are not images are appended to ``skipped`` (path, reason).
    """
    os.makedirs(out_dir, exist_ok=True)
    listing = scan_inputs(*inputs)
    paths = listing.images
    if skipped is not None:
        skipped.extend(s.to_dict() for s in listing.skipped)
    if not paths:
        raise ValueError(f"no images found in {', '.join(inputs)}")
    errors = []
    index_path = os.path.join(out_dir, "residuals.jsonl")
    bk = config.backend_obj()
    tasks = [(p, clip, channel, config.limits) for p in paths]
    with open(index_path, "a", encoding="utf-8") as index:
        for (path, *_), result in ordered_map(_residual_input, tasks, config.workers, 2 * config.workers):
            if isinstance(result, BaseException):
                errors.append(error_entry(path, result))
                continue
            pixels, info = result
            res = extract_residual(pixels[None], sigma=sigma, levels=levels, wavelet=wavelet,
                                   backend=bk, wiener=wiener)[0]
            stem = os.path.splitext(os.path.basename(path))[0]
            out = os.path.join(out_dir, f"{stem}-{info.sha256[:8]}.tif")
            tifffile.imwrite(out, res.astype(np.float32), metadata=None)
            record = {"path": path, "sha256": info.sha256, "shape": list(res.shape), "output": out,
                      "params": {"sigma": sigma, "levels": levels, "wavelet": wavelet,
                                 "clip": list(clip) if clip else None, "channel": channel,
                                 "wiener": wiener, "zero_mean": True},
                      "backend": bk.describe(), "std": float(res.std())}
            index.write(json.dumps(record, sort_keys=True) + "\n")
            if on_record is not None:
                on_record(record)
    return errors

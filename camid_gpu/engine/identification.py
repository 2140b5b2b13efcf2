"""``camid identify``: identify image files against a fingerprint store into a run folder.

Records are appended to ``results.jsonl`` in input order as each chunk finishes; a file that cannot be
used gets an error record naming the path and the reason, and everything already computed is kept.
Locally the chunks stream through the device with one chunk of look-ahead (:class:`LocalIdentify`); with
``--dask`` the batches go to Dask workers (:mod:`camid_gpu.engine.dask`).
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Callable, Sequence

from camid_gpu.backend.staging import UploadStager
from camid_gpu.config import Params, RunConfig
from camid_gpu.engine import run_folder
from camid_gpu.engine.context import RunContext, run_context
from camid_gpu.engine.dask import identify_on_dask
from camid_gpu.engine.scheduler import Progress, ResultsWriter, ordered_map, read_results
from camid_gpu.engine.scoring import ChunkScorer
from camid_gpu.engine.video import VideoIdentify, segments, video_spec
from camid_gpu.errors import CamidError, FingerprintMismatchError
from camid_gpu.pipeline import identify as ident
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline.records import ImageRecord, error_entry
from camid_gpu.provenance import input_entries, utc_now
from camid_gpu.store import CameraFingerprint, load_stores


#: the parameters a fingerprint store fixes (its values are the ones used, whatever was requested)
STORE_PARAMS = ("sigma_fingerprint", "sigma_mahalanobis", "levels", "wavelet")


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


def identify_files(fp_dir: str | list[str], inputs: Sequence[str], results_path: str, methods: Sequence[str],
                   params: Params, config: RunConfig | RunContext, resume: bool = False, kind: str = "auto",
                   clip_given: bool = False, truth_root: str | None = None, given: frozenset[str] = frozenset(),
                   command: str = "identify", lock: bool = True, unverified_store: bool = False,
                   store_built: bool = False,
                   on_records: Callable[[list[ImageRecord], Progress], None] | None = None,
                   adopt_unverified: bool = False, on_writing: Callable[[], None] | None = None) -> dict[str, Any]:
    """Identify every image in ``inputs`` (files or folders) against the fingerprints in ``fp_dir``.

    Records are appended to ``results_path`` (JSON Lines) in input order; its folder is the run folder
    (locked for the run unless ``lock`` is False because the caller holds it; its ``run.json`` is written,
    or checked on ``resume``: see :mod:`camid_gpu.engine.run_folder`). With ``truth_root`` (a ``disputed/``
    folder) each record also gets ``truth`` = its camera subfolder. With ``params.search_scales`` only PCE
    runs (the scale/crop search). ``on_records(records, progress)``: called as records are written (each image's
    decision can be shown as it is done, above the progress bar). The store is checked against its manifest
    (``store.verify_store``); one without a manifest is refused unless ``unverified_store`` (recorded in
    ``run.json`` and the manifest); ``store_built``: built by this run (evaluate), whose run folder checks it on
    resume. ``adopt_unverified``: see ``run_folder.record_spec``; ``on_writing()``: called once the checks passed.
    """
    run_dir = os.path.dirname(os.path.abspath(results_path))
    ctx = run_context(config)
    if lock:
        with run_folder.locked(run_dir):
            return identify_files(fp_dir, inputs, results_path, methods, params, ctx, resume, kind, clip_given,
                                  truth_root, given, command, lock=False, unverified_store=unverified_store,
                                  store_built=store_built, on_records=on_records, adopt_unverified=adopt_unverified,
                                  on_writing=on_writing)
    if params.search_scales is not None:
        methods = ("pce",)
    # everything is checked before any residual: the store, the geometry, the parameters, the inputs
    if ctx.config.decode == "gpu" and (ctx.dask or params.search_scales is not None):
        raise CamidError(f"--decode gpu is not available with {'--dask' if ctx.dask else '--search-scales'} "
                         f"(those decode on the CPU); use --decode auto or cpu")
    store = load_stores(fp_dir, methods=tuple(methods), unverified=unverified_store or store_built)
    custody = {"verified": None, "note": "built by this run"} if store_built else store.custody
    params = _resolve_params(store, params, clip_given, methods, given)
    listing = prepare.disputed_listing(inputs)
    paths = listing.images
    if os.path.exists(results_path) and not resume:
        raise CamidError(f"{results_path}: results file exists; pass --resume to continue it or choose another "
                         f"output")
    # the backend and working precision shape every number: a resume on another one would mix two computations
    # in one results.jsonl under one manifest "backend" line
    run_folder.record_spec(run_dir, run_folder.run_spec(command, params.to_dict(), methods, fp_dir, paths,
                                                        kind=kind, computed_by=ctx.computed_by(),
                                                        **({} if custody["verified"] is not False else
                                                           {"fingerprint_store": custody["note"]}),
                                                        **video_spec(paths)), resume,
                           adopt_unverified)
    existing = run_folder.existing_records(results_path) if resume else []
    writer = ResultsWriter(results_path, resume)
    if on_writing is not None:
        on_writing()
    plan = run_folder.plan_resume(paths, existing)
    if plan.changed:
        writer.write(plan.changed)
    todo = plan.todo
    progress = Progress(len(todo), "identify", ctx.config.progress)
    if on_records is not None:
        writer.on_write = lambda records: on_records(records, progress)

    def write(records: list[dict[str, Any]]) -> None:
        writer.write(_annotate(records, truth_root))
        progress.advance(len(records))

    try:
        videos = VideoIdentify(ctx, store, params, write, progress)
        for is_video, segment in segments(todo):  # videos in their input order, between the image chunks
            if is_video:
                videos.run(segment)
            elif ctx.dask:
                identify_on_dask(fp_dir, segment, write, methods, params, ctx, kind,
                                 unverified=unverified_store or store_built)
            else:
                LocalIdentify(ctx, store, params, methods, kind, write, progress).run(segment)
    finally:
        progress.close()
        writer.close()
    return {"results": results_path, "images": len(paths), "skipped_as_done": plan.done, "processed": len(todo),
            "retried": plan.retried, "changed": len(plan.changed), "duplicates": plan.duplicates,
            "skipped_inputs": [s.to_dict() for s in listing.skipped], "inputs_found": listing.counts(),
            "cameras": [fp.camera for fp in store], "params": params.to_dict(),
            "backend": ctx.describe(), "kernels": ctx.kernels(),
            "decode": ctx.config.decode,  # as asked; each record says which decoder made its pixels
            "fingerprint_store": custody}


def identify_run(fp_dir: str | list[str], inputs: Sequence[str], run_dir: str, methods: Sequence[str], params: Params,
                 config: RunConfig | RunContext, *, resume: bool = False, kind: str = "auto", clip_given: bool = False,
                 given: frozenset[str] = frozenset(), argv: Sequence[str] | None = None,
                 extra_outputs: Callable[[list[ImageRecord], dict[str, Any]], list[str]] | None = None,
                 on_records: Callable[[list[ImageRecord], Progress], None] | None = None,
                 unverified_store: bool = False,
                 adopt_unverified: bool = False) -> tuple[dict[str, Any], list[ImageRecord]]:
    """``camid identify``: :func:`identify_files` into ``run_dir/results.jsonl`` under the run folder's lock,
    then ``extra_outputs(records, run)`` (files it writes, e.g. ``--csv``; returns their paths), then the
    manifest. Returns (run summary with ``manifest`` and ``manifest_sha256``, the final records).

    A run stopped once its results were being written (Ctrl-C, SIGTERM, a full disk, an error) still gets a
    manifest of what it wrote (``"interrupted"`` says why), so that ``--resume`` can check those records against
    it; only a run killed outright (kill -9, power loss) leaves results without one (``--adopt-unverified``)."""
    started = utc_now()
    stores = [fp_dir] if isinstance(fp_dir, str) else list(fp_dir)  # several stores searched together
    run_folder.check_outputs(list(inputs) + stores, folders=[run_dir], command="identify")
    results = os.path.join(run_dir, run_folder.RESULTS_NAME)
    ctx = run_context(config)
    writing: list[bool] = []
    with run_folder.locked(run_dir):
        try:
            run = identify_files(fp_dir, inputs, results, methods, params, ctx, resume=resume, kind=kind,
                                 clip_given=clip_given, given=given, lock=False, on_records=on_records,
                                 unverified_store=unverified_store, adopt_unverified=adopt_unverified,
                                 on_writing=lambda: writing.append(True))
        except BaseException as exc:
            if writing:  # never before the checks passed: a refused resume must not get a new manifest
                _manifest_of_interrupted(run_dir, argv, params, ctx, started, fp_dir, methods, resume, exc)
            raise
        records = read_results(results)
        outputs = [results] + (extra_outputs(records, run) if extra_outputs else [])
        run["manifest"], run["manifest_sha256"] = run_folder.write_manifest(
            run_dir, "identify", argv, run["params"], run["backend"], started, input_entries(records), fp_dir,
            outputs, extra={"methods": list(methods), "resumed": resume, "skipped_inputs": run["skipped_inputs"],
                            "inputs_found": run["inputs_found"], "decode": run["decode"],
                            "fingerprint_store": run["fingerprint_store"]}, kernels=run["kernels"])
    return run, records


def _manifest_of_interrupted(run_dir: str, argv: Sequence[str] | None, params: Params, ctx: RunContext, started: str,
                             fp_dir: str | list[str], methods: Sequence[str], resume: bool, exc: BaseException) -> None:
    """The manifest of the records an interrupted identify run wrote (:func:`run_folder.write_interrupted_manifest`)."""
    results = os.path.join(run_dir, run_folder.RESULTS_NAME)
    run_folder.write_interrupted_manifest(exc, lambda why: run_folder.write_manifest(
        run_dir, "identify", argv, params.to_dict(), ctx.describe(), started, input_entries(read_results(results)),
        fp_dir, [results], extra={"methods": list(methods), "resumed": resume, **why}, kernels=ctx.kernels()))


def _annotate(records: list[dict[str, Any]], truth_root: str | None) -> list[dict[str, Any]]:
    for r in records:
        r["realpath"] = run_folder.canonical(r["path"])
        if truth_root:
            r["truth"] = prepare.ground_truth_of(r["path"], truth_root)
    return records


class LocalIdentify:
    """Identification in this process: chunks through the device with one chunk of look-ahead: chunk k+1 is
    decoded (GPU JPEGs) and its host clips start uploading (:class:`~camid_gpu.backend.staging.UploadStager`)
    before chunk k computes, so the copy overlaps the computation. Records go to ``write`` in input order,
    chunk by chunk."""

    def __init__(self, ctx: RunContext, store: Sequence[CameraFingerprint], params: Params, methods: Sequence[str],
                 kind: str, write: Callable[[list[dict[str, Any]]], None], progress: Progress | None = None):
        self.ctx, self.params, self.kind, self.write, self.progress = ctx, params, kind, write, progress
        self.scorer = ChunkScorer(ctx, store, params, methods)
        # the scale/crop search works on host pixels: there "auto" decodes on the CPU ("gpu" was refused above)
        self.decoder = ctx.jpeg_decoder() if params.search_scales is None else None
        self.sensor_shapes = sorted({fp.source_shape for fp in store})
        self.stager = UploadStager(ctx.backend)

    def run(self, todo: Sequence[str]) -> None:
        ctx = self.ctx
        on_device = self.decoder is not None
        tasks = [(p, self.params, self.sensor_shapes, self.kind, ctx.config.limits, on_device) for p in todo]
        prefetch = max(self.scorer.size + ctx.workers, 2)
        pending: list = []
        in_flight = None
        for (path, *_), result in ordered_map(prepare.prepare_disputed, tasks, ctx.workers, prefetch):
            if self.progress is not None:
                self.progress.started()  # the bar moves per image decoded, while chunks compute
            pending.append(error_entry(path, result) if isinstance(result, BaseException) else result)
            if sum(isinstance(x, prepare.Prepared) for x in pending) >= self.scorer.size:
                in_flight, pending = self._stage_then_finish(pending, in_flight), []
        if pending:
            in_flight = self._stage_then_finish(pending, in_flight)
        if in_flight is not None:
            self._finish(in_flight)

    def _stage_then_finish(self, pending: list, in_flight: tuple | None) -> tuple:
        """Stage ``pending`` (the next chunk), then finish the chunk in flight; returns the staged chunk."""
        staged = self._stage(pending)
        if in_flight is not None:
            self._finish(in_flight)
        return staged

    def _stage(self, pending: list) -> tuple[list, Any]:
        if self.decoder is not None:
            pending = prepare.decode_on_device(pending, self.decoder, self.params, self.sensor_shapes)
        pending = [error_entry(x.path, x) if isinstance(x, BaseException) else x for x in pending]
        prepared = [x for x in pending if isinstance(x, prepare.Prepared)]
        return pending, ident.stage_chunk(self.stager, prepared)

    def _finish(self, staged: tuple[list, Any]) -> None:
        pending, uploads = staged
        self.write(self.scorer.records(pending, uploads))

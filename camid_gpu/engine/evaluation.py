"""``camid evaluate``: fingerprint ``refs/<camera>/``, identify ``disputed/<camera>/`` and score the decisions
against the folders, into one run folder (fingerprints, results, evaluation, manifest)."""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from camid_gpu._shared.jsonio import write_json
from camid_gpu.config import Params, RunConfig
from camid_gpu.engine import run_folder
from camid_gpu.engine.context import RunContext, run_context
from camid_gpu.engine.fingerprinting import _fingerprint_folder, _fingerprints_of, reference_listing
from camid_gpu.engine.identification import identify_files
from camid_gpu.engine.scheduler import read_results
from camid_gpu.errors import CamidError
from camid_gpu.evaluate import summarise
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline.records import ImageRecord
from camid_gpu.provenance import file_entry, input_entries, utc_now


def evaluate_dataset(dataset_dir: str, out_dir: str, methods: Sequence[str], params: Params,
                     config: RunConfig | RunContext, resume: bool = False,
                     argv: Sequence[str] | None = None,
                     extra_outputs: Callable[[list[ImageRecord], dict[str, Any]], list[str]] | None = None,
                     adopt_unverified: bool = False) -> dict[str, Any]:
    """Fingerprint ``refs/<camera>/``, identify ``disputed/<camera>/``, and score against the folders.

    Writes ``out_dir/fingerprints/``, ``results.jsonl``, ``evaluation.json`` and ``manifest.json`` (with
    ``manifest.sha256``), under the run folder's lock; ``extra_outputs(records, summary)`` (e.g. the evidence
    file of ``--calibration``) writes more files before the manifest and returns their paths.
    ``adopt_unverified``: as :func:`~camid_gpu.engine.identification.identify_files`.
    """
    started = utc_now()
    ctx = run_context(config)  # one context for the fingerprints and the identification
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
            fp_summary = _fingerprints_of(refs, fp_dir, ctx)
        else:
            fp_summary = _fingerprint_folder(listed, fp_dir, methods, params, ctx)
        if not fp_summary["cameras"]:
            raise CamidError(f"{refs}: no fingerprint could be built: "
                             + "; ".join(e["error"]["reason"] for e in fp_summary["errors"]))
        writing: list[bool] = []
        try:
            run = identify_files(fp_dir, [disputed], results_path, methods, params, ctx, resume=resume,
                                 truth_root=disputed, command="evaluate", lock=False, store_built=True,
                                 adopt_unverified=adopt_unverified, on_writing=lambda: writing.append(True))
        except BaseException as exc:
            if writing:  # never before the checks passed: a refused resume must not get a new manifest
                _manifest_of_interrupted(out_dir, argv, params, ctx, started, fp_dir, fp_summary, exc)
            raise
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
            fp_dir, fp_files + [results_path, evaluation_path]
            + (extra_outputs(records, summary) if extra_outputs else []),
            extra={"dataset": os.path.abspath(dataset_dir), "methods": list(methods),
                   "skipped_inputs": skipped_inputs, "decode": run["decode"],
                   "warnings": fp_summary.get("warnings", [])}, kernels=run["kernels"])
        summary["skipped_inputs"] = skipped_inputs  # for the caller to print; the manifest records them
        summary["fingerprint_warnings"] = fp_summary.get("warnings", [])  # (not in evaluation.json)
    return summary


def _manifest_of_interrupted(out_dir: str, argv: Sequence[str] | None, params: Params, ctx: RunContext, started: str,
                             fp_dir: str, fp_summary: dict[str, Any], exc: BaseException) -> None:
    """The manifest of what an interrupted evaluate run wrote (its fingerprints and records so far:
    :func:`run_folder.write_interrupted_manifest`)."""
    results = os.path.join(out_dir, "results.jsonl")
    fp_files = [f for c in fp_summary["cameras"] for f in (c["metadata"], c["arrays"])]
    run_folder.write_interrupted_manifest(exc, lambda why: run_folder.write_manifest(
        out_dir, "evaluate", argv, params.to_dict(), ctx.describe(), started,
        input_entries(read_results(results)) + [file_entry(p, "reference") for p in fp_summary["files"]],
        fp_dir, fp_files + [results], extra=why, kernels=ctx.kernels()))

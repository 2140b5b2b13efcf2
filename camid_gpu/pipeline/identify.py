"""Building fingerprints from reference folders and identifying disputed images, on one backend.

Host preparation is in :mod:`camid_gpu.pipeline.prepare`, the result records in :mod:`camid_gpu.pipeline.records`.

This module joins the stages below it (``io`` -> ``prnu``: residual, fingerprint, pce; ``mahalanobis``) for
whole images: ``prepare_*`` functions are pure host work (decode, rotate, clip) that worker processes can run,
``*_chunk`` functions do the device work on a batch. The scheduler (``camid_gpu.engine.scheduler``) streams
files through them; results are plain JSON-ready dicts, one per image.

PCE is the primary decision everywhere. The Mahalanobis method (``camid_gpu.mahalanobis``) is
reported beside it, with diagnostics of what drove its vote.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from camid_gpu import mahalanobis as maha
from camid_gpu._shared.jsonio import json_float
from camid_gpu.backend import Array, Backend
from camid_gpu.backend.staging import Upload, UploadStager
from camid_gpu.config import MIN_REFERENCES, Params
from camid_gpu.errors import ImageError, ScoreError
from camid_gpu.io.decode import ImageInfo
from camid_gpu.io.geometry import green_channel, to_8bit
from camid_gpu.pipeline.prepare import KINDS, Prepared, content_problem, load_reference
from camid_gpu.pipeline.records import base_record, error_entry, mahalanobis_record, pce_record
from camid_gpu.prnu.fingerprint import FingerprintAccumulator
from camid_gpu.prnu.pce import pce_scores
from camid_gpu.prnu.residual import gray_intensity, pixels_to_device, residual_native, wiener_dft
from camid_gpu.store import CameraFingerprint, check_camera_name, software_versions


# ----------------------------------------------------------------------------------------------
# Fingerprints
# ----------------------------------------------------------------------------------------------
def build_fingerprint(camera: str, paths: Sequence[str], bk: Backend, params: Params,
                      methods: Sequence[str], batch_size: int = 4,
                      loaded: Any = None) -> tuple[CameraFingerprint | None, list[dict[str, Any]]]:
    """Fingerprint of one camera from its reference files.

    Files that cannot be read, or whose size or orientation differs from the first good one, get an
    error entry and are left out. With fewer than ``params.refs`` good files the camera is refused
    (returns None and an error entry). ``loaded`` may be an iterable of ``(path, result)`` where
    result is ``(pixels, info)``, ``(pixels, info, decoder, note)`` (from
    :func:`~camid_gpu.pipeline.prepare.decode_references`: pixels may be device arrays, and each reference's
    entry records its decoder) or an exception (the scheduler decodes in worker processes).
    """
    check_camera_name(camera)
    errors: list[dict[str, Any]] = []
    good: list[tuple[Any, ImageInfo]] = []
    decoders: dict[str, dict[str, str]] = {}  # per reference path, when a GPU decoder was asked for
    want = params.refs
    stream = loaded if loaded is not None else ((p, _try(load_reference, p, params.clip)) for p in paths)
    source_shape = None
    for path, result in stream:
        if isinstance(result, BaseException):
            errors.append(error_entry(path, result))
            continue
        pixels, info, *how = result
        problem = content_problem(pixels, info.bit_depth, reference=True)
        if problem:
            errors.append({"path": path, "error": {"kind": "unusable-reference", "reason": f"{problem}; left out"}})
            continue
        shape = (info.height, info.width)
        if source_shape is None:
            source_shape, layout, depth = shape, pixels.shape, info.bit_depth
        if shape != source_shape or pixels.shape != layout or info.bit_depth != depth:
            errors.append({"path": path, "error": {"kind": "mismatch", "reason":
                           f"size/channels/bit depth {info.height}x{info.width}x{info.channels} {info.bit_depth}-bit "
                           f"differ from the camera's first reference {source_shape[0]}x{source_shape[1]} "
                           f"{layout} {depth}-bit; left out"}})
            continue
        good.append((pixels, info))
        if how:
            decoders[info.path] = {"decoder": how[0], **({"decoder_note": how[1]} if how[1] else {})}
        if want is not None and len(good) == want:
            break
    if want is not None and len(good) < want:
        errors.append({"path": camera, "error": {"kind": "too-few-references", "reason":
                       f"camera {camera!r} has {len(good)} usable reference images, {want} required (--refs)"}})
        return None, errors
    if len(good) < MIN_REFERENCES:
        errors.append({"path": camera, "error": {"kind": "too-few-references", "reason":
                       f"camera {camera!r} has {len(good)} usable reference image(s); at least {MIN_REFERENCES} are "
                       f"needed (config.MIN_REFERENCES)"}})
        return None, errors
    arrays: dict[str, np.ndarray] = {}
    if "pce" in methods:
        acc = FingerprintAccumulator(params.sigma_fingerprint, params.levels, params.wavelet, bk)
        for start in range(0, len(good), batch_size):
            acc.add(_stack_pixels(bk, [p for p, _ in good[start:start + batch_size]]))
        arrays["k"] = acc.fingerprint()
    if "mahalanobis" in methods:
        greens = _stack_pixels(bk, [_green_8bit(bk, p) for p, _ in good])
        means = bk.to_numpy(maha.fingerprint(bk, greens, params.sigma_mahalanobis, params.levels, params.wavelet,
                                             batch_size=batch_size))
        arrays["mean_i0"], arrays["mean_prnu"] = means[0].astype(np.float32), means[1].astype(np.float32)
    fp = CameraFingerprint(
        camera=camera, methods=tuple(m for m in ("pce", "mahalanobis") if m in methods), arrays=arrays,
        clip=params.clip, source_shape=source_shape,
        params=dict(params.fingerprint_params(), refs=len(good)),
        references=[{"path": i.path, "abspath": os.path.abspath(i.path), "sha256": i.sha256,
                     "size": [i.height, i.width], **decoders.get(i.path, {})} for _, i in good],
        software=software_versions())
    return fp, errors


def _try(func, *args):
    try:
        return func(*args)
    except (ImageError, OSError) as exc:
        return exc


# ----------------------------------------------------------------------------------------------
# Identification
# ----------------------------------------------------------------------------------------------
def clip_batches(items: Sequence[Prepared]) -> dict[tuple, list[tuple[int, int]]]:
    """The (image, rotation) clips of a chunk grouped into batches of one layout (shape, dtype, host or
    device), sorted: stacking uint8 with uint16 would upcast and mis-scale the 8-bit clips."""
    batches: dict[tuple, list[tuple[int, int]]] = {}
    for i, item in enumerate(items):
        for r, clip in enumerate(item.clips):
            layout = (tuple(clip.shape), str(clip.dtype), isinstance(clip, np.ndarray))
            batches.setdefault(layout, []).append((i, r))
    return dict(sorted(batches.items()))


def stage_chunk(stager: UploadStager, items: Sequence[Prepared]) -> dict[tuple, Upload]:
    """Start the uploads of a chunk's host clips (one per batch of :func:`clip_batches`), so that they copy
    while the previous chunk computes; :func:`identify_chunk` takes them as ``uploads``. Device clips (from
    the GPU decoder) are already there."""
    return {layout: stager.stage([items[i].clips[r] for i, r in sel])
            for layout, sel in clip_batches(items).items() if layout[2]}


def _stack_pixels(bk: Backend, arrays: Sequence[Any]) -> np.ndarray | Array:
    """One batch of pixel arrays of one shape: their NumPy stack when all are host arrays (integers travel to
    the device as they are), else a native float stack on the 0..255 scale (GPU-decoded arrays, possibly with
    host ones that the CPU decoded)."""
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np.stack(arrays)
    if not any(isinstance(a, np.ndarray) for a in arrays):
        return pixels_to_device(bk, bk.stack(arrays, 0))
    return bk.stack([pixels_to_device(bk, a) for a in arrays], 0)


def _green_8bit(bk: Backend, clip: Any) -> Any:
    """The green plane as 8-bit pixels; device clips (GPU-decoded JPEGs) are 8-bit already."""
    return to_8bit(green_channel(clip)) if isinstance(clip, np.ndarray) else green_channel(clip)


def identify_chunk(bk: Backend, store: Sequence[CameraFingerprint], items: Sequence[Prepared],
                   params: Params, methods: Sequence[str], fp_device: dict | None = None,
                   uploads: dict[tuple, Upload] | None = None) -> list[dict[str, Any]]:
    """Score a chunk of prepared disputed images against every fingerprint; one dict per image.

    ``fp_device``: a cache dict for the fingerprints' device arrays (filled on first use). ``uploads``: the
    chunk's host clips already on their way to the device (:func:`stage_chunk` on these very ``items``).
    """
    cams = [fp.camera for fp in store]
    cache = fp_device if fp_device is not None else {}
    if "k" not in cache and "pce" in methods:
        cache["k"] = bk.asarray(np.stack([fp.k for fp in store]))
    if "maha" not in cache and "mahalanobis" in methods:
        cache["maha"] = bk.asarray(np.stack([np.stack([fp.mean_i0, fp.mean_prnu]) for fp in store]))
    # every (image, rotation) clip in one batch
    flat = [(i, r) for i, item in enumerate(items) for r in range(len(item.rotations))]
    results = [base_record(item) for item in items]
    failed: dict[int, dict[str, Any]] = {}  # image index -> error record (every score non-finite)
    chosen = [0] * len(items)
    if params.search_scales is not None:
        return _search_chunk(bk, store, items, params, results)
    if "pce" in methods and flat:
        scores_by_clip = {}
        for layout, sel in clip_batches(items).items():
            if uploads is not None and layout in uploads:
                pixels = pixels_to_device(bk, uploads[layout])
            else:
                pixels = pixels_to_device(bk, _stack_pixels(bk, [items[i].clips[r] for i, r in sel]))
            res = wiener_dft(bk, residual_native(bk, pixels, params.sigma_query, params.levels, params.wavelet))
            inten = gray_intensity(bk, pixels)
            scores = pce_scores(bk, res, inten, cache["k"], params.shift_range)
            for j, key in enumerate(sel):
                scores_by_clip[key] = {name: getattr(scores, name)[j] for name in ("pce", "ncc", "log10_p_fa",
                                                                                     "peak_shift")}
        for i, item in enumerate(items):
            best_r = max(range(len(item.rotations)), key=lambda r: _finite_max(scores_by_clip[(i, r)]["pce"]))
            chosen[i] = best_r
            try:
                results[i]["pce"] = pce_record(cams, scores_by_clip[(i, best_r)], params.pce_threshold, item.path)
            except ScoreError as exc:
                failed[i] = error_entry(item.path, exc)
                continue
            results[i]["rotation"] = item.rotations[best_r]
            if len(item.rotations) > 1:
                results[i]["pce"]["max_pce_by_rotation"] = {
                    str(item.rotations[r]): json_float(_finite_max(scores_by_clip[(i, r)]["pce"]))
                    for r in range(len(item.rotations))}
    if "mahalanobis" in methods and items:
        for kind in KINDS:
            members = [i for i, item in enumerate(items) if item.kind == kind]
            if not members:
                continue
            names = [items[i].path for i in members]
            clips = _stack_pixels(bk, [_green_8bit(bk, items[i].clips[chosen[i]]) for i in members])
            i0, prnu = maha.traces(bk, clips, params.sigma_mahalanobis, params.levels, params.wavelet)
            if kind == "natural" and params.natural_mode == "paper":
                outcome = maha.classify_images(bk, [to_8bit(items[i].natural_green) for i in members],
                                               cache["maha"], natural=True, mode="paper", order=PAPER_SCAN_ORDER,
                                               sigma=params.sigma_mahalanobis, levels=params.levels,
                                               wavelet=params.wavelet, camera_names=cams, image_names=names)
            else:
                outcome = maha.compare_traces(bk, maha.trace_vectors(bk, i0, prnu), cache["maha"],
                                              natural=kind == "natural", camera_names=cams, image_names=names)
            summaries = maha.trace_summary(bk, i0, prnu)
            for d, i in enumerate(members):
                results[i]["mahalanobis"] = mahalanobis_record(outcome, d)
                results[i]["mahalanobis"]["trace"] = summaries[d]
    for i, item in enumerate(items):
        results[i].setdefault("rotation", item.rotations[chosen[i]])
    return [failed.get(i, r) for i, r in enumerate(results)]


def _finite_max(values: np.ndarray) -> float:
    """The largest finite value (-inf when there is none): a NaN never wins a comparison."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else -math.inf


def _search_chunk(bk: Backend, store: Sequence[CameraFingerprint], items: Sequence[Prepared], params: Params,
                  results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PCE with the scale and crop search, per image and rotation tried; the best rotation is kept."""
    from camid_gpu.prnu.search import scale_grid, search_record, search_scale_crop

    grid = scale_grid(*params.search_scales)
    prints = [(fp.camera, fp.k) for fp in store]
    for i, item in enumerate(items):
        best = None
        for r, degrees in enumerate(item.rotations):
            found = search_scale_crop(bk, item.clips[r], prints, scales=grid, sigma=params.sigma_query,
                                      levels=params.levels, wavelet=params.wavelet)
            record = search_record(found, params.pce_threshold)
            if best is None or (record["best_pce"] or -math.inf) > (best[1]["best_pce"] or -math.inf):
                best = (degrees, record)
        results[i]["rotation"], results[i]["pce"] = best
        results[i]["mahalanobis_skipped"] = "the Mahalanobis method has no scale/crop search"
    return results


#: pixel order of "paper" mode: MATLAB's x(:) in the authors' code is column-major
PAPER_SCAN_ORDER = "F"


def with_params(params: Params, **changes: Any) -> Params:
    return replace(params, **{k: v for k, v in changes.items() if v is not None})


__all__ = ["build_fingerprint", "clip_batches", "identify_chunk", "stage_chunk", "with_params"]

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
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu import mahalanobis as maha
from camid_gpu._shared.jsonio import json_float
from camid_gpu.backend import Array, Backend
from camid_gpu.backend.base import to_host
from camid_gpu.backend.staging import Upload, UploadStager
from camid_gpu.config import Params
from camid_gpu.errors import ImageError, ScoreError
from camid_gpu.io.decode import ImageInfo
from camid_gpu.io.geometry import center_clip, green_channel, to_8bit
from camid_gpu.pipeline import references as refs
from camid_gpu.pipeline.crops import apply_crop_rule
from camid_gpu.pipeline.prepare import CROP, FULL, Prepared, load_reference, match_geometry, rotations_to_try
from camid_gpu.pipeline.prepare import mahalanobis_content_problem, reference_content_problem
from camid_gpu.pipeline.copies import CameraCopies, ReferenceCheck, reference_label
from camid_gpu.pipeline.records import (CROPS_SCALES, base_record, camera_score, error_entry, error_record,
                                        mahalanobis_record, pce_record, searched_record)
from camid_gpu.prnu.decision import union_bound
from camid_gpu.prnu.fingerprint import FingerprintAccumulator
from camid_gpu.prnu.pce import pce_scores
from camid_gpu.prnu.residual import gray_intensity, pixels_to_device, residual_native, wiener_dft
from camid_gpu.prnu.search import search_scale_crop
from camid_gpu.store import CameraFingerprint, check_camera_name, software_versions


# ----------------------------------------------------------------------------------------------
# Fingerprints
# ----------------------------------------------------------------------------------------------
def build_fingerprint(camera: str, paths: Sequence[str], bk: Backend, params: Params, methods: Sequence[str],
                      batch_size: int | Callable[[tuple[int, int]], int] = 4, loaded: Any = None,
                      check: ReferenceCheck | None = None) -> tuple[CameraFingerprint | None, list[dict[str, Any]]]:
    """Fingerprint of one camera from its reference files.

    Files that cannot be read, or whose size differs from the first good one, get an error entry and are left
    out; references turned by a quarter turn are turned back (:mod:`camid_gpu.pipeline.references`; each
    one's entry says ``turned_back_degrees``). With fewer than ``params.refs`` good files the camera is refused
    (returns None and an error entry). ``loaded``: an iterable of ``(path, result)``, result ``(pixels, info)``,
    ``(pixels, info, decoder, note)`` (from :func:`~camid_gpu.pipeline.prepare.decode_references`: pixels may be
    device arrays, each reference's entry records its decoder) or an exception (decoded in workers). ``batch_size``:
    references per residual batch, or a function of the references' sensor size (rows, columns) that gives it
    (the engine's memory budget). A photo met again is used once (:class:`~.copies.CameraCopies`; ``check``: the run's).
    """
    check_camera_name(camera)
    copies = CameraCopies(camera, check)
    errors: list[dict[str, Any]] = []
    good: list[tuple[Any, ImageInfo]] = []
    decoders: dict[str, dict[str, str]] = {}  # per reference path, when a GPU decoder was asked for
    want = params.refs
    turned: list[tuple[Any, ImageInfo]] = []  # a quarter turn from the first reference
    stream = loaded if loaded is not None else ((p, _try(load_reference, p)) for p in paths)
    source_shape = None
    for path, result in stream:
        if isinstance(result, BaseException):
            errors.append(error_entry(path, result))
            # a reference video found damaged after some of its frames came: none of them is used
            good = [g for g in good if g[1].path != path]
            turned = [t for t in turned if t[1].path != path]
            continue
        pixels, info, *how = result
        problem = reference_content_problem(pixels, info.bit_depth, [params.clip_of(m) for m in methods])
        if problem:
            errors.append(error_record(path, "unusable-reference", f"{problem}; left out"))
            continue
        copy = copies.copy_of(reference_label(info), pixels)
        if copy:
            errors.append(copy)
            continue
        shape = (info.height, info.width)
        if source_shape is None:
            source_shape, layout, depth = shape, pixels.shape, info.bit_depth
            small = refs.too_small(camera, source_shape, params, methods)  # at the first reference, not after all
            if small:
                return None, errors + [small]
        if info.bit_depth == depth and refs.is_turned(shape, source_shape, pixels.shape, layout):
            turned.append((pixels, info))  # turned back (or left out) once every reference is in
        elif shape != source_shape or pixels.shape != layout or info.bit_depth != depth:
            errors.append(error_record(path, "mismatch",
                          f"size/channels/bit depth {info.height}x{info.width}x{info.channels} {info.bit_depth}-bit "
                          f"differ from the camera's first reference {source_shape[0]}x{source_shape[1]} "
                          f"{layout} {depth}-bit; left out"))
            continue
        else:
            good.append((pixels, info))
        if how:
            decoders[info.path] = {"decoder": how[0], **({"decoder_note": how[1]} if how[1] else {})}
        if want is not None and len(good) + len(turned) == want:
            break
    if turned:  # frames of both orientations: the majority is the sensor's, the others are turned back
        good, errs = refs.settle_orientation(camera, good, turned, bk, params, decoders)
        errors.extend(errs)
        source_shape = (good[0][1].height, good[0][1].width)
        small = refs.too_small(camera, source_shape, params, methods)
        if small:
            return None, errors + [small]
    short = refs.count_problem(camera, len(good), want, "usable")
    if short:
        return None, errors + [short]
    if callable(batch_size):
        batch_size = batch_size(source_shape)
    arrays = _fingerprint_arrays(bk, good, params, methods, max(1, int(batch_size)), copies.keep)
    copies.built([reference_label(i) for _, i in good])
    kept = tuple(m for m in ("pce", "mahalanobis") if m in methods)
    fp = CameraFingerprint(
        camera=camera, methods=kept, arrays=arrays, clips={m: params.clip_of(m) for m in kept},
        source_shape=source_shape,
        params=dict(params.fingerprint_params(), refs=len(good)),
        references=[{"path": i.path, "abspath": os.path.abspath(i.path), "sha256": i.sha256,
                     "size": [i.height, i.width], "pixels_sha256": copies.pixel_hash(reference_label(i)), **decoders.get(i.path, {}),
                     **({"video_frame": i.frame} if i.frame and "video_frame" in i.frame else {})} for _, i in good],
        software=software_versions())
    return fp, errors


def _fingerprint_arrays(bk: Backend, good: Sequence[tuple[Any, ImageInfo]], params: Params, methods: Sequence[str],
                        batch_size: int, keep: Any = None) -> dict[str, np.ndarray]:
    """The fingerprint's arrays from the usable references: ``k`` (PCE; ``batch_size`` references per residual
    batch) and ``mean_i0``/``mean_prnu`` (Mahalanobis), for the ``methods`` asked."""
    arrays: dict[str, np.ndarray] = {}
    if "pce" in methods:
        acc = FingerprintAccumulator(params.sigma_fingerprint, params.levels, params.wavelet, bk)
        acc.on_residuals = keep
        for start in range(0, len(good), batch_size):
            acc.add(_stack_pixels(bk, [center_clip(p, params.pce_clip, i.path) for p, i in good[start:start + batch_size]]))
        arrays["k"] = acc.fingerprint()
    if "mahalanobis" in methods:
        greens = _stack_pixels(bk, [_green_8bit(bk, center_clip(p, params.mahalanobis_clip, i.path)) for p, i in good])
        means = bk.to_numpy(maha.fingerprint(bk, greens, params.sigma_mahalanobis, params.levels, params.wavelet,
                                             batch_size=batch_size))
        arrays["mean_i0"], arrays["mean_prnu"] = means[0].astype(np.float32), means[1].astype(np.float32)
    return arrays


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
            if clip is None:  # smaller than the PCE clipping at this rotation
                continue
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


def comparisons(item: Prepared, store: Sequence[CameraFingerprint], method: str,
                params: Params) -> tuple[dict[str, list[tuple[int, str]]], dict[str, dict[str, Any]]]:
    """Which fingerprints of a (mixed) store image ``item`` can be compared with by ``method``, and how.

    Returns ``(matches, refused)``: ``matches[camera]`` lists ``(degrees, relation)`` for every rotation
    tried (``params.rotations``) at which the image matches the camera's sensor frame (relation
    ``FULL``), or, for PCE with full-frame fingerprints only, fits inside it (``CROP``; used only when no
    rotation matches in full); ``refused[camera]`` is the "not comparable" entry: reason, image and
    fingerprint sizes (rows, columns), rotations tried.
    """
    matches: dict[str, list[tuple[int, str]]] = {}
    refused: dict[str, dict[str, Any]] = {}
    h, w = item.shape_at(0)
    for fp in store:
        tried = rotations_to_try((h, w), fp.source_shape, params.rotations)
        found, reasons = [], []
        for degrees in tried:
            relation, why = match_geometry(item.shape_at(degrees), fp.source_shape, fp.clip_of(method),
                                           crops=method == "pce")
            (found.append((degrees, relation)) if relation else reasons.append(why))
        if found:
            full = [f for f in found if f[1] == FULL]
            matches[fp.camera] = full or found
        else:
            reason = reasons[0]
            if 90 not in tried and match_geometry((w, h), fp.source_shape, fp.clip_of(method), method == "pce")[0]:
                reason += " (turned by 90 degrees it would be comparable: --rotations auto or all)"
            refused[fp.camera] = {"reason": reason, "image_size": [h, w],
                                  "fingerprint_size": list(fp.source_shape), "rotations_tried": list(tried)}
    return matches, refused


def pce_plan(item: Prepared, store: Sequence[CameraFingerprint],
             params: Params) -> tuple[dict[str, list[tuple[int, str]]], dict[str, dict[str, Any]], dict[str, Any]]:
    """:func:`comparisons` for PCE with the crop rule (:mod:`camid_gpu.pipeline.crops`: an image of some stored
    camera's sensor size is not crop-searched in larger sensors unless ``params.search_crops``). Returns
    ``(matches, refused, searched)``, the last the record's ``searched``."""
    matches, refused = comparisons(item, store, "pce", params)
    searched = apply_crop_rule(item.shape_at(0), {fp.camera: fp.source_shape for fp in store}, matches, refused,
                               params.search_crops)
    return matches, refused, searched


def identify_chunk(bk: Backend, store: Sequence[CameraFingerprint], items: Sequence[Prepared],
                   params: Params, methods: Sequence[str], fp_device: dict | None = None,
                   uploads: dict[tuple, Upload] | None = None, residuals: dict | None = None) -> list[dict[str, Any]]:
    """Score a chunk of prepared disputed images against the fingerprints of their geometry; one dict per image.

    Each image is scored against every fingerprint it is comparable with (:func:`comparisons`); the others
    are listed under the method's ``not_comparable``, with no score and no part in the decision.
    ``fp_device``: a cache dict for the Mahalanobis fingerprints' device arrays (filled on first use); the PCE
    fingerprints stay on the host and travel one camera chunk at a time (full frames of many cameras).
    ``uploads``: the chunk's host clips already on their way to the device (:func:`stage_chunk` on these very
    ``items``). ``residuals``: ``(image index, degrees) -> (Wiener-filtered residual, gray intensity)`` of clips
    of the PCE geometry computed already (a library search's screening computed them), used instead of computing
    them again.
    """
    cache = fp_device if fp_device is not None else {}
    results = [base_record(item) for item in items]
    failed: dict[int, dict[str, Any]] = {}  # image index -> error record (every score non-finite)
    if params.search_scales is not None:
        return _search_chunk(bk, store, items, params, results)
    by_name = {fp.camera: fp for fp in store}
    pce_rotation: list[int | None] = [None] * len(items)
    if "pce" in methods:
        plans = [pce_plan(item, store, params) for item in items]
        scored = _pce_full_frames(bk, by_name, items, plans, params, uploads, residuals)
        for i, item in enumerate(items):
            matches, refused, searched = plans[i]
            for degrees, cams in _crop_tasks(matches).items():
                found = search_scale_crop(bk, to_host(item.view(degrees)), [(c, by_name[c].k) for c in cams], scales=[1.0],
                                          sigma=params.sigma_query, levels=params.levels, wavelet=params.wavelet)
                for res in found:
                    scored[(i, degrees, res.camera)] = {
                        "pce": res.pce, "ncc": None, "log10_p_fa": res.log10_p_fa, "peak_shift": list(res.offset),
                        "match": CROP, "offset": list(res.offset), "positions_searched": res.positions_searched}
            per_camera, by_rotation = {}, {}
            for cam, found in matches.items():
                options = [(d, scored[(i, d, cam)]) for d, _ in found]
                degrees, best = max(options, key=lambda o: _finite_or_minus_inf(o[1]["pce"]))
                for d, s in options:
                    by_rotation[d] = max(by_rotation.get(d, -math.inf), _finite_or_minus_inf(s["pce"]))
                per_camera[cam] = camera_score(best, degrees, len(options))
            try:
                results[i]["pce"] = pce_record(per_camera, refused, params.pce_threshold, item.path, searched)
            except ScoreError as exc:  # every score non-finite: an error for this image, never a "best"
                failed[i] = error_entry(item.path, exc)
                continue
            best_cam = results[i]["pce"]["best"]
            pce_rotation[i] = per_camera[best_cam]["rotation"] if best_cam else None
            results[i]["rotation"] = pce_rotation[i] if best_cam else 0
            if len(by_rotation) > 1:
                results[i]["pce"]["max_pce_by_rotation"] = {str(d): json_float(v) for d, v in sorted(by_rotation.items())}
    if "mahalanobis" in methods and items:
        _mahalanobis_part(bk, store, items, params, results, pce_rotation, cache)
    for i, item in enumerate(items):
        results[i].setdefault("rotation", 0)
    return [failed.get(i, r) for i, r in enumerate(results)]


def _finite_or_minus_inf(value: Any) -> float:
    """A score for comparisons: a NaN or infinite PCE never wins."""
    v = float(value)
    return v if math.isfinite(v) else -math.inf


def _crop_tasks(matches: dict[str, list[tuple[int, str]]]) -> dict[int, list[str]]:
    tasks: dict[int, list[str]] = {}
    for cam, found in matches.items():
        for degrees, relation in found:
            if relation == CROP:
                tasks.setdefault(degrees, []).append(cam)
    return tasks


def _pce_full_frames(bk: Backend, by_name: dict[str, CameraFingerprint], items: Sequence[Prepared], plans: list,
                     params: Params, uploads: dict[tuple, Upload] | None,
                     residuals: dict | None = None) -> dict[tuple[int, int, str], dict[str, Any]]:
    """PCE of every (image, rotation, camera) whose sizes match, batched by layout (:func:`clip_batches`, the
    batches :func:`stage_chunk` uploads): one residual per (image, rotation) clip of the PCE geometry that some
    fingerprint matches, correlated with the fingerprints of that sensor size, camera chunk by camera chunk.

    A residual batch holds at most ``len(items)`` clips: the chunk size is planned per image from the memory
    budget, and an image tried at two or four rotations must not multiply the working set."""
    scored: dict[tuple[int, int, str], dict[str, Any]] = {}
    match = "full-frame" if params.pce_clip is None else "clip"
    step = max(1, len(items))
    for layout, sel in clip_batches(items).items():
        wanted = {(i, items[i].rotations[r], cam) for i, r in sel for cam, found in plans[i][0].items()
                  if (items[i].rotations[r], FULL) in found}
        # the clips some fingerprint matches (a rotation that matches none gets no residual), by position in sel
        keep = [j for j, (i, r) in enumerate(sel) if any(w[0] == i and w[1] == items[i].rotations[r] for w in wanted)]
        if not keep:  # no fingerprint of this geometry (e.g. a rotation that fits none)
            continue
        upload = uploads.get(layout) if uploads is not None else None
        for start in range(0, len(keep), step):
            part = keep[start:start + step]
            members = [sel[j] for j in part]
            cams = sorted({cam for i, d, cam in wanted
                           if any(i == m_i and d == items[m_i].rotations[m_r] for m_i, m_r in members)})
            known = [residuals.get((i, items[i].rotations[r])) for i, r in members] if residuals else [None]
            if all(k is not None for k in known):  # computed already (a library search's screening)
                res, inten = (bk.stack([bk.asarray(k[n]) for k in known], 0) for n in (0, 1))
            else:
                if upload is not None:  # converted to floats part by part
                    pixels = pixels_to_device(bk, upload, None if len(part) == len(sel) else part)
                else:
                    pixels = pixels_to_device(bk, _stack_pixels(bk, [items[i].clips[r] for i, r in members]))
                res = wiener_dft(bk, residual_native(bk, pixels, params.sigma_query, params.levels, params.wavelet))
                inten = gray_intensity(bk, pixels)
                del pixels
            # host float32 (h, w) each; pce_scores moves one camera chunk at a time to the device
            scores = pce_scores(bk, res, inten, [by_name[c].k for c in cams], params.shift_range)
            del res, inten
            for j, (i, r) in enumerate(members):
                d = items[i].rotations[r]
                for c, cam in enumerate(cams):
                    if (i, d, cam) in wanted:  # a pair of another sensor size in the same batch is dropped
                        scored[(i, d, cam)] = {"pce": float(scores.pce[j, c]), "ncc": float(scores.ncc[j, c]),
                                               "log10_p_fa": float(scores.log10_p_fa[j, c]),
                                               "peak_shift": [int(v) for v in scores.peak_shift[j, c]],
                                               "match": match}
    return scored


def _mahalanobis_part(bk: Backend, store: Sequence[CameraFingerprint], items: Sequence[Prepared], params: Params,
                      results: list[dict[str, Any]], pce_rotation: list[int | None], cache: dict) -> None:
    """The Mahalanobis method, per image against the cameras of its sensor size at one rotation (the PCE
    decision's when it is one of them): its pairwise votes only ever compare cameras of one geometry."""
    cams_all = [fp.camera for fp in store]
    plan: dict[tuple, list[int]] = {}
    chosen: dict[int, int] = {}
    refused_of: dict[int, dict[str, dict[str, Any]]] = {}
    for i, item in enumerate(items):
        matches, refused = comparisons(item, store, "mahalanobis", params)
        rotations = sorted({d for found in matches.values() for d, _ in found},
                           key=lambda d: (d != pce_rotation[i], item.rotations.index(d)))
        if not rotations:
            refused_of[i] = refused
            results[i]["mahalanobis"] = {"membership": {}, "associated": [], "tie": False, "not_comparable": refused}
            continue
        degrees = rotations[0]
        unusable = mahalanobis_content_problem(item, degrees, params.mahalanobis_clip)
        if unusable:  # said so, never a membership computed on constant or blown-out pixels
            results[i]["mahalanobis"] = {"membership": {}, "associated": [], "tie": False, "not_comparable": refused,
                                         "insufficient_content": unusable}
            continue
        members = tuple(c for c in cams_all if any(d == degrees for d, _ in matches.get(c, [])))
        for cam in cams_all:
            if cam not in members and cam not in refused:
                h, w = item.shape_at(0)
                fp_shape = next(fp.source_shape for fp in store if fp.camera == cam)
                refused[cam] = {"reason": f"image {h}x{w}, fingerprint {fp_shape[0]}x{fp_shape[1]}: matches only at "
                                          f"another rotation; the votes ran at {degrees} degrees (the PCE decision's "
                                          f"rotation where it has one), among the cameras of that geometry only, "
                                          f"and this camera took no part", "image_size": [h, w],
                                "fingerprint_size": list(fp_shape), "rotations_tried": [degrees]}
        chosen[i], refused_of[i] = degrees, refused
        plan.setdefault((item.kind, members), []).append(i)
    for (kind, members), indices in plan.items():
        key = ("maha", members)
        if key not in cache:
            by_name = {fp.camera: fp for fp in store}
            cache[key] = bk.asarray(np.stack([np.stack([by_name[c].mean_i0, by_name[c].mean_prnu]) for c in members]))
        names = [items[i].path for i in indices]
        clips = _stack_pixels(bk, [_green_8bit(bk, items[i].view(chosen[i], params.mahalanobis_clip)) for i in indices])
        i0, prnu = maha.traces(bk, clips, params.sigma_mahalanobis, params.levels, params.wavelet)
        if kind == "natural" and params.natural_mode == "paper":
            outcome = maha.classify_images(bk, [to_8bit(items[i].natural_green) for i in indices], cache[key],
                                           natural=True, mode="paper", order=PAPER_SCAN_ORDER,
                                           sigma=params.sigma_mahalanobis, levels=params.levels,
                                           wavelet=params.wavelet, camera_names=list(members), image_names=names)
        else:
            outcome = maha.compare_traces(bk, maha.trace_vectors(bk, i0, prnu), cache[key],
                                          natural=kind == "natural", camera_names=list(members), image_names=names)
        summaries = maha.trace_summary(bk, i0, prnu)
        for d, i in enumerate(indices):
            results[i]["mahalanobis"] = mahalanobis_record(outcome, d)
            results[i]["mahalanobis"]["trace"] = summaries[d]
            results[i]["mahalanobis"]["not_comparable"] = refused_of[i]
            if len(members) == 1:  # no competitor: the pairwise test is vacuous (membership undefined)
                results[i]["mahalanobis"]["undetermined"] = (
                    f"only one camera ({members[0]}) has this image's geometry: the pairwise votes need at least "
                    f"two, so the method gives no association")
            if "pce" not in results[i]:
                results[i]["rotation"] = chosen[i]


def _search_chunk(bk: Backend, store: Sequence[CameraFingerprint], items: Sequence[Prepared], params: Params,
                  results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PCE with the scale and crop search, per image: every camera is searched at each of its rotations
    (:func:`~camid_gpu.pipeline.prepare.rotations_to_try`) at which the image fits inside its fingerprint at the
    largest scale, and keeps its best rotation, as the full-frame path does; the false-alarm probability of a
    camera searched at several rotations is the union bound over them. Cameras the image fits at no rotation
    are not comparable."""
    from camid_gpu.prnu.search import scale_grid, scaled_size, search_record

    grid = scale_grid(*params.search_scales)
    top = float(np.max(grid))
    for i, item in enumerate(items):
        h, w = item.shape_at(0)
        refused: dict[str, dict[str, Any]] = {}
        plan: dict[int, list[tuple[str, np.ndarray]]] = {}
        for fp in store:
            tried = [d for d in rotations_to_try((h, w), fp.source_shape, params.rotations) if d in item.rotations]
            size = scaled_size(fp.source_shape, top)
            fits = [d for d in tried if item.shape_at(d)[0] <= size[0] and item.shape_at(d)[1] <= size[1]]
            for d in fits:
                plan.setdefault(d, []).append((fp.camera, fp.k))
            if not fits:
                refused[fp.camera] = {"reason": f"image {h}x{w}, fingerprint {fp.source_shape[0]}x"
                                                f"{fp.source_shape[1]}: larger than the fingerprint at scale {top:g}",
                                      "image_size": [h, w], "fingerprint_size": list(fp.source_shape),
                                      "rotations_tried": tried}
        found: dict[str, list[tuple[int, Any]]] = {}
        for degrees in sorted(plan, key=item.rotations.index):
            for res in search_scale_crop(bk, to_host(item.view(degrees)), plan[degrees], scales=grid,
                                         sigma=params.sigma_query, levels=params.levels, wavelet=params.wavelet):
                found.setdefault(res.camera, []).append((degrees, res))
        chosen, best_results, by_rotation = {}, [], {}
        for fp in store:  # store order
            if fp.camera not in found:
                continue
            options = found[fp.camera]
            degrees, res = max(options, key=lambda o: _finite_or_minus_inf(o[1].pce))
            for d, r in options:
                by_rotation[d] = max(by_rotation.get(d, -math.inf), _finite_or_minus_inf(r.pce))
            if len(options) > 1:  # the union bound over the rotations searched
                res = replace(res, log10_p_fa=union_bound(res.log10_p_fa, len(options)))
            chosen[fp.camera] = (degrees, len(options))
            best_results.append(res)
        if best_results:
            record = search_record(best_results, params.pce_threshold)
            for cam, (degrees, count) in chosen.items():
                record["scores"][cam]["rotation"] = int(degrees)
                record["scores"][cam]["rotations_searched"] = int(count)
        else:
            record = {"method": "pce-scale-crop-search", "threshold": float(params.pce_threshold), "scores": {},
                      "best": None, "best_pce": None, "decision": None, "above_threshold": []}
        record["not_comparable"] = dict(sorted(refused.items()))
        record["searched"] = searched_record({cam: CROP for cam in chosen}, [], CROPS_SCALES)
        if len(by_rotation) > 1:
            record["max_pce_by_rotation"] = {str(d): json_float(v) for d, v in sorted(by_rotation.items())}
        results[i]["rotation"] = chosen[record["best"]][0] if record["best"] else 0
        results[i]["pce"] = record
        results[i]["mahalanobis_skipped"] = "the Mahalanobis method has no scale/crop search"
    return results


#: pixel order of "paper" mode: MATLAB's x(:) in the authors' code is column-major
PAPER_SCAN_ORDER = "F"


def with_params(params: Params, **changes: Any) -> Params:
    return replace(params, **{k: v for k, v in changes.items() if v is not None})


__all__ = ["build_fingerprint", "clip_batches", "comparisons", "identify_chunk", "pce_plan", "stage_chunk", "with_params"]

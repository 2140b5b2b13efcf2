"""Building fingerprints from reference folders and identifying disputed images, on one backend.

This module joins the stages below it (``io`` -> ``prnu``: residual, fingerprint, pce; ``mahalanobis``) for
whole images: ``prepare_*`` functions are pure host work (decode, rotate, clip) that worker processes can run,
``*_chunk`` functions do the device work on a batch. The scheduler (``camid_gpu.engine.scheduler``) streams
files through them; results are plain JSON-ready dicts, one per image.

PCE is the primary decision everywhere. The Mahalanobis method (``camid_gpu.mahalanobis.classifier``) is
reported beside it, with diagnostics of what drove its vote.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from camid_gpu.mahalanobis import classifier as maha
from camid_gpu.backend import Backend
from camid_gpu.config import Params
from camid_gpu.errors import CamidError, FingerprintError, ImageError
from camid_gpu.prnu.fingerprint import FingerprintAccumulator
from camid_gpu.io.images import ImageInfo, center_clip, green_channel, list_images, read_image, to_8bit
from camid_gpu.prnu.pce import json_number, pce_scores
from camid_gpu.prnu.residual import gray_intensity, pixels_to_device, residual_native, wiener_dft
from camid_gpu.store import CameraFingerprint, check_camera_name, software_versions

KINDS = ("flat", "natural")


def error_entry(path: str, exc: BaseException) -> dict[str, Any]:
    """A JSON-ready per-file error record."""
    if isinstance(exc, ImageError):
        return {"path": exc.path, "error": {"kind": exc.kind, "reason": exc.reason}}
    return {"path": path, "error": {"kind": type(exc).__name__, "reason": str(exc)}}


# ----------------------------------------------------------------------------------------------
# Fingerprints
# ----------------------------------------------------------------------------------------------
@dataclass
class CameraRefs:
    """A camera's reference files, after selection; ``errors`` are per-file error entries."""

    camera: str
    paths: list[str]
    errors: list[dict[str, Any]] = field(default_factory=list)


def camera_folders(refs_dir: str) -> list[tuple[str, str]]:
    """(camera, folder) for every subfolder of ``refs_dir`` (sorted)."""
    if not os.path.isdir(refs_dir):
        raise CamidError(f"{refs_dir}: reference folder does not exist")
    found = [(name, os.path.join(refs_dir, name)) for name in sorted(os.listdir(refs_dir))
             if os.path.isdir(os.path.join(refs_dir, name)) and not name.startswith(".")]
    if not found:
        raise CamidError(f"{refs_dir}: no camera subfolders (expected REFS_DIR/<camera>/<images>)")
    return found


def load_reference(path: str, clip: tuple[int, int] | None) -> tuple[np.ndarray, ImageInfo]:
    """Decode a reference image and clip it: pixels (h, w[, 3]) uint8/uint16."""
    pixels, info = read_image(path)
    return center_clip(pixels, clip, path), info


def build_fingerprint(camera: str, paths: Sequence[str], bk: Backend, params: Params,
                      methods: Sequence[str], batch_size: int = 4,
                      loaded: Any = None) -> tuple[CameraFingerprint | None, list[dict[str, Any]]]:
    """Fingerprint of one camera from its reference files.

    Files that cannot be read, or whose size or orientation differs from the first good one, get an
    error entry and are left out. With fewer than ``params.refs`` good files the camera is refused
    (returns None and an error entry). ``loaded`` may be an iterable of ``(path, result)`` where
    result is ``(pixels, info)`` or an exception (the scheduler decodes in worker processes).
    """
    check_camera_name(camera)
    errors: list[dict[str, Any]] = []
    good: list[tuple[np.ndarray, ImageInfo]] = []
    want = params.refs
    stream = loaded if loaded is not None else ((p, _try(load_reference, p, params.clip)) for p in paths)
    source_shape = None
    for path, result in stream:
        if isinstance(result, BaseException):
            errors.append(error_entry(path, result))
            continue
        pixels, info = result
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
        if want is not None and len(good) == want:
            break
    if want is not None and len(good) < want:
        errors.append({"path": camera, "error": {"kind": "too-few-references", "reason":
                       f"camera {camera!r} has {len(good)} usable reference images, {want} required (--refs)"}})
        return None, errors
    if not good:
        errors.append({"path": camera, "error": {"kind": "too-few-references",
                                                 "reason": f"camera {camera!r} has no usable reference images"}})
        return None, errors
    arrays: dict[str, np.ndarray] = {}
    if "pce" in methods:
        acc = FingerprintAccumulator(params.sigma_fingerprint, params.levels, params.wavelet, bk)
        for start in range(0, len(good), batch_size):
            acc.add(np.stack([p for p, _ in good[start:start + batch_size]]))
        arrays["k"] = acc.fingerprint()
    if "mahalanobis" in methods:
        greens = np.stack([to_8bit(green_channel(p)) for p, _ in good])
        means = bk.to_numpy(maha.fingerprint(bk, greens, params.sigma_mahalanobis, params.levels, params.wavelet,
                                             batch_size=batch_size))
        arrays["mean_i0"], arrays["mean_prnu"] = means[0].astype(np.float32), means[1].astype(np.float32)
    fp = CameraFingerprint(
        camera=camera, methods=tuple(m for m in ("pce", "mahalanobis") if m in methods), arrays=arrays,
        clip=params.clip, source_shape=source_shape,
        params=dict(params.fingerprint_params(), refs=len(good)),
        references=[{"path": i.path, "abspath": os.path.abspath(i.path), "sha256": i.sha256,
                     "size": [i.height, i.width]} for _, i in good],
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
@dataclass
class Prepared:
    """A decoded disputed image, rotated and clipped for every rotation to try (host arrays)."""

    path: str
    info: ImageInfo
    kind: str
    kind_source: str
    rotations: list[int]
    clips: list[np.ndarray]  # per rotation: (h, w[, 3]) pixels
    natural_green: np.ndarray | None = None  # whole-image green plane (paper mode only)


def guess_kind(path: str, green: np.ndarray) -> tuple[str, str]:
    """'flat' or 'natural' from the file name when it says so, else from the content.

    Content rule (documented heuristic): a 16x-downsampled copy whose relative spread (std/mean)
    is under 0.15 is a flat field.
    """
    name = os.path.basename(path).lower()
    for kind in KINDS:
        if kind in name:
            return kind, "name"
    h, w = green.shape
    f = max(1, min(h, w) // 16)
    small = green[: h // f * f, : w // f * f].astype(np.float64).reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    spread = small.std() / max(small.mean(), 1e-9)
    return ("flat" if spread < 0.15 else "natural"), "content"


def rotations_to_try(shape: tuple[int, int], fp_shape: tuple[int, int], mode: str) -> list[int]:
    """Quarter turns (degrees, counter-clockwise) to try for an image of ``shape`` (rows, columns)."""
    if mode == "none":
        return [0]
    if mode == "all":
        return [0, 90, 180, 270]

    def orient(s):
        return (s[1] > s[0]) - (s[0] > s[1])

    o, fo = orient(shape), orient(fp_shape)
    return [0] if o == fo or o == 0 or fo == 0 else [0, 90, 180, 270]


def prepare_disputed(path: str, params: Params, fp_source_shape: tuple[int, int],
                     kind: str = "auto") -> Prepared:
    """Host work for one disputed image: decode, decide the kind, rotate, clip. Raises ImageError."""
    pixels, info = read_image(path)
    if kind == "auto":
        kind, source = guess_kind(path, green_channel(pixels))
    else:
        source = "given"
    rotations, clips = [], []
    last_error: ImageError | None = None
    for degrees in rotations_to_try((info.height, info.width), fp_source_shape, params.rotations):
        turned = np.rot90(pixels, degrees // 90) if degrees else pixels
        try:
            clips.append(np.ascontiguousarray(center_clip(turned, params.clip, path)))
            rotations.append(degrees)
        except ImageError as exc:
            last_error = exc
    if not clips:
        raise last_error  # type: ignore[misc]
    natural = green_channel(pixels) if (kind == "natural" and params.natural_mode == "paper") else None
    return Prepared(path, info, kind, source, rotations, clips, natural)


def identify_chunk(bk: Backend, store: Sequence[CameraFingerprint], items: Sequence[Prepared],
                   params: Params, methods: Sequence[str], fp_device: dict | None = None) -> list[dict[str, Any]]:
    """Score a chunk of prepared disputed images against every fingerprint; one dict per image.

    ``fp_device``: a cache dict for the fingerprints' device arrays (filled on first use).
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
    chosen = [0] * len(items)
    if params.search_scales is not None:
        return _search_chunk(bk, store, items, params, results)
    if "pce" in methods and flat:
        # one batch per (shape, dtype): stacking uint8 with uint16 would upcast and mis-scale the 8-bit clip
        layout_of = lambda i, r: (items[i].clips[r].shape, items[i].clips[r].dtype.str)  # noqa: E731
        scores_by_clip = {}
        for layout in sorted({layout_of(i, r) for i, r in flat}):
            sel = [(i, r) for i, r in flat if layout_of(i, r) == layout]
            pixels = pixels_to_device(bk, np.stack([items[i].clips[r] for i, r in sel]))  # integers travel
            res = wiener_dft(bk, residual_native(bk, pixels, params.sigma_query, params.levels, params.wavelet))
            inten = gray_intensity(bk, pixels)
            scores = pce_scores(bk, res, inten, cache["k"], params.shift_range)
            for j, key in enumerate(sel):
                scores_by_clip[key] = {name: getattr(scores, name)[j] for name in ("pce", "ncc", "log10_p_fa",
                                                                                     "peak_shift")}
        for i, item in enumerate(items):
            best_r = max(range(len(item.rotations)), key=lambda r: float(np.max(scores_by_clip[(i, r)]["pce"])))
            chosen[i] = best_r
            results[i]["pce"] = pce_record(cams, scores_by_clip[(i, best_r)], params.pce_threshold)
            results[i]["rotation"] = item.rotations[best_r]
            if len(item.rotations) > 1:
                results[i]["pce"]["max_pce_by_rotation"] = {
                    str(item.rotations[r]): float(np.max(scores_by_clip[(i, r)]["pce"]))
                    for r in range(len(item.rotations))}
    if "mahalanobis" in methods and items:
        for kind in KINDS:
            members = [i for i, item in enumerate(items) if item.kind == kind]
            if not members:
                continue
            names = [items[i].path for i in members]
            clips = np.stack([to_8bit(green_channel(items[i].clips[chosen[i]])) for i in members])
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
    return results


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


def mahalanobis_record(outcome: "maha.MahalanobisResult", d: int) -> dict[str, Any]:
    """Compact JSON-ready method-2 result of image ``d``: membership, association (ties listed),
    the pairwise counts (the paper's Tables 2-3) as C x C matrices, pixels used, and the diagnostics
    of what drove the vote for this image alone."""
    one = replace(outcome, image_names=outcome.image_names[d:d + 1],
                  **{name: getattr(outcome, name)[d:d + 1] for name in
                     ("selected", "covariance", "valid", "pixels", "satisfied", "intensity_satisfied",
                      "prnu_satisfied")},
                  true_cameras=None)
    cams = outcome.camera_names
    member = one.membership[0]
    return {
        "mode": outcome.mode,
        "membership": {c: json_number(m) for c, m in zip(cams, member)},
        "associated": list(one.associations[0]),
        "tie": len(one.associations[0]) > 1,
        "pairwise": {"cameras": list(cams), "satisfied": one.satisfied[0].tolist(),
                     "unsatisfied": one.unsatisfied[0].tolist()},
        "selected_pixels": {c: int(v) for c, v in zip(cams, one.selected[0])},
        "diagnostics": one.diagnostics(),
    }


def base_record(item: Prepared) -> dict[str, Any]:
    info = item.info
    return {"path": item.path, "sha256": info.sha256, "file_size": info.file_size, "format": info.format,
            "size": [info.height, info.width], "channels": info.channels, "bit_depth": info.bit_depth,
            "exif": info.exif, "kind": item.kind, "kind_source": item.kind_source,
            "rotations_tried": list(item.rotations), "error": None}


def pce_record(cameras: Sequence[str], scores: dict[str, np.ndarray], threshold: float) -> dict[str, Any]:
    """JSON-ready PCE result of one image: per-camera statistics and the decision."""
    per_camera = {}
    for c, cam in enumerate(cameras):
        per_camera[cam] = {"pce": json_number(scores["pce"][c]), "ncc": json_number(scores["ncc"][c]),
                           "log10_p_fa": json_number(scores["log10_p_fa"][c]),
                           "peak_shift": [int(v) for v in scores["peak_shift"][c]]}
    order = np.argsort(-np.asarray(scores["pce"]), kind="stable")
    best = cameras[int(order[0])]
    above = [cameras[int(c)] for c in order if scores["pce"][int(c)] > threshold]
    return {"scores": per_camera, "best": best, "best_pce": json_number(scores["pce"][int(order[0])]),
            "decision": above[0] if above else None, "above_threshold": above, "threshold": threshold}


def ground_truth_of(path: str, disputed_dir: str) -> str | None:
    """The camera a disputed image belongs to, from its folder: ``disputed/<camera>/...``."""
    rel = os.path.relpath(path, disputed_dir)
    parts = rel.split(os.sep)
    return parts[0] if len(parts) > 1 else None


def dataset_layout(dataset_dir: str) -> tuple[str, str]:
    refs, disputed = os.path.join(dataset_dir, "refs"), os.path.join(dataset_dir, "disputed")
    for p in (refs, disputed):
        if not os.path.isdir(p):
            raise CamidError(f"{dataset_dir}: expected the folders refs/<camera>/ and disputed/<camera>/; "
                             f"{p} is missing")
    return refs, disputed


def disputed_images(paths: Sequence[str]) -> list[str]:
    found = list_images(*paths)
    if not found:
        raise CamidError(f"no images found in {', '.join(map(str, paths))}")
    return found


def with_params(params: Params, **changes: Any) -> Params:
    return replace(params, **{k: v for k, v in changes.items() if v is not None})


__all__ = ["Params", "build_fingerprint", "identify_chunk", "prepare_disputed", "FingerprintError"]

"""The residuals of a clustering run: decode, turn and clip each image (worker processes), residual rows on
the backend in chunks sized from the run's memory budget, one record per input in ``RUN/images.jsonl``.

A geometry group holds the images of one sensor size (rows x columns, landscape; portrait images are turned
both ways, 90 and 270 degrees, and each turn is a row).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from camid_gpu._shared.jsonio import sha256_or_none, write_json
from camid_gpu.backend import Backend
from camid_gpu.cluster.rows import RowStore, _stores_from_records
from camid_gpu.cluster.scene import store_scene
from camid_gpu.cluster.similarity import normalise_rows
from camid_gpu.cluster.video import video_rows
from camid_gpu.config import CLUSTER_MIN_REGION, CLUSTER_MIN_RESIDUAL_RMS, ClusterParams, InputLimits
from camid_gpu.engine.context import RunContext
from camid_gpu.engine.video import current_options as current_video_options
from camid_gpu.engine.scheduler import Progress, ResultsWriter, ordered_map, read_results, run_chunk_with_retry
from camid_gpu.errors import CamidError, ImageNoSignalError, ImageTooSmallError
from camid_gpu.io import ImageInfo, center_clip, read_image
from camid_gpu.io.listing import file_identity, printable
from camid_gpu.pipeline.copies import pixels_sha256
from camid_gpu.pipeline.records import error_entry
from camid_gpu.pipeline.video import is_video_path
from camid_gpu.prnu.residual import pixels_to_device, residual_native, wiener_dft


#: pixels assumed per image when sizing chunks for full-frame regions (the size is known only after decoding;
#: a 24 MP frame, so that bigger chunks are not planned for smaller frames than that)
FULL_FRAME_PIXELS = 24_000_000


def group_key(height: int, width: int) -> tuple[int, int]:
    """The sensor geometry of an image: (short side, long side), i.e. landscape rows x columns."""
    return (min(height, width), max(height, width))


def group_name(group: tuple[int, int]) -> str:
    return f"{group[0]}x{group[1]}"


def region_clip(group: tuple[int, int], region: int | None) -> tuple[int, int] | None:
    """The clipping compared in a group: the largest centred square up to ``region``, or None (full)."""
    if region is None:
        return None
    side = min(region, group[0])
    return (side, side)


@dataclass
class PreparedImage:
    """A decoded image turned to landscape and clipped, once per candidate rotation (host arrays)."""

    path: str
    info: ImageInfo
    group: tuple[int, int]
    rotations: list[int]
    clips: list[np.ndarray]
    pixels_sha256: str = ""  # of the decoded pixels: one photo in two containers has one


def prepare_image(path: str, region: int | None, limits: InputLimits | None = None) -> PreparedImage:
    """Host work for one image (worker processes): decode within ``limits``, turn portrait frames both ways, clip."""
    pixels, info = read_image(path, limits=limits)
    group = group_key(info.height, info.width)
    if group[0] < CLUSTER_MIN_REGION:
        raise ImageTooSmallError(path, f"image is {info.height}x{info.width}; clustering needs at least "
                                       f"{CLUSTER_MIN_REGION} pixels on the short side")
    rotations = [90, 270] if info.height > info.width else [0]
    clip = region_clip(group, region)
    clips = [np.ascontiguousarray(center_clip(np.rot90(pixels, r // 90) if r else pixels, clip, path))
             for r in rotations]
    return PreparedImage(path, info, group, rotations, clips, pixels_sha256(pixels))


def residual_rows(bk: Backend, clips: Sequence[np.ndarray], params: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """Normalised Wiener-filtered gray residuals of clips of one shape and dtype -> ``(m, h*w)`` float32,
    and each residual's RMS before normalising ``(m,)`` float64 (0..255 gray levels)."""
    pixels = pixels_to_device(bk, np.stack(clips))
    res = wiener_dft(bk, residual_native(bk, pixels, params.sigma, params.levels, params.wavelet))
    host = bk.to_numpy(res).reshape(len(clips), -1).astype(np.float64)
    rms = np.sqrt(np.mean((host - host.mean(axis=1, keepdims=True)) ** 2, axis=1))
    return normalise_rows(host), rms


def check_resume_params(run_dir: str, params: ClusterParams, resume: bool, precision: str,
                        video: dict[str, Any] | None = None) -> None:
    """Refuse to continue a run made with other residual parameters or working precision (``--precision``):
    its rows would not be comparable, or the run would mix float32 and float64 residuals. ``video``: the video
    options (``--frames``) when the run has videos: a video's row pools the frames they choose."""
    path = os.path.join(run_dir, "cluster-params.json")
    shaping = {k: params.to_dict()[k] for k in ("region", "sigma", "levels", "wavelet")}
    shaping["residual_precision"] = precision
    if video is not None:
        shaping["video"] = video
    if resume and os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as handle:
                stored = json.load(handle)
            if not isinstance(stored, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise CamidError(f"{path} is damaged ({exc}); the run's residual parameters are unknown, so it cannot "
                             f"be resumed: start a new run folder") from exc
        stored.setdefault("residual_precision", precision)  # folders written before it was recorded
        if "video" in stored and "video" not in shaping:  # a run with videos, resumed with images only
            shaping["video"] = current_video_options()
        diffs = [f"{k}: run {stored.get(k)!r}, requested {v!r}" for k, v in shaping.items() if stored.get(k) != v]
        if diffs:
            raise CamidError(f"{run_dir} was made with other residual parameters ({'; '.join(diffs)}); "
                             f"resume with the same ones or start a new run folder")
        return
    if os.path.exists(os.path.join(run_dir, "images.jsonl")):
        if not resume:
            return  # ResultsWriter refuses this case with its own message
        raise CamidError(f"{path} is missing: the residuals in {run_dir} were made with unknown parameters and "
                         f"cannot be resumed; start a new run folder")
    write_json(path, shaping)  # atomic: an interrupted write never leaves a damaged file


def already_in_run(paths: Sequence[str], records_path: str) -> tuple[list[str], list[dict[str, str]]]:
    """Split new ``paths`` into those to add and those naming a file already in the run under another spelling
    (a relative and an absolute path, a link, a hard link): a second record of one file would link with its
    first at NCC 1 and make a "cluster" of one image. Returns (paths to keep, skipped entries)."""
    if not os.path.exists(records_path):
        return list(paths), []
    known = {r["path"] for r in read_results(records_path)}
    first = {file_identity(p): p for p in sorted(known)}
    keep, skipped = [], []
    for p in paths:
        twin = None if p in known else first.get(file_identity(p))
        if twin is None:
            keep.append(p)
        else:
            skipped.append({"path": p, "reason": f"duplicate: the same file as {printable(twin)}, already in the run"})
    return keep, skipped


def compute_residuals(paths: Sequence[str], run_dir: str, params: ClusterParams, ctx: RunContext,
                      resume: bool) -> tuple[list[dict[str, Any]], int]:
    """Residual rows of every new image appended to the group stores; returns (all records, processed)."""
    records_path = os.path.join(run_dir, "images.jsonl")
    writer = ResultsWriter(records_path, resume)
    existing = read_results(records_path) if resume and os.path.exists(records_path) else []
    stores = _stores_from_records(run_dir, existing)
    changed = [p for p in paths if writer.done.get(p) and not writer.is_done(p, sha256_or_none(p))]
    if changed:
        writer.close()
        raise CamidError(f"{len(changed)} file(s) changed since they were added to {run_dir}, e.g. {changed[0]}: "
                         f"their residuals no longer match them; start a new run folder")
    todo = [p for p in paths if not writer.is_done(p)]
    bk = ctx.backend
    pixels = params.region ** 2 if params.region else FULL_FRAME_PIXELS
    size = ctx.chunk(pixels, rotations=2)
    state = {"size": size}
    progress = Progress(len(todo), "residuals", ctx.config.progress)

    def compute(items: list[tuple[int, int, np.ndarray]]) -> list[tuple[np.ndarray, float]]:
        rows, rms = residual_rows(bk, [c for _, _, c in items], params)
        return list(zip(rows, rms))

    def flush(pending: list) -> None:
        prepared = [x for x in pending if isinstance(x, PreparedImage)]
        flat = [(i, k, item.clips[k]) for i, item in enumerate(prepared) for k in range(len(item.clips))]
        rows_of: dict[tuple[int, int], np.ndarray] = {}
        for layout in sorted({(c.shape, c.dtype.str) for _, _, c in flat}):
            sel = [x for x in flat if (x[2].shape, x[2].dtype.str) == layout]
            for (i, k, _), row in zip(sel, run_chunk_with_retry(compute, sel, lambda n: state.update(size=n))):
                rows_of[(i, k)] = row
        records = []
        index = 0
        for x in pending:
            if not isinstance(x, PreparedImage):
                records.append(x)
                continue
            index += 1
            rms = np.array([rows_of[(index - 1, k)][1] for k in range(len(x.clips))])  # one per rotation
            flat_rms = float(rms.max()) if np.isfinite(rms).all() else float("nan")
            if not np.isfinite(flat_rms):  # never normalised into a row that looks valid
                records.append(error_entry(x.path, ImageNoSignalError(
                    x.path, f"the residual is not finite (RMS {flat_rms}); the backend produced NaN or Inf")))
                continue
            if not flat_rms >= CLUSTER_MIN_RESIDUAL_RMS:  # normalising rounding error would make it look alike
                records.append(error_entry(x.path, ImageNoSignalError(
                    x.path, f"no sensor noise to compare: the residual's RMS is {flat_rms:.3g} gray levels (under "
                            f"{CLUSTER_MIN_RESIDUAL_RMS:g}); a constant or saturated frame")))
                continue
            name = group_name(x.group)
            clip_shape = x.clips[0].shape[:2]
            if name not in stores:
                stores[name] = RowStore(os.path.join(run_dir, "residuals", f"{name}.f32"),
                                        clip_shape[0] * clip_shape[1], 0)
            rows = stores[name].append(np.stack([rows_of[(index - 1, k)][0] for k in range(len(x.clips))]))
            store_scene(run_dir, name, rows, x.clips)
            info = x.info
            records.append({"path": x.path, "sha256": info.sha256, "file_size": info.file_size, "format": info.format,
                            "size": [info.height, info.width], "channels": info.channels, "bit_depth": info.bit_depth,
                            "exif": info.exif, "group": name, "region": list(clip_shape), "rotations": x.rotations,
                            "rows": rows, "pixels_sha256": x.pixels_sha256, "error": None})
        writer.write(records)
        progress.advance(len(records))

    pending: list = []
    try:
        videos = {p for p in todo if is_video_path(p)}  # each pooled into one row here (a video is not an image)
        for path in (p for p in todo if p in videos):
            writer.write([_video_record(path, run_dir, params, ctx, stores)])
            progress.advance(1)
        tasks = [(p, params.region, ctx.config.limits) for p in todo if p not in videos]
        for (path, *_), result in ordered_map(prepare_image, tasks, ctx.workers, max(size + ctx.workers, 2)):
            pending.append(error_entry(path, result) if isinstance(result, BaseException) else result)
            if sum(isinstance(x, PreparedImage) for x in pending) >= state["size"]:
                flush(pending)
                pending = []
        if pending:
            flush(pending)
    finally:
        progress.close()
        writer.close()
    return read_results(records_path), len(todo)


def _video_record(path: str, run_dir: str, params: ClusterParams, ctx: RunContext,
                  stores: dict[str, RowStore]) -> dict[str, Any]:
    """A video's record, its pooled rows appended to its group's store (:mod:`camid_gpu.cluster.video`)."""
    try:
        record, rows, firsts = video_rows(path, params, ctx, lambda shape: region_clip(group_key(*shape),
                                                                                       params.region))
    except (CamidError, OSError, MemoryError, ValueError) as exc:
        return error_entry(path, exc)
    name = record["group"] = group_name(group_key(*record["size"]))
    if name not in stores:
        stores[name] = RowStore(os.path.join(run_dir, "residuals", f"{name}.f32"), rows.shape[1], 0)
    record["rows"] = stores[name].append(rows)
    store_scene(run_dir, name, record["rows"], firsts)
    return record

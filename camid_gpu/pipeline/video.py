"""Videos in identify and fingerprint: a video's frames decoded in bounded batches, pooled
(:class:`~camid_gpu.prnu.video.VideoPool`), scored against the fingerprints of its frame size, or searched in
scale and offset against still-image fingerprints of a larger sensor (hybrid matching); and the frames of a
reference video fed to a camera's fingerprint.

Memory: at most ``batch`` frames are held at once (the run's budget decides it: ``RunContext.fingerprint_batch``),
plus one pooled correlation plane per camera compared; nothing grows with the video's length.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from camid_gpu._shared.jsonio import json_number
from camid_gpu.backend import Backend
from camid_gpu.config import (VIDEO_ALIGN_RANGE, VIDEO_FRAMES, VIDEO_HYBRID_SPAN, VIDEO_HYBRID_STEP,
                              InputLimits, Params)
from camid_gpu.errors import ImageContentError, ImageTooSmallError
from camid_gpu.io.geometry import center_clip
from camid_gpu.io.video import VideoReader, check_selection
from camid_gpu.pipeline.prepare import MIN_SIDE, content_problem, kind_in_name
from camid_gpu.pipeline.records import video_record
from camid_gpu.prnu.decision import decide
from camid_gpu.prnu.scales import crop_positions, scale_grid, scaled_size
from camid_gpu.prnu.video import VideoPool, frame_products, hybrid_scales, search_pooled, type_weight


@dataclass
class VideoOptions:
    """What a video run computes beyond :class:`~camid_gpu.config.Params` (recorded in each video's record)."""

    frames: Any = VIDEO_FRAMES           # "i", "all" or a count (--frames)
    align_range: int = VIDEO_ALIGN_RANGE  # stabilisation: per-frame shift search, pixels each way
    hybrid_step: float = VIDEO_HYBRID_STEP
    hybrid_span: float = VIDEO_HYBRID_SPAN

    def __post_init__(self) -> None:
        self.frames = check_selection(self.frames)

    def to_dict(self) -> dict[str, Any]:
        return {"frames": str(self.frames), "align_range": self.align_range,
                "hybrid_step": self.hybrid_step, "hybrid_span": self.hybrid_span}


@dataclass
class HybridCache:
    """Scale and offset found for (camera, video frame size): later videos of that size try it first (one
    position, P_FA of one position), and search the whole grid only when it does not match there."""

    found: dict[tuple[str, tuple[int, int]], dict[str, Any]] = field(default_factory=dict)


def frame_batches(reader: VideoReader, batch: int, clip: tuple[int, int] | None,
                  held: list[int] | None = None) -> Iterator[tuple[np.ndarray, list[dict[str, Any]]]]:
    """The reader's frames in batches of at most ``batch`` (centre-clipped to ``clip``); ``held`` (a one-item
    list), when given, records the most frames ever held at once (the memory test reads it)."""
    pixels: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    for frame, meta in reader.frames():
        pixels.append(center_clip(frame, clip, reader.path))
        metas.append(meta.to_dict())
        if held is not None:
            held[0] = max(held[0], len(pixels))
        if len(pixels) >= batch:
            yield np.stack(pixels), metas
            pixels, metas = [], []
    if pixels:
        yield np.stack(pixels), metas


def _comparable(store: Sequence[Any], shape: tuple[int, int], options: VideoOptions,
                scales: tuple[float, float, float] | None = None
                ) -> tuple[list[Any], dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """The cameras of the frames' own size (pooled), those of a larger sensor the frame fits in at some scale
    (hybrid: camera -> scale grid: ``scales`` (--search-scales LO:HI:STEP) when given, else
    :func:`~camid_gpu.prnu.video.hybrid_scales`), and the others (not comparable, with the reason)."""
    same, hybrid, refused = [], {}, {}
    for fp in store:
        sensor = tuple(fp.source_shape)
        if getattr(fp, "k", None) is None:
            refused[fp.camera] = {"reason": "no PCE fingerprint in the store (videos are scored by PCE)",
                                  "image_size": list(shape), "fingerprint_size": list(sensor), "rotations_tried": [0]}
        elif sensor == shape:
            same.append(fp)
            continue
        grid = np.array([])
        if fp.clip_of("pce") is None:
            grid = hybrid_scales(shape, sensor, options.hybrid_step, options.hybrid_span) if scales is None else \
                np.array([s for s in scale_grid(*scales) if crop_positions(scaled_size(sensor, s), shape)])
        if grid.size:
            hybrid[fp.camera] = grid
        else:
            refused[fp.camera] = {"reason": f"video frame {shape[0]}x{shape[1]}, fingerprint {sensor[0]}x{sensor[1]}:"
                                            f" the frame fits inside the sensor at no scale (or the fingerprint is "
                                            f"a clip)", "image_size": list(shape), "fingerprint_size": list(sensor),
                                  "rotations_tried": [0]}
    return same, hybrid, refused


def identify_video(bk: Backend, store: Sequence[Any], path: str, params: Params, options: VideoOptions,
                   limits: InputLimits | None, batch: int | Callable[[int], int], cache: HybridCache | None = None,
                   held: list[int] | None = None) -> dict[str, Any]:
    """One video against the fingerprints: its record (:func:`~camid_gpu.pipeline.records.video_record`).
    Raises ImageError (a per-file error) for a video that cannot be used."""
    with VideoReader(path, limits, options.frames) as reader:
        info = reader.info
        shape = (info.height, info.width)
        if min(shape) < MIN_SIDE:
            raise ImageTooSmallError(path, f"video frames are {shape[0]}x{shape[1]}, smaller than "
                                           f"{MIN_SIDE}x{MIN_SIDE}")
        clip = params.pce_clip if params.pce_clip and shape[0] >= params.pce_clip[0] \
            and shape[1] >= params.pce_clip[1] else None
        compared = center_clip(np.zeros(shape, np.uint8), clip).shape if clip else shape
        same, hybrid, refused = _comparable(store, tuple(compared), options, params.search_scales)
        pool = VideoPool(bk, [(fp.camera, fp.k) for fp in same], params.sigma_query, params.levels, params.wavelet,
                         align_range=options.align_range)
        if not same:  # the pooled sums only (the hybrid search's disputed side)
            pool.cameras = []
        used: list[dict[str, Any]] = []  # the frames pooled (a constant frame is decoded, listed, not pooled)
        if callable(batch):  # frames held at once, from the run's memory budget and the frame size
            batch = batch(int(compared[0]) * int(compared[1]))
        for pixels, metas in frame_batches(reader, max(1, int(batch)), clip, held):
            keep = [i for i in range(len(metas)) if content_problem(pixels[i], 8, reference=False) is None]
            if keep:
                pool.add(pixels[keep], [metas[i]["type"] for i in keep])
                used.extend(metas[i] for i in keep)
        if pool.frames == 0:
            raise ImageContentError(path, f"insufficient content: all {len(info.frames_used)} frames decoded are "
                                          f"constant (no sensor noise to use)")
    pooled = {f["index"] for f in used}
    for frame in info.frames_used:
        frame["pooled"] = frame["index"] in pooled
    scores = _pooled_scores(pool, used) if same else {}
    searched = _hybrid_scores(bk, pool, store, hybrid, tuple(compared), cache, path, params.pce_threshold) \
        if hybrid else {}
    kind = kind_in_name(path) or ("natural", "video")
    return video_record(info, kind, scores, searched, refused, params.pce_threshold, options.to_dict(),
                        _frame_series(pool, used, scores, params.pce_threshold))


def _pooled_scores(pool: VideoPool, used: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for cam, s in pool.scores().items():
        out[cam] = {"pce": json_number(s["pce"]), "ncc": None, "log10_p_fa": json_number(s["log10_p_fa"]),
                    "peak_shift": [0, 0], "match": "video-pooled", "rotation": 0,
                    "pce_plain": json_number(s["pce_plain"]), "log10_p_fa_plain": json_number(s["log10_p_fa_plain"]),
                    "log10_p_fa_aligned": (None if s["log10_p_fa_aligned"] is None
                                           else json_number(s["log10_p_fa_aligned"])),
                    "frames_pooled": pool.frames,
                    "frames_aligned": pool.frames if s["stabilisation_detected"] else 0,
                    "stabilisation_detected": s["stabilisation_detected"]}
    return out


def _hybrid_scores(bk: Backend, pool: VideoPool, store: Sequence[Any], hybrid: dict[str, np.ndarray],
                   shape: tuple[int, int], cache: HybridCache | None, path: str,
                   threshold: float) -> dict[str, dict[str, Any]]:
    """Scale and offset search of the pooled residual against still fingerprints of a larger sensor. A geometry
    cached for (camera, frame size) is tried first at its one scale (every offset there, and the P_FA counts
    them); the whole grid is searched when the peak is not at the cached offset or not above the threshold."""
    by_name = {fp.camera: fp for fp in store}
    weighted = pool.pooled_numerator()
    out: dict[str, dict[str, Any]] = {}
    for cam, grid in hybrid.items():
        k = by_name[cam].k
        known = cache.found.get((cam, shape)) if cache is not None else None
        if known is not None:
            res = search_pooled(bk, weighted, [(cam, k)], np.array([known["scale"]]))[0]
            if list(res.offset) == known["offset"] and decide({cam: res.pce}, threshold).decision == cam:
                out[cam] = _hybrid_entry(res, known["found_in"])
                continue
        res = search_pooled(bk, weighted, [(cam, k)], grid)[0]
        out[cam] = _hybrid_entry(res, None)
        if cache is not None and decide({cam: res.pce}, threshold).decision == cam:
            cache.found[(cam, shape)] = {"scale": res.scale, "offset": list(res.offset), "found_in": path}
    return out


def _hybrid_entry(res: Any, from_cache: str | None) -> dict[str, Any]:
    """One camera's hybrid score (P_FA over every scale and offset searched for this video)."""
    entry = {"pce": json_number(res.pce), "ncc": None, "log10_p_fa": json_number(res.log10_p_fa),
             "peak_shift": [int(v) for v in res.offset], "match": "video-hybrid", "rotation": 0,
             "scale": float(res.scale), "offset": [int(v) for v in res.offset], "size": [int(v) for v in res.size],
             "positions_searched": int(res.positions_searched), "scales_searched": len(res.per_scale)}
    if from_cache is not None:
        entry["geometry_from_cache"] = from_cache
    return entry


def _frame_series(pool: VideoPool, used: list[dict[str, Any]], scores: dict[str, dict[str, Any]],
                  threshold: float) -> list[dict[str, Any]]:
    """Per frame pooled: index, PTS, time, type, weight, and its own PCE, shift and alignment against the
    best pooled camera (the per-frame PCE series)."""
    best = decide({c: s["pce"] for c, s in scores.items()}, threshold).best if scores else None
    series = []
    for meta, row, weight in zip(used, pool.per_frame, pool.weights):
        entry = {k: meta[k] for k in ("index", "pts", "time", "type", "key")}
        entry["weight"] = json_number(weight)
        if best is not None:
            fs = row[best]
            entry.update(camera=best, pce=json_number(fs.pce), shift=list(fs.shift),
                         log10_p_fa=json_number(fs.log10_p_fa), z=json_number(fs.z),
                         aligned=bool(scores[best]["stabilisation_detected"]))
        series.append(entry)
    return series


def is_video_path(path: str) -> bool:
    """True when ``path`` is a video by content (an unreadable file is left to the image path's error)."""
    from camid_gpu.io.video import is_video_file

    return os.path.isfile(path) and is_video_file(path)


@dataclass
class PooledVideo:
    """A video's frames pooled without a camera (a cluster row, a library query): the ML sums
    ``X = sum_i w_i W_i I_i`` (zero-mean) and ``S = sum_i w_i I_i^2`` (host float64, the compared clip), the
    video's facts (``info``: container hash, frames decoded, each frame's ``pooled`` flag), the frames pooled
    and the first of them (its pixels: the cluster's same-scene descriptor)."""

    info: Any
    numerator: np.ndarray
    denominator: np.ndarray
    frames: list[dict[str, Any]]
    first: np.ndarray

    def whitened(self) -> np.ndarray:
        """``X / sqrt(S)``: the pooled residual with uniform noise. With ``w_i = q_i / var(W_i)`` the noise of
        ``X`` at a pixel has variance ``~ sum_i q_i w_i I_i^2 ~ S``, so this row's noise is flat over the frame as
        a still's residual is, and its NCC with a still's residual row is the matched correlation (see
        :mod:`camid_gpu.cluster.residuals` for the forms measured)."""
        return self.numerator / np.sqrt(np.maximum(self.denominator, 1e-6))


def pool_video(bk: Backend, path: str, sigma: float, levels: int, wavelet: str, options: VideoOptions,
               limits: InputLimits | None, batch: int | Callable[[int], int],
               clip: Callable[[tuple[int, int]], tuple[int, int] | None] | None = None, turn: int = 0,
               min_side: int = MIN_SIDE) -> PooledVideo:
    """The frames of ``path`` (``options.frames``: keyframes by default), each turned by ``turn`` degrees (0, 90,
    270) and centre-clipped to ``clip(turned frame size)`` (as the cluster's images are), pooled by the ML
    weights identify uses (:class:`~camid_gpu.prnu.video.VideoPool`); at most ``batch`` frames held
    (``batch(pixels)`` from the run's budget). Raises ImageError (a per-file error) for a video that cannot be
    used (frames under ``min_side``, no non-constant frame)."""
    with VideoReader(path, limits, options.frames) as reader:
        info = reader.info
        shape = (info.height, info.width) if turn % 180 == 0 else (info.width, info.height)
        if min(shape) < min_side:
            raise ImageTooSmallError(path, f"video frames are {info.height}x{info.width}, smaller than {min_side} "
                                           f"on the short side")
        cut = clip(shape) if clip else None
        compared = tuple(cut) if cut else shape
        if callable(batch):
            batch = batch(int(compared[0]) * int(compared[1]))
        sums: list[Any] = [None, None]
        used: list[dict[str, Any]] = []
        held: list[tuple[np.ndarray, dict[str, Any]]] = []
        first = None

        def pool() -> None:
            nonlocal first
            keep = [(f, m) for f, m in held if content_problem(f, 8, reference=False) is None]
            held.clear()
            if not keep:
                return
            products, intensity, variance = frame_products(bk, np.stack([f for f, _ in keep]), sigma, levels, wavelet)
            weights = np.array([type_weight(m["type"]) for _, m in keep]) / np.maximum(variance, 1e-12)
            w = bk.asarray(weights.astype(np.float32)).reshape(-1, 1, 1)
            for n, part in enumerate((products, intensity * intensity)):
                value = bk.to_numpy(bk.sum(part * w, 0)[0]).astype(np.float64)
                sums[n] = value if sums[n] is None else sums[n] + value
            first = keep[0][0] if first is None else first
            used.extend(m for _, m in keep)

        for frame, meta in reader.frames():
            turned = np.rot90(frame, turn // 90) if turn % 360 else frame
            held.append((np.ascontiguousarray(center_clip(turned, cut, path)), meta.to_dict()))
            if len(held) >= max(1, int(batch)):
                pool()
        pool()
        if not used:
            raise ImageContentError(path, f"insufficient content: all {len(info.frames_used)} frames decoded are "
                                          f"constant (no sensor noise to use)")
    pooled = {f["index"] for f in used}
    for frame in info.frames_used:
        frame["pooled"] = frame["index"] in pooled
    return PooledVideo(info, sums[0] - sums[0].mean(), sums[1], used, first)


__all__ = ["HybridCache", "PooledVideo", "VideoOptions", "frame_batches", "identify_video", "is_video_path",
           "pool_video"]

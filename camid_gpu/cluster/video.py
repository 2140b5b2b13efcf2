"""Videos in a clustering run: a video is one row (two for portrait frames, one per turn, as an image), its
frames (``--frames``: keyframes by default, at most the run's budget held at once, as ``identify``) pooled by
the ML weights into one residual-like row at the geometry the group compares (its region clip).

Which row. The pooled sums are ``X = sum_i w_i W_i I_i`` and ``S = sum_i w_i I_i^2``
(:func:`camid_gpu.pipeline.video.pool_video`); the stills' rows are their normalised residuals ``W``. Three forms
were measured against the residual rows of stills of the same camera (synthetic 256x384, PRNU 3 %, libx264
CRF 23, 4 keyframes pooled; mean z = NCC * sqrt(n) of video vs still, two cameras): ``X / S`` (the ML PRNU
estimate) 27.0 / 24.3, ``X`` 28.8 / 25.6, ``sum w W`` 29.3 / 26.1, ``X / sqrt(S)`` 29.1 / 26.1; against the
other camera's stills all within +-2. ``X / S`` divides by the intensity and so amplifies the noise of dark
pixels; ``X / sqrt(S)`` has the noise of a still's residual (flat over the frame: with ``w_i = q_i / var(W_i)``
the noise of ``X`` at a pixel has variance ``~ S``), so its NCC with a still's row is the matched correlation,
and it comes from the sums identify pools. It is the row used.

The record is the image record's fields (path, container SHA-256, size, group, region, rotations, rows) and
``video``: the video's facts (codec, decoder, frame rate, every frame decoded with its ``pooled`` flag) and the
frame selection. Cluster fingerprints take a video member's frames as references (re-decoded, hash-checked).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from camid_gpu.cluster.similarity import normalise_rows
from camid_gpu.config import CLUSTER_MIN_REGION, ClusterParams
from camid_gpu.engine.context import RunContext
from camid_gpu.engine.video import current_options
from camid_gpu.errors import CamidError, ImageNoSignalError
from camid_gpu.io.geometry import center_clip
from camid_gpu.io.video import VideoReader
from camid_gpu.pipeline.video import is_video_path, pool_video


def video_rows(path: str, params: ClusterParams, ctx: RunContext, clip: Callable[[tuple[int, int]], Any]
               ) -> tuple[dict[str, Any], np.ndarray, list[np.ndarray]]:
    """A video's cluster record (without ``group`` and ``rows``), its normalised rows (one per turn) and the
    pooled frames' first clip per turn (the same-scene descriptor's pixels); ``clip(turned frame size)`` is the
    region its group compares. Raises ImageError for a video that cannot be used."""
    options = current_options()
    pools, turns = [], [0]
    while len(pools) < len(turns):
        pools.append(pool_video(ctx.backend, path, params.sigma, params.levels, params.wavelet, options,
                                ctx.config.limits, ctx.fingerprint_batch, clip, turns[len(pools)], CLUSTER_MIN_REGION))
        info = pools[0].info
        if len(pools) == 1 and info.height > info.width:  # portrait frames: turned both ways, as an image
            turns, pools = [90, 270], []
    rows = np.stack([p.whitened().reshape(-1) for p in pools])
    if not np.isfinite(rows).all() or not (rows.std(axis=1) > 0).all():
        raise ImageNoSignalError(path, "the pooled residual is not finite or constant; no sensor noise to compare")
    record = {"path": path, "sha256": info.sha256, "file_size": info.file_size, "format": info.format,
              "size": [info.height, info.width], "channels": 1, "bit_depth": 8, "exif": {},
              "region": list(pools[0].numerator.shape), "rotations": turns,
              "error": None,
              "video": dict(info.to_dict(), options=options.to_dict(), frames_pooled=len(pools[0].frames),
                            row="X / sqrt(S): the ML-pooled residual, whitened")}
    return record, normalise_rows(rows), [p.first for p in pools]


def is_video_record(record: dict[str, Any]) -> bool:
    return bool(record.get("video"))


def video_member_clips(record: dict[str, Any], params: ClusterParams, turn_index: int,
                       ctx: RunContext) -> Iterator[np.ndarray]:
    """The frames of a video member (the selection its record used), turned and clipped as its row was, for its
    cluster's fingerprint (each frame a reference, as ``fingerprint`` takes reference videos' frames). The
    container is checked against the record's SHA-256 before any frame is used."""
    path = record["path"]
    turn = record["rotations"][turn_index]
    with VideoReader(path, ctx.config.limits, record["video"]["options"]["frames"]) as reader:
        if reader.info.sha256 != record["sha256"]:
            raise CamidError(f"{path}: the file changed during the run (SHA-256 {reader.info.sha256[:16]}..., "
                             f"was {record['sha256'][:16]}...)")
        pooled = {f["index"] for f in record["video"]["frames_used"] if f.get("pooled")}
        for frame, meta in reader.frames():
            if meta.index in pooled:
                turned = np.rot90(frame, turn // 90) if turn else frame
                yield np.ascontiguousarray(center_clip(turned, tuple(record["region"]), path))


__all__ = ["is_video_path", "is_video_record", "video_member_clips", "video_rows"]

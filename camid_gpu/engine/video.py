"""Videos in a run: ``camid identify`` scores each video (:func:`camid_gpu.pipeline.video.identify_video`) in
this process, in input order between the image chunks; ``camid fingerprint`` takes reference videos' frames.

The video options (``--frames``) are set for a command with :func:`video_options`; the frames held at once
come from the run's memory budget (:meth:`~camid_gpu.engine.context.RunContext.fingerprint_batch` of the frame
size), so the peak depends on the frame size and the budget, never on the video's length.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Sequence

from camid_gpu.config import Params
from camid_gpu.engine.context import RunContext
from camid_gpu.engine.scheduler import Progress
from camid_gpu.errors import CamidError
from camid_gpu.pipeline.records import error_entry
from camid_gpu.pipeline.video import HybridCache, VideoOptions, identify_video, is_video_path

_options: ContextVar[VideoOptions | None] = ContextVar("camid_video_options", default=None)


@contextlib.contextmanager
def video_options(options: VideoOptions | None) -> Iterator[None]:
    """Within the block, videos are read with ``options`` (``--frames`` ...); outside, with the defaults."""
    token = _options.set(options)
    try:
        yield
    finally:
        _options.reset(token)


def current_options() -> VideoOptions:
    return _options.get() or VideoOptions()


def video_spec(paths: Sequence[str]) -> dict[str, Any]:
    """The run specification's ``video`` entry (the video options: a resume with other ``--frames`` is refused),
    only when the run has a video (runs of images keep their run.json as it was)."""
    return {"video": current_options().to_dict()} if any(map(is_video_path, paths)) else {}


def segments(paths: Sequence[str]) -> list[tuple[bool, list[str]]]:
    """``paths`` cut into runs of images and runs of videos (by content), in order: ``(is_video, paths)``."""
    out: list[tuple[bool, list[str]]] = []
    for path in paths:
        video = is_video_path(path)
        if out and out[-1][0] == video:
            out[-1][1].append(path)
        else:
            out.append((video, [path]))
    return out


class VideoIdentify:
    """Videos identified one after the other in this process; one record each, written as it is done. A
    scale/offset found for a (camera, frame size) by one video is tried first for the next ones
    (:class:`~camid_gpu.pipeline.video.HybridCache`)."""

    def __init__(self, ctx: RunContext, store: Sequence[Any], params: Params,
                 write: Callable[[list[dict[str, Any]]], None], progress: Progress | None = None,
                 options: VideoOptions | None = None):
        self.ctx, self.store, self.params, self.write, self.progress = ctx, store, params, write, progress
        self.options = options or current_options()
        self.cache = HybridCache()

    def run(self, paths: Sequence[str]) -> None:
        for path in paths:
            if self.progress is not None:
                self.progress.started()
            try:
                record = identify_video(self.ctx.backend, self.store, path, self.params, self.options,
                                        self.ctx.config.limits, self.ctx.fingerprint_batch, self.cache)
            except (CamidError, OSError, MemoryError, ValueError) as exc:
                record = error_entry(path, exc)
            self.write([record])


__all__ = ["VideoIdentify", "current_options", "segments", "video_options", "video_reference_frames", "video_spec"]


def video_reference_frames(paths: Sequence[str], ctx: RunContext, progress: Any = None
                           ) -> Iterator[tuple[str, Any]]:
    """``(path, (luma, info))`` for every frame kept (``--frames``) of the reference videos ``paths``, as
    :func:`~camid_gpu.pipeline.identify.build_fingerprint` takes references (each frame's ``info.frame`` says
    which frame of the container it is; ``info.sha256`` is the container's). A video that cannot be used gives
    ``(path, the error)``. One frame is decoded at a time."""
    from dataclasses import replace

    from camid_gpu.io.decode import ImageInfo
    from camid_gpu.io.video import VideoReader

    options = current_options()
    for path in paths:
        try:
            with VideoReader(path, ctx.config.limits, options.frames) as reader:
                info = reader.info
                base = ImageInfo(path=path, sha256=info.sha256, file_size=info.file_size, format=info.format,
                                 height=info.height, width=info.width, channels=1, bit_depth=8)
                for luma, meta in reader.frames():
                    yield path, (luma, replace(base, frame={"video_frame": meta.index, "pts": meta.pts,
                                                            "type": meta.type, "codec": info.codec,
                                                            "decoder": info.decoder}))
        except (CamidError, OSError, MemoryError, ValueError) as exc:
            yield path, exc
        if progress is not None:
            progress.advance()

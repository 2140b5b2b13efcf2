"""Video evidence: containers recognised by content, opened read-only, hashed whole, decoded by PyAV.

A video (MP4, MOV, 3GP, Matroska/WebM, AVI: decided from the leading bytes, never from the name) is opened
through one read-only, non-blocking descriptor that is checked to be a regular file within the file-size
limit; the whole file streams through SHA-256 first, then PyAV (FFmpeg's software decoders, extra
``video``) demuxes and decodes from the same descriptor.

Which frames (``selection``):

* ``"i"`` (default): the intra-coded frames only. The decoder is told to skip every other frame
  (``skip_frame = NONKEY``), so the predicted frames are never reconstructed; a decoder that ignores the
  request still has its non-intra frames dropped here. The PRNU survives mostly in intra frames (the issue's
  measurement on H.264 CRF 23: I-frames PCE ~700, P-frames 6-11, B-frames ~0).
* ``"all"``: every frame.
* ``N`` (an integer): at most ``N`` frames: the intra frames first, then P, then B frames, each class
  evenly spaced over the video (two decoding passes: the first one only reads the picture types).

Each frame kept is described by :class:`FrameInfo`: its display index (its rank among the stream's packet
time stamps, found by a demux pass that decodes nothing), PTS, time in seconds and picture type. The pixels
handed on are the luma plane (``Y``, ``(H, W)`` uint8, the gray image the still pipeline takes; 8-bit planar
or semi-planar formats are read as stored, others converted by libswscale and said in ``pixel_conversion``).

Refused with a per-file error naming the file (:class:`~camid_gpu.errors.ImageDecodeError`): a container
FFmpeg cannot open (damaged, or truncated before its index), no video stream (an audio-only file), no
frame, a stream whose packets end before the frame count its header declares (truncated), and any error
the demuxer or decoder reports while reading (FFmpeg's log lines at error level are captured). A variable
frame rate is not an error: frames are placed by their own time stamps, and the record says so
(``variable_frame_rate`` with the spread of the frame intervals).
"""
from __future__ import annotations

import hashlib
import os
import stat
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import numpy as np

from camid_gpu._shared.files import file_kind
from camid_gpu._shared.optional import import_optional
from camid_gpu.io.raw import HEIF_BRANDS
from camid_gpu.config import InputLimits, parse_frames
from camid_gpu.errors import ImageDecodeError, ImageUnreadableError
from camid_gpu.io.reader import READ_BLOCK, _open

#: suffixes of the video containers camid reads (a file with one is always an input; others by content)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2", ".mkv", ".webm", ".avi")
#: the container formats recognised by their leading bytes
VIDEO_FORMATS = ("MP4", "MOV", "3GP", "Matroska", "AVI")
#: ISO base-media brands of HEIF stills (those are images, read by :mod:`camid_gpu.io.raw`)
_STILL_BRANDS = HEIF_BRANDS + (b"avif", b"avis")  # stills in an ISO media box: HEIF (io.raw) and AVIF
#: QuickTime files without an ``ftyp`` box start with one of these atoms
_QT_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
#: picture types as PyAV numbers them (AVPictureType)
_PICTURE_TYPES = {0: "?", 1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}
#: 8-bit pixel formats whose first plane is the luma as stored
_LUMA_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv411p", "yuv440p",
                 "nv12", "nv21", "nv16", "gray")
#: relative spread of the frame intervals above which a stream is said to have a variable frame rate
VFR_SPREAD = 0.01


def sniff_video(head: bytes) -> str | None:
    """The container of a video camid reads, from its leading bytes (at least 12), or None."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _STILL_BRANDS:
            return None
        if brand.startswith(b"3g"):
            return "3GP"
        return "MOV" if brand == b"qt  " else "MP4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[4:8] in _QT_ATOMS and int.from_bytes(head[:4], "big") >= 8:
        return "MOV"
    return None


def is_video_file(path: str) -> bool:
    """True when the file's leading bytes are a video container camid reads (False when it cannot be read:
    the image path then reports the problem)."""
    try:
        fd = _open(path)
    except Exception:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and sniff_video(os.read(fd, 16)) is not None
    except OSError:
        return False
    finally:
        os.close(fd)


def import_av():
    """PyAV, or :class:`~camid_gpu.errors.MissingExtraError` naming the extra ``video``."""
    return import_optional("av", "video", "video input (mp4, mov, 3gp, mkv, avi)")


def check_selection(selection: Any) -> str | int:
    """``"i"``, ``"all"`` or a positive frame count (``--frames``; :func:`camid_gpu.config.parse_frames`)."""
    return parse_frames(selection)


@dataclass(frozen=True)
class FrameInfo:
    """One decoded frame: display ``index`` (0-based), ``pts`` (stream time base), ``time`` (seconds) and
    picture ``type`` (I, P, B, ...), ``key`` (a keyframe)."""

    index: int
    pts: int | None
    time: float | None
    type: str
    key: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VideoInfo:
    """What is known about one video file (the ``video`` part of its record)."""

    path: str
    sha256: str
    file_size: int
    format: str                 # the container, from the leading bytes
    demuxer: str                # FFmpeg's name for it
    codec: str
    codec_long: str
    decoder: str                # e.g. "FFmpeg libavcodec 62.28.103 h264 (software, CPU), PyAV 18.1.1"
    height: int
    width: int
    pixel_format: str
    frames_in_stream: int       # packets with a time stamp (what the demux pass found)
    frames_declared: int        # the header's count (0 when it gives none)
    duration_s: float | None
    frame_rate: float | None    # frames per second from the time stamps
    variable_frame_rate: bool
    frame_interval_spread: float  # (max - min) / median of the frame intervals
    selection: str
    pixel_conversion: str | None = None
    rotation: int = 0           # the container's display rotation (pixels are used as stored)
    frames_decoded: int = 0
    frames_used: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fail(path: str, what: str, exc: BaseException | None = None) -> ImageDecodeError:
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return ImageDecodeError(path, f"{what}{detail}")


@contextmanager
def _ffmpeg_errors(path: str, av: Any) -> Iterator[None]:
    """FFmpeg's log lines at error level while the block runs become a per-file error (the decoders conceal
    damage and only log it); PyAV's own exceptions too."""
    logging = av.logging
    previous = logging.get_level()
    logging.set_level(logging.ERROR)
    try:
        # every thread's lines: with threaded decoding, FFmpeg logs a damaged slice from its worker threads,
        # which a capture of this thread alone never sees (videos are decoded one at a time in a process)
        with logging.Capture(local=False) as lines:
            try:
                yield
            except av.FFmpegError as exc:
                raise _fail(path, "damaged or truncated video data: the decoder failed", exc) from None
        errors = [f"{name}: {message.strip()}" for level, name, message in lines if level <= logging.ERROR]
        if errors:
            raise _fail(path, f"damaged or truncated video data: FFmpeg reports {'; '.join(errors[:3])}"
                              + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""))
    finally:
        logging.set_level(previous)


class VideoReader:
    """One video file, read-only: ``with VideoReader(path, limits, selection) as video:`` hashes the file and
    probes its stream (``video.info``); :meth:`frames` yields ``(luma (H, W) uint8, FrameInfo)`` in display
    order, one frame at a time (nothing is kept here: the caller decides how many it holds)."""

    def __init__(self, path: str | os.PathLike, limits: InputLimits | None = None, selection: Any = "i"):
        self.path = os.fspath(path)
        self.limits = limits or InputLimits()
        self.selection = check_selection(selection)
        self.av = import_av()
        self._fd: int | None = None
        self.info: VideoInfo | None = None

    # -- opening ------------------------------------------------------------------------------------------
    def __enter__(self) -> "VideoReader":
        self._fd = _open(self.path)
        try:
            sha256, size, fmt = self._hash()
            self.info = self._probe(sha256, size, fmt)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _hash(self) -> tuple[str, int, str]:
        path, fd = self.path, self._fd
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageUnreadableError(path, f"is {file_kind(st.st_mode)}, not a regular file; not read")
        limit = self.limits.max_file_bytes
        if st.st_size > limit:
            raise ImageDecodeError(path, f"file is {st.st_size} bytes, over the file-size limit of {limit} bytes "
                                         f"(raise it with --max-file-size); not read")
        digest, total, head = hashlib.sha256(), 0, b""
        os.lseek(fd, 0, os.SEEK_SET)
        while True:
            block = os.read(fd, READ_BLOCK)
            if not block:
                break
            head = head or block[:16]
            total += len(block)
            if total > limit:
                raise ImageDecodeError(path, f"file grew past the file-size limit of {limit} bytes while it was read")
            digest.update(block)
        if total == 0:
            raise ImageDecodeError(path, "empty file (0 bytes)")
        fmt = sniff_video(head)
        if fmt is None:
            raise ImageDecodeError(path, "not a video container camid reads (by content); "
                                         f"camid reads {', '.join(VIDEO_FORMATS)}")
        return digest.hexdigest(), total, fmt

    def _container(self):
        """A fresh demuxer on the same descriptor (PyAV reads through a file object that does not close it)."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        handle = os.fdopen(os.dup(self._fd), "rb")
        try:
            with _ffmpeg_errors(self.path, self.av):
                container = self.av.open(handle, "r")
        except ImageDecodeError as exc:
            handle.close()
            raise ImageDecodeError(self.path, f"{exc.reason} (while the container was opened and probed)") from None
        return container, handle

    def _probe(self, sha256: str, size: int, fmt: str) -> VideoInfo:
        container, handle = self._container()
        try:
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams})
                what = "an audio-only file" if kinds == ["audio"] else f"streams: {', '.join(kinds)}" if kinds \
                    else "the container holds no stream at all: zero frames"
                raise ImageDecodeError(self.path, f"no video stream ({what}); nothing to identify")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if not ctx.width or not ctx.height:
                raise ImageDecodeError(self.path, "the video stream declares no frame size")
            self._check_size(ctx.height, ctx.width)
            with _ffmpeg_errors(self.path, self.av):
                stamps = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size)
            declared = int(stream.frames or 0)
            if not stamps:
                raise ImageDecodeError(self.path, "the video stream holds no frame (zero frames)")
            if declared and len(stamps) < declared:
                raise ImageDecodeError(self.path, f"truncated: the stream holds {len(stamps)} frames of the "
                                                  f"{declared} its header declares")
            self._stamps = {pts: i for i, pts in enumerate(stamps)}
            base = float(stream.time_base) if stream.time_base else None
            steps = np.diff(np.asarray(stamps, dtype=np.float64))
            median = float(np.median(steps)) if steps.size else 0.0
            spread = float((steps.max() - steps.min()) / median) if steps.size and median > 0 else 0.0
            rate = (1.0 / (median * base)) if median > 0 and base else None
            av_version = getattr(self.av, "__version__", "?")
            libavcodec = ".".join(map(str, self.av.library_versions.get("libavcodec", ())))
            return VideoInfo(
                path=self.path, sha256=sha256, file_size=size, format=fmt, demuxer=container.format.name,
                codec=ctx.name, codec_long=ctx.codec.long_name,
                decoder=f"FFmpeg libavcodec {libavcodec} {ctx.codec.name} (software, CPU), PyAV {av_version}",
                height=int(ctx.height), width=int(ctx.width), pixel_format=str(ctx.pix_fmt),
                frames_in_stream=len(stamps), frames_declared=declared,
                duration_s=(float((stamps[-1] - stamps[0]) * base) + (median * base if median else 0.0))
                if base else None,
                frame_rate=rate, variable_frame_rate=spread > VFR_SPREAD, frame_interval_spread=round(spread, 6),
                selection=str(self.selection), pixel_conversion=None if ctx.pix_fmt in _LUMA_FORMATS else
                f"{ctx.pix_fmt} converted to 8-bit gray by libswscale")
        finally:
            container.close()
            handle.close()

    def _check_size(self, height: int, width: int) -> None:
        if height * width > self.limits.max_pixels or height * width > self.limits.max_decoded_bytes:
            raise ImageDecodeError(self.path, f"declared frame size {width}x{height} exceeds the decoded-size "
                                              f"limits (possible decompression bomb)")

    # -- decoding -----------------------------------------------------------------------------------------
    def _decoded(self, keyframes_only: bool) -> Iterator[tuple[Any, FrameInfo]]:
        container, handle = self._container()
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if keyframes_only:
                stream.codec_context.skip_frame = "NONKEY"
            base = float(stream.time_base) if stream.time_base else None
            with _ffmpeg_errors(self.path, self.av):
                for frame in container.decode(stream):
                    pts = frame.pts
                    kind = _PICTURE_TYPES.get(int(frame.pict_type), "?")
                    if keyframes_only and kind != "I":
                        continue
                    if frame.is_corrupt:
                        raise ImageDecodeError(self.path, f"frame at PTS {pts} is flagged corrupt by the decoder")
                    index = self._stamps.get(pts, -1) if pts is not None else -1
                    yield frame, FrameInfo(index, pts, None if pts is None or base is None else round(pts * base, 6),
                                           kind, bool(frame.key_frame))
        finally:
            container.close()
            handle.close()

    def luma(self, frame: Any) -> np.ndarray:
        """The frame's luma plane ``(H, W)`` uint8 as stored (or converted to gray when not 8-bit planar)."""
        if frame.format.name in _LUMA_FORMATS:
            plane = frame.planes[0]
            rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            return np.ascontiguousarray(rows[:, :plane.width])
        return np.ascontiguousarray(frame.to_ndarray(format="gray"))

    def frames(self) -> Iterator[tuple[np.ndarray, FrameInfo]]:
        """The selected frames' luma and facts, in display order; each one used is appended to
        ``info.frames_used`` (``info.frames_decoded`` counts what the decoder produced)."""
        info = self.info
        if self.selection == "i" or self.selection == "all":
            wanted = None
            source = self._decoded(self.selection == "i")
        else:
            wanted = self._choose(int(self.selection))
            source = self._decoded(False)
        for frame, meta in source:
            info.frames_decoded += 1
            if wanted is not None and meta.index not in wanted:
                continue
            pixels = self.luma(frame)
            if pixels.shape != (info.height, info.width):
                raise ImageDecodeError(self.path, f"frame {meta.index} is {pixels.shape[1]}x{pixels.shape[0]}, the "
                                                  f"stream declares {info.width}x{info.height} (resolution "
                                                  f"changes mid-stream are not supported)")
            info.frames_used.append(meta.to_dict())
            yield pixels, meta
        if not info.frames_used:
            raise ImageDecodeError(self.path, f"no frame could be decoded for --frames {info.selection} (the stream "
                                              f"declares {info.frames_in_stream})")

    def _choose(self, count: int) -> set[int]:
        """Display indices of at most ``count`` frames: I first, then P, then B, evenly spaced within a class."""
        by_type: dict[str, list[int]] = {}
        for _, meta in self._decoded(False):
            by_type.setdefault(meta.type if meta.type in ("I", "P") else "B", []).append(meta.index)
        chosen: set[int] = set()
        for kind in ("I", "P", "B"):
            found = by_type.get(kind, [])
            room = count - len(chosen)
            if room <= 0:
                break
            if len(found) <= room:
                chosen.update(found)
            else:
                chosen.update(found[int(i)] for i in np.linspace(0, len(found) - 1, room).round())
        return chosen


__all__ = ["FrameInfo", "VIDEO_FORMATS", "VIDEO_SUFFIXES", "VideoInfo", "VideoReader", "check_selection",
           "import_av", "is_video_file", "sniff_video"]

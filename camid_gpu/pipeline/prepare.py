"""Host work before the device: reference folders, the dataset layout, and disputed images decoded and
classified (flat/natural), with the rotations to try (:class:`Prepared`), and the geometry rule that says
which fingerprints an image can be compared with (:func:`match_geometry`). Pure host work that worker
processes run.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from camid_gpu.backend.base import contiguous, rot90, to_host
from camid_gpu.config import (
    KIND,
    MAX_SATURATED_FRACTION,
    MIN_CONTENT_STD,
    REF_MAX_SATURATED_FRACTION,
    REF_MIN_MEAN,
    InputLimits,
    Params,
)
from camid_gpu.errors import CamidError, ImageContentError, ImageDecodeError, ImageError, ImageTooSmallError
from camid_gpu.io.decode import ImageInfo, decode_bytes, jpeg_header_info, read_file_bytes, read_image
from camid_gpu.io.device_decode import DeviceJpegDecoder, device_unsupported
from camid_gpu.io.geometry import center_clip, green_channel
from camid_gpu.io.listing import IMAGE_SUFFIXES, Listing, scan_inputs
from camid_gpu.io.video import VIDEO_SUFFIXES
from camid_gpu.prnu.search import MIN_SIDE  # the smallest side any comparison (the crop search too) needs

KINDS = ("flat", "natural")


def camera_folders(refs_dir: str) -> list[tuple[str, str]]:
    """(camera, folder) for every subfolder of ``refs_dir`` (sorted; symbolic links to folders count)."""
    if not os.path.isdir(refs_dir):
        raise CamidError(f"{refs_dir}: reference folder does not exist")
    found = [(name, os.path.join(refs_dir, name)) for name in sorted(os.listdir(refs_dir))
             if os.path.isdir(os.path.join(refs_dir, name)) and not name.startswith(".")]
    if not found:
        raise CamidError(f"{refs_dir}: no camera subfolders (expected REFS_DIR/<camera>/<images>)")
    return found


def refuse_identical_references(refs_dir: str, listed: Sequence[tuple[str, str, Listing]]) -> None:
    """Refuse, naming both files, two cameras' reference files with the same bytes (a copy, not only a link:
    two identical camera folders gave a store that identify then refused; another camera's references nested
    under a folder made, with --refs all, a fingerprint of two cameras).

    Only files whose size occurs under two cameras are hashed (streamed, read-only, regular files only; a file
    that cannot be read here gets its own error when it is decoded).
    """
    by_size: dict[int, list[tuple[str, str]]] = {}
    for camera, _, listing in listed:
        for path in listing.images:
            try:
                by_size.setdefault(os.stat(path).st_size, []).append((camera, path))
            except OSError:
                continue
    for files in by_size.values():
        if len({camera for camera, _ in files}) < 2:
            continue
        owner: dict[str, tuple[str, str]] = {}
        for camera, path in files:
            digest = _file_sha256(path)
            if digest is None:
                continue
            first = owner.setdefault(digest, (camera, path))
            if first[0] != camera:
                raise CamidError(f"{refs_dir}: cameras {first[0]!r} and {camera!r} have byte-identical reference "
                                 f"files {first[1]} and {path} (SHA-256 {digest}); one image cannot be evidence of "
                                 f"two cameras: remove the copy from the wrong camera's folder")


def _file_sha256(path: str) -> str | None:
    import hashlib

    from camid_gpu._shared.files import open_regular

    try:
        with open_regular(path) as handle:
            digest = hashlib.sha256()
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
            return digest.hexdigest()
    except OSError:
        return None


@dataclass
class EncodedImage:
    """A JPEG read, hashed and header-parsed, waiting for the GPU decoder (:func:`decode_references`)."""

    info: ImageInfo
    data: bytes
    limits: InputLimits | None = None  # for the CPU decode, should the GPU fail


def load_reference(path: str, clip: tuple[int, int] | None = None, limits: InputLimits | None = None,
                   defer_jpeg: bool = False) -> tuple[Any, ...] | EncodedImage:
    """Decode a reference image and clip it: ``(pixels (h, w[, 3]) uint8/uint16, info)``.

    ``defer_jpeg``: a JPEG the GPU decoder takes comes back as an :class:`EncodedImage`; any other file is
    decoded here and comes back as ``(pixels, info, "cpu", why the GPU did not take it)``.
    """
    if not defer_jpeg:
        pixels, info = read_image(path, limits=limits)
        return center_clip(pixels, clip, path), info
    data = read_file_bytes(path, limits)
    note = device_unsupported(data)
    if note is None:
        try:
            return EncodedImage(jpeg_header_info(path, data, limits=limits), data, limits)
        except ImageDecodeError as exc:
            note = exc.reason
    pixels, info = decode_bytes(path, data, limits=limits)
    return center_clip(pixels, clip, path), info, "cpu", note


def decode_references(loaded: Iterable[tuple[str, Any]], decoder: DeviceJpegDecoder, clip: tuple[int, int] | None,
                      batch: int = 8) -> Iterator[tuple[str, Any]]:
    """``(path, load_reference result)`` pairs, in order, with every :class:`EncodedImage` decoded on the device
    (``batch`` files per call) and clipped: ``(pixels, info, "gpu", None)``, or, where the GPU decoder fails,
    the CPU's ``(pixels, info, "cpu", why)``, or the ImageError when neither can use the file."""
    waiting: list[tuple[str, EncodedImage]] = []

    def flush():
        decoded = decoder.decode([encoded.data for _, encoded in waiting])
        done = [(path, _reference_pixels(path, encoded, pixels, decoder, clip))
                for (path, encoded), pixels in zip(waiting, decoded)]
        waiting.clear()
        return done

    for path, result in loaded:
        if isinstance(result, EncodedImage):
            waiting.append((path, result))
            if len(waiting) >= batch:
                yield from flush()
        else:
            yield from flush() if waiting else ()
            yield path, result
    if waiting:
        yield from flush()


def _reference_pixels(path: str, encoded: EncodedImage, pixels: Any, decoder: DeviceJpegDecoder,
                      clip: tuple[int, int] | None) -> tuple[Any, ...] | ImageError:
    note = _device_problem(encoded.info, pixels)
    try:
        if note is None:
            return decoder.contiguous(center_clip(pixels, clip, path)), encoded.info, "gpu", None
        host, info = decode_bytes(path, encoded.data, limits=encoded.limits)
        return center_clip(host, clip, path), info, "cpu", note
    except ImageError as exc:
        return exc


def _device_problem(info: ImageInfo, pixels: Any) -> str | None:
    """Why the GPU decoder's result for a file is not used (its exception, or a size that disagrees with the
    header), or None."""
    if isinstance(pixels, BaseException):
        return f"GPU decoder failed ({type(pixels).__name__}: {pixels})"
    if tuple(pixels.shape[:2]) != (info.height, info.width) or (pixels.ndim == 3) != (info.channels == 3):
        return f"GPU decoder gave shape {tuple(pixels.shape)} for a {info.height}x{info.width} " \
               f"{info.channels}-channel header"
    return None


def content_problem(pixels: np.ndarray, bit_depth: int, reference: bool) -> str | None:
    """Why a clip ``(h, w[, 3])`` of ``bit_depth``-bit samples carries no usable PRNU, or None.

    Every image: constant (sample std under ``config.MIN_CONTENT_STD`` on the 0..255 scale). References
    also: saturated (over ``config.REF_MAX_SATURATED_FRACTION`` of samples at the top code) and too dark
    (mean under ``config.REF_MIN_MEAN``): a reference flat must be lit and not blown out.
    """
    pixels = to_host(pixels)
    top = float((1 << bit_depth) - 1) if bit_depth in (8, 16) else float(np.iinfo(pixels.dtype).max)
    values = pixels.astype(np.float32) * (255.0 / top)
    std, mean = float(values.std()), float(values.mean())
    if std < MIN_CONTENT_STD:
        return f"constant image (std {std:.3g} on the 0..255 scale, minimum {MIN_CONTENT_STD:g}): no sensor noise to use"
    if reference:
        saturated = float(np.count_nonzero(pixels >= top)) / pixels.size
        if saturated > REF_MAX_SATURATED_FRACTION:
            return (f"saturated reference ({saturated:.0%} of samples at the top value, maximum "
                    f"{REF_MAX_SATURATED_FRACTION:.0%}): blown-out pixels carry no PRNU")
        if mean < REF_MIN_MEAN:
            return (f"too dark for a reference (mean {mean:.3g} on the 0..255 scale, minimum {REF_MIN_MEAN:g}): "
                    f"the PRNU is multiplicative and vanishes in the dark")
    return None


def reference_content_problem(pixels: Any, bit_depth: int, clips: Iterable[tuple[int, int] | None]) -> str | None:
    """:func:`content_problem` of a reference on the whole frame and on each method's centre clip (``clips``,
    None = the whole frame): a flat that is blown out or constant inside the clip a method uses is left out."""
    problem = content_problem(pixels, bit_depth, reference=True)
    h, w = pixels.shape[:2]
    for clip in dict.fromkeys(c for c in clips if c is not None and c[0] <= h and c[1] <= w):
        if problem:
            break
        problem = content_problem(center_clip(pixels, clip), bit_depth, reference=True)
        if problem:
            problem = f"in the {clip[0]}x{clip[1]} centre clip a method compares: {problem}"
    return problem


def mahalanobis_content_problem(item: "Prepared", degrees: int, clip: tuple[int, int] | None) -> str | None:
    """Why the pixels the Mahalanobis method compares (``item`` turned by ``degrees``, centre clip ``clip``)
    cannot be used, or None: constant, or more than ``config.MAX_SATURATED_FRACTION`` of them at the top value
    (its per-pixel votes then ran on blown-out pixels and gave a 100 % membership)."""
    region = to_host(green_channel(item.view(degrees, clip)))
    h, w = region.shape[:2]
    problem = content_problem(region, item.info.bit_depth, reference=False)
    if problem is None:
        top = (1 << item.info.bit_depth) - 1
        saturated = float(np.count_nonzero(region >= top)) / region.size
        if saturated > MAX_SATURATED_FRACTION:
            problem = (f"{saturated:.0%} of samples at the top value (maximum {MAX_SATURATED_FRACTION:.0%}): "
                       f"blown-out pixels carry no PRNU")
    return None if problem is None else f"insufficient content in the {h}x{w} region the Mahalanobis method " \
                                        f"compares: {problem}"


@dataclass
class Prepared:
    """A decoded disputed image and the rotations to try.

    ``pixels`` is the whole image as stored; ``clips`` are its views for the PCE geometry, one per rotation
    (None where the turned image is smaller than the PCE clipping). Both are host arrays, or native device
    arrays when the GPU decoded the file. A JPEG left for the GPU decoder has ``encoded`` (its bytes), no
    pixels yet, and ``kind`` as requested, until :func:`decode_on_device` finishes it.
    """

    path: str
    info: ImageInfo
    kind: str
    kind_source: str
    rotations: list[int]
    clips: list[Any]  # per rotation: (h, w[, 3]) pixels of the PCE geometry, or None
    natural_green: np.ndarray | None = None  # whole-image green plane (paper mode only)
    decoder: str = "cpu"  # which decoder made the pixels: cpu or gpu
    decoder_note: str | None = None  # why the CPU decoded a file when the GPU decoder was asked for
    encoded: bytes | None = None
    limits: InputLimits | None = None  # of the CPU decode, should the GPU decoder fail on ``encoded``
    pixels: Any = None  # (H, W[, 3]) as stored

    def shape_at(self, degrees: int) -> tuple[int, int]:
        """(rows, columns) of the image turned by ``degrees`` (counter-clockwise)."""
        h, w = self.info.height, self.info.width
        return (w, h) if degrees % 180 else (h, w)

    def view(self, degrees: int, clip: tuple[int, int] | None = None) -> Any:
        """The pixels turned by ``degrees`` and centre-clipped to ``clip`` (None = whole): a contiguous copy
        (a host array, or a device array for a GPU-decoded file)."""
        k = degrees // 90
        turned = rot90(self.pixels, k) if k else self.pixels  # host, or a device array (the GPU decoder's)
        return contiguous(center_clip(turned, clip, self.path))


#: how an image relates to a fingerprint's sensor frame (see :func:`match_geometry`)
FULL, CROP = "full-frame", "crop"


def match_geometry(shape: tuple[int, int], sensor: tuple[int, int], clip: tuple[int, int] | None,
                   crops: bool) -> tuple[str | None, str]:
    """How an image of ``shape`` (rows, columns, after rotation) compares with a fingerprint of a ``sensor``
    frame whose method uses ``clip`` (None = full frame): ``(FULL, "")`` when the sizes are equal;
    ``(CROP, "")`` when ``crops`` (the method searches crop offsets, which needs a full-frame fingerprint)
    and the image fits inside the frame; else ``(None, reason)``: not comparable, and why.
    """
    h, w = shape
    if tuple(shape) == tuple(sensor):
        return FULL, ""
    where = f"image {h}x{w}, fingerprint {sensor[0]}x{sensor[1]}"
    if h <= sensor[0] and w <= sensor[1]:
        if crops and clip is None:
            return CROP, ""
        if crops:
            return None, f"{where}: a crop needs a full-frame fingerprint (this one is a {clip[0]}x{clip[1]} clip)"
        return None, f"{where}: smaller than the sensor frame (a crop), and this method has no crop search"
    return None, f"{where}: other sensor size"


class _HostArrays:
    """The array operations :func:`_finish` needs, on NumPy pixels (the GPU decoder has the same methods)."""

    @staticmethod
    def rot90(pixels, k):
        return np.rot90(pixels, k) if k % 4 else pixels

    contiguous = staticmethod(np.ascontiguousarray)

    @staticmethod
    def block_means(green, f):
        h, w = green.shape
        return green[: h // f * f, : w // f * f].astype(np.float64).reshape(h // f, f, w // f, f).mean(axis=(1, 3))

    @staticmethod
    def to_host(pixels):
        return pixels


def kind_in_name(path: str) -> tuple[str, str] | None:
    """(kind, "name") when a word of the file name is "flat" or "natural" (``flat_003.jpg``, ``IMG-flat.jpg``),
    else (kind, "folder") when a word of its folder's name is (``flats/IMG_1.jpg``), else None. Words are runs
    of letters, so ``flatmate.jpg`` or ``unnatural.jpg`` say nothing; a plural ("flats") counts."""
    folder, name = os.path.split(os.path.abspath(path))
    for source, text in (("name", os.path.splitext(name)[0]), ("folder", os.path.basename(folder))):
        words = {w.removesuffix("s") for w in re.split(r"[^a-z]+", text.lower())}
        found = [k for k in KINDS if k in words]
        if len(found) == 1:  # "flat_natural.jpg" says both: not a hint
            return found[0], source
    return None


def guess_kind(path: str, green: Any, block_means=_HostArrays.block_means) -> tuple[str, str]:
    """'flat' or 'natural' from a word of the file or folder name when it says so, else from the content.

    Content rule (documented heuristic): a 16x-downsampled copy whose relative spread (std/mean)
    is under 0.15 is a flat field. ``block_means(green, f)`` gives that copy as a float64 host array.
    """
    kind = kind_in_name(path)
    if kind is not None:
        return kind
    h, w = green.shape
    small = block_means(green, max(1, min(h, w) // 16))
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


def prepare_disputed(path: str, params: Params, sensor_shapes: Sequence[tuple[int, int]] | tuple[int, int],
                     kind: str = KIND, limits: InputLimits | None = None, defer_jpeg: bool = False) -> Prepared:
    """Host work for one disputed image: decode, decide the kind, list the rotations to try against the
    fingerprints' sensor frames ``sensor_shapes`` (one (rows, columns) or several), rotate and clip to the
    PCE geometry. Raises ImageError.

    ``defer_jpeg``: a JPEG the GPU decoder takes (:func:`~camid_gpu.io.device_decode.device_unsupported`)
    is only read, hashed, its header parsed and its stream checked; :func:`decode_on_device` decodes it
    later, in the process that holds the device. Other files are decoded here, with the reason in
    ``decoder_note``.
    """
    data = read_file_bytes(path, limits)
    note = None
    if defer_jpeg:
        note = device_unsupported(data)
        if note is None:
            try:
                info = jpeg_header_info(path, data, limits=limits)
            except ImageDecodeError as exc:
                note = exc.reason
            else:
                return Prepared(path, info, kind, "", [], [], encoded=data, limits=limits)
    pixels, info = decode_bytes(path, data, limits=limits)
    item = _finish(path, info, pixels, params, sensor_shapes, kind, _HostArrays)
    item.decoder_note = note
    return item


def _finish(path: str, info: ImageInfo, pixels: Any, params: Params,
            sensor_shapes: Sequence[tuple[int, int]] | tuple[int, int], kind: str, ops: Any) -> Prepared:
    """Decide the kind, list the rotations and clip decoded pixels to the PCE geometry (host arrays with
    ``ops=_HostArrays``, device arrays with the GPU decoder as ``ops``)."""
    if min(info.height, info.width) < MIN_SIDE:  # too small for any residual, whatever the fingerprints
        raise ImageTooSmallError(path, f"image is {info.height}x{info.width} (rows x columns, as stored), smaller "
                                       f"than the {MIN_SIDE}x{MIN_SIDE} that any comparison needs")
    green = green_channel(pixels)
    if kind == "auto":
        kind, source = guess_kind(path, green, ops.block_means)
    else:
        source = "given"
    if len(sensor_shapes) == 2 and all(isinstance(v, (int, np.integer)) for v in sensor_shapes):
        sensor_shapes = [sensor_shapes]  # type: ignore[list-item]
    wanted = {d for s in sensor_shapes for d in rotations_to_try((info.height, info.width), s, params.rotations)}
    rotations = [d for d in (0, 90, 180, 270) if d in wanted]
    clips = []
    for degrees in rotations:
        try:
            clips.append(ops.contiguous(center_clip(ops.rot90(pixels, degrees // 90), params.pce_clip, path)))
        except ImageError:  # smaller than the PCE clipping when turned so: comparable with no fingerprint there
            clips.append(None)
    # a constant image carries no sensor noise: a per-file error, never a (NaN) score; checked on the pixels PCE
    # compares (the clip, when there is one: an image constant inside it had a score), one per turn of the clip
    regions = {clip.shape[:2]: clip for clip in clips if clip is not None} if params.pce_clip else {}
    for shape, region in (regions or {(info.height, info.width): pixels}).items():
        problem = content_problem(green_channel(region), info.bit_depth, reference=False)
        if problem:
            where = "" if not regions else f" in the {shape[0]}x{shape[1]} centre region PCE compares"
            raise ImageContentError(path, f"insufficient content{where}: {problem}")
    natural = ops.to_host(green) if (kind == "natural" and params.natural_mode == "paper") else None
    return Prepared(path, info, kind, source, rotations, clips, natural, pixels=pixels)


def decode_on_device(pending: Sequence[Any], decoder: DeviceJpegDecoder, params: Params,
                     sensor_shapes: Sequence[tuple[int, int]] | tuple[int, int]) -> list[Any]:
    """Finish the deferred JPEGs among ``pending`` (Prepared items and error entries, in input order): one
    batched GPU decode, then kind, rotations and clips on the device.

    A file the GPU decoder fails on, or whose decoded size disagrees with its header, is decoded on the CPU
    from the same bytes (``decoder_note`` says why); a file neither can use is replaced by its ImageError.
    """
    deferred = [i for i, x in enumerate(pending) if isinstance(x, Prepared) and x.encoded is not None]
    decoded = decoder.decode([pending[i].encoded for i in deferred])
    out = list(pending)
    for i, pixels in zip(deferred, decoded):
        item = pending[i]
        note = _device_problem(item.info, pixels)
        try:
            if note is None:
                done = _finish(item.path, item.info, pixels, params, sensor_shapes, item.kind, decoder)
                done.decoder = "gpu"
            else:
                host, info = decode_bytes(item.path, item.encoded, limits=item.limits)
                done = _finish(item.path, info, host, params, sensor_shapes, item.kind, _HostArrays)
                done.decoder_note = note
        except ImageError as exc:
            out[i] = exc
            continue
        out[i] = done
    return out


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


def disputed_listing(paths: Sequence[str]) -> Listing:
    """The disputed images under ``paths`` (files and folders, links followed) and the files skipped there
    (with reasons); at least one image. A missing path without an image suffix (a folder, surely) fails
    here, before any work; a missing image file gets its own error record later."""
    for p in paths:
        p = os.fsdecode(os.fspath(p))
        if not os.path.exists(p) and not p.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES):
            raise CamidError(f"{p}: disputed-image folder does not exist")
    listing = scan_inputs(*paths)
    if not listing.images:
        raise CamidError(f"no images found in {', '.join(map(str, paths))}"
                         + (f" ({len(listing.skipped)} other files skipped)" if listing.skipped else ""))
    return listing


def disputed_images(paths: Sequence[str]) -> list[str]:
    return disputed_listing(paths).images

"""Image decoding: read-only, regular files only, allow-listed formats, size limits, damage refused.

Evidence files are opened read-only and non-blocking, checked to be regular files (a FIFO or a device is
refused before a byte is read) and no larger than the file-size limit, read once into memory, hashed and
decoded from the same bytes, so the recorded SHA-256 is the hash of exactly what was analysed. The format
is decided from the leading bytes before any decoder runs, and only JPEG, PNG, TIFF, BMP, HEIF and DNG are
decoded (never EPS/PostScript, PDF, GIF, ...). The declared decoded size is checked against the limits before the
pixels are allocated. Pixels are never rotated by the EXIF orientation (PRNU lives on the sensor grid).

Damage is an error, never a clean result: a JPEG whose entropy-coded data ends early (even with an end
marker appended), a PNG chunk whose CRC does not match, a truncated file, and any warning a decoder emits
while decoding (libjpeg's recoverable-error warnings are read through simplejpeg's strict mode, which
Pillow does not expose).

Accepted: JPEG, PNG, BMP (Pillow), TIFF (tifffile: the largest page or SubIFD, :mod:`.tiff`), HEIF and DNG
(optional extras, :mod:`.raw`), 8- or 16-bit (16-bit colour PNG kept at 16 bits),
gray, RGB, RGBA (alpha dropped), palette (converted to RGB), gray+alpha. Refused with a reason: other
formats, CMYK, 1-bit, floating-point or 32-bit integer samples, NaN/Inf, empty, truncated, damaged and
over-large files.
"""
from __future__ import annotations

import io
import logging
import os
import struct
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator

import numpy as np

from camid_gpu.config import InputLimits
from camid_gpu.errors import ImageDecodeError
from camid_gpu.io.raw import HEIF_BRANDS, decode_dng, decode_heif
from camid_gpu.io.reader import file_digest, read_evidence
from camid_gpu.io.tiff import decode_tiff
from camid_gpu.io.video import sniff_video

#: the formats camid decodes (decided from the leading bytes, never from the file name); HEIF and DNG through
#: the optional extras ``heif`` and ``raw`` (:mod:`camid_gpu.io.raw`)
ALLOWED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "HEIF", "DNG")

_EXIF_TAGS = {0x010F: "make", 0x0110: "model", 0x0112: "orientation", 0x0132: "datetime"}
_EXIF_IFD, _DATETIME_ORIGINAL = 0x8769, 0x9003
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: leading bytes of formats that are refused, to name them in the reason
_OTHER_MAGIC = ((b"%!PS", "PostScript/EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"), (b"GIF8", "GIF"),
                (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
                (b"\x00\x00\x01\x00", "ICO"), (b"8BPS", "Photoshop PSD"), (b"\x0a", "PCX"))


@dataclass(frozen=True)
class ImageInfo:
    """What is known about one decoded input file."""

    path: str
    sha256: str
    file_size: int
    format: str
    height: int
    width: int
    channels: int
    bit_depth: int
    exif: dict[str, Any] = field(default_factory=dict)
    #: a multi-page TIFF: which page or SubIFD was analysed, among which (None for a one-frame file)
    frame: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sniff_format(head: bytes) -> str | None:
    """``"JPEG"``, ``"PNG"``, ``"TIFF"`` (DNG included: told apart when decoded), ``"BMP"`` or ``"HEIF"`` from a
    file's leading bytes; None for anything else."""
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == _PNG_SIGNATURE:
        return "PNG"
    if head[:4] in _TIFF_MAGIC:
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 26:
        return "BMP"
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "HEIF"
    return None


def describe_content(head: bytes | None) -> str:
    """What the leading bytes of a file that camid does not read look like (for messages)."""
    if not head:
        return "nothing (empty file)" if head is not None else "unreadable"
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return name
    video = sniff_video(head)
    if video:  # identify, fingerprint, cluster and library search take videos; the others read images only
        return (f"a {video} video (camid identify, fingerprint, cluster and library search read videos; this "
                f"command reads images)")
    if head[4:8] == b"ftyp":
        return f"ISO media ({head[8:12].decode('ascii', 'replace')}, e.g. AVIF)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return "unknown"


def _check_size(path: str, height: int, width: int, channels: int, sample_bytes: int,
                limits: InputLimits) -> None:
    """Refuse a declared size over the limits, before any pixel is allocated."""
    if height * width > limits.max_pixels:
        raise ImageDecodeError(path, f"declared size {width}x{height} exceeds the limit of {limits.max_pixels} "
                                     f"pixels (possible decompression bomb)")
    decoded = height * width * channels * sample_bytes
    if decoded > limits.max_decoded_bytes:
        raise ImageDecodeError(path, f"declared size {width}x{height}x{channels} at {8 * sample_bytes} bits decodes "
                                     f"to {decoded} bytes, over the decoded-size limit of {limits.max_decoded_bytes} "
                                     f"bytes (possible decompression bomb; raise it with --max-decoded-size)")


@contextmanager
def _library_messages(path: str) -> Iterator["_PathHandler"]:
    """Decoder warnings become per-file errors naming ``path``; tifffile's log lines are re-logged with it
    (and those logged while pixels are decoded are errors: see :func:`camid_gpu.io.tiff.decode_tiff`)."""
    logger = logging.getLogger("tifffile")
    handler = _PathHandler(path)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                yield handler
            except (Warning, ResourceWarning) as w:
                raise ImageDecodeError(path, f"the decoder reports a problem: {type(w).__name__}: {w}") from None
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _PathHandler(logging.Handler):
    """tifffile's log lines during one decode: kept, and re-logged on ``camid_gpu.io`` with the file name."""

    def __init__(self, path: str):
        super().__init__(logging.WARNING)
        self.path = path
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        logging.getLogger("camid_gpu.io").log(record.levelno, "%s: tifffile: %s", self.path, record.getMessage())


#: bytes of decompressed PNG image data produced at once while its zlib stream is checked (bounds memory)
_INFLATE_STEP = 1 << 24


def check_png_zlib(path: str, data: bytes, idat: list[tuple[int, int]]) -> None:
    """Inflate the IDAT data (the ``(start, end)`` byte ranges, in order) and discard it: the zlib stream must
    be complete and its Adler-32 must match. Pillow never checks the Adler-32, and a chunk CRC recomputed after
    an edit hides the edit from :func:`check_png_chunks`."""
    inflate = zlib.decompressobj()
    view = memoryview(data)
    try:
        for start, end in idat:
            pending = view[start:end]
            while pending:
                inflate.decompress(pending, _INFLATE_STEP)
                pending = inflate.unconsumed_tail
                if inflate.eof:
                    break
        while not inflate.eof and inflate.decompress(b"", _INFLATE_STEP):  # what is buffered
            pass
    except zlib.error as exc:
        kind = "checksum (Adler-32) mismatch" if "incorrect data check" in str(exc) else str(exc)
        raise ImageDecodeError(path, f"damaged PNG image data: zlib {kind} (the data was altered or corrupted)") \
            from None
    if not inflate.eof:
        raise ImageDecodeError(path, "truncated or damaged PNG: the compressed image data ends early")


def check_png_chunks(path: str, data: bytes) -> None:
    """Walk the PNG chunks: every CRC must match and IEND must be present (Pillow skips IDAT CRCs); then the
    IDAT data's zlib stream (:func:`check_png_zlib`)."""
    pos, n = 8, len(data)
    idat: list[tuple[int, int]] = []
    while True:
        if pos + 8 > n:
            raise ImageDecodeError(path, "truncated or damaged PNG: the file ends before the IEND chunk")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length + 4
        name = ctype.decode("latin-1")
        if length > 0x7FFFFFFF or end > n:
            raise ImageDecodeError(path, f"truncated or damaged PNG: chunk {name!r} at byte {pos} runs past the end "
                                         f"of the file")
        crc = struct.unpack(">I", data[end - 4:end])[0]
        if zlib.crc32(data[pos + 4:end - 4]) & 0xFFFFFFFF != crc:
            raise ImageDecodeError(path, f"truncated or damaged PNG: CRC mismatch in chunk {name!r} at byte {pos} "
                                         f"(the data was altered or corrupted)")
        if ctype == b"IDAT":
            idat.append((pos + 8, end - 4))
        if ctype == b"IEND":
            check_png_zlib(path, data, idat)
            return
        pos = end


def check_jpeg_stream(path: str, data: bytes) -> None:
    """Entropy-decode the JPEG (at 1/8 scale: cheap) with libjpeg's warnings as errors.

    libjpeg repairs a scan that ends early (fills the rest with grey) and only warns; Pillow does not
    expose the warning, simplejpeg's strict mode raises it.
    """
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_factor=8, strict=True)
    except ValueError as exc:
        raise ImageDecodeError(path, f"truncated or damaged JPEG data: {exc} (the decoder would fill the missing "
                                     f"part; refused)") from None


#: PNG raw modes of 16-bit colour (Pillow keeps only their high bytes) -> the raw mode that yields the low bytes
_PNG16_LOW = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


def _open_pillow(path: str, data: bytes, fmt: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limits apply
            return Image.open(io.BytesIO(data), formats=[fmt])  # the sniffed format's plugin, no other
    except UnidentifiedImageError:
        raise ImageDecodeError(path, f"not a valid {fmt} file") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(path, f"declared size too large (possible decompression bomb): {exc}") from None
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(path, f"truncated or damaged image data ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # Pillow plugins raise many types for hostile headers
        raise ImageDecodeError(path, f"cannot be decoded ({type(exc).__name__}: {exc})") from None


def _load_png16_low_bytes(path: str, data: bytes, low_rawmode: str) -> np.ndarray:
    """The low bytes of a 16-bit colour PNG: Pillow's own decoder, told to unpack the other byte."""
    image = _open_pillow(path, data, "PNG")
    with image:
        image.tile = [t._replace(args=low_rawmode) for t in image.tile]
        image.load()
        return np.asarray(image)


def _decode_pillow(path: str, data: bytes, fmt: str, limits: InputLimits) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image, ImageFile

    image = _open_pillow(path, data, fmt)
    with image:
        width, height = image.size
        mode = image.mode
        rawmode = image.tile[0].args if image.tile and isinstance(image.tile[0].args, str) else None
        # IHDR bit depth 16 with colour (types 2, 4, 6): Pillow would keep only the high bytes
        sixteen = fmt == "PNG" and data[24] == 16 and data[25] in (2, 4, 6)
        bands = 3 if mode in ("P", "PA", "YCbCr") else len(image.getbands())
        _check_size(path, height, width, bands, 2 if (sixteen or mode.startswith("I;16")) else
                    (4 if mode in ("I", "F") else 1), limits)
        if mode == "CMYK":
            raise ImageDecodeError(path, "CMYK image is not camera output; convert it to RGB explicitly")
        if mode in ("1", "F", "I"):
            raise ImageDecodeError(path, f"unsupported pixel mode {mode!r} (1-bit, float or 32-bit samples)")
        if sixteen and rawmode not in _PNG16_LOW:
            raise ImageDecodeError(path, f"16-bit PNG of colour type {data[25]} (raw mode {rawmode}): camid cannot keep "
                                         f"its 16 bits; convert it to 16-bit gray or RGB")
        exif = _pillow_exif(image)
        if fmt == "JPEG":
            check_jpeg_stream(path, data)
        truncated = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, whatever another caller set
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limits apply
                image.load()
            if mode in ("P", "PA"):
                image = image.convert("RGBA" if "transparency" in image.info or mode == "PA" else "RGB")
            if mode == "YCbCr":
                image = image.convert("RGB")
            array = np.asarray(image)
            if sixteen:
                low = _load_png16_low_bytes(path, data, _PNG16_LOW[rawmode])
                array = (array.astype(np.uint16) << 8) | low
        except ImageDecodeError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
            raise ImageDecodeError(path, f"truncated or damaged {fmt} data ({exc})") from None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    if mode.startswith("I;16"):
        array = array.astype(np.uint16)
    return array, exif


def _pillow_exif(image) -> dict[str, Any]:
    try:
        raw = image.getexif()
    except Exception:  # a damaged EXIF block must not stop the analysis of the pixels
        return {"error": "unreadable EXIF"}
    exif: dict[str, Any] = {}
    for tag, key in _EXIF_TAGS.items():
        if tag in raw:
            value = raw[tag]
            if key == "orientation":
                try:
                    exif[key] = int(value)
                except (TypeError, ValueError):
                    exif[key] = None
            else:
                exif[key] = str(value).strip("\x00 ")
    try:
        original = raw.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL)
    except Exception:
        original = None
    if original:
        exif["datetime_original"] = str(original).strip("\x00 ")
    return exif


def _normalise(path: str, array: np.ndarray) -> tuple[np.ndarray, int]:
    """Pixels as (H, W) or (H, W, 3), uint8 or uint16; returns (pixels, bit depth)."""
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ImageDecodeError(path, "floating-point samples with NaN or Inf")
        raise ImageDecodeError(path, "floating-point samples (not camera output; unknown scale)")
    if array.dtype == np.bool_:
        raise ImageDecodeError(path, "1-bit image")
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageDecodeError(path, f"unsupported sample type {array.dtype} (8- or 16-bit unsigned expected)")
    if array.ndim == 3:
        if array.shape[-1] in (2, 4):  # gray+alpha, RGBA: alpha dropped
            array = array[..., :-1]
        if array.shape[-1] == 1:
            array = array[..., 0]
        elif array.shape[-1] != 3:
            raise ImageDecodeError(path, f"unsupported channel count {array.shape[-1]}")
    elif array.ndim != 2:
        raise ImageDecodeError(path, f"unsupported array shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageDecodeError(path, f"empty image {array.shape}")
    return np.ascontiguousarray(array), 8 * array.dtype.itemsize


def read_image(path: str | os.PathLike, *, limits: InputLimits | None = None,
               max_pixels: int | None = None) -> tuple[np.ndarray, ImageInfo]:
    """Decode one image file, read-only.

    Returns ``(pixels, info)``: pixels ``(H, W)`` or ``(H, W, 3)``, uint8 or uint16, in the file's
    own pixel order (no EXIF rotation). ``limits`` (default :class:`~camid_gpu.config.InputLimits`)
    bound the file size (checked before reading) and the declared decoded size (checked before
    decoding); ``max_pixels`` overrides its pixel limit. Raises a subclass of
    :class:`~camid_gpu.errors.ImageError` that names the path and the reason.
    """
    path = os.fspath(path)
    limits = limits or InputLimits()
    if max_pixels is not None:
        limits = InputLimits(limits.max_file_bytes, limits.max_decoded_bytes, max_pixels)
    return decode_bytes(path, read_file_bytes(path, limits), limits=limits)


def read_file_bytes(path: str | os.PathLike, limits: InputLimits | None = None) -> bytes:
    """The whole file, opened read-only, within ``limits.max_file_bytes``; raises ImageError for a missing,
    unreadable, over-large or empty file."""
    path = os.fspath(path)
    data = read_evidence(path, (limits or InputLimits()).max_file_bytes)
    if not data:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    return data


def decode_bytes(path: str, data: bytes, *, limits: InputLimits | None = None) -> tuple[np.ndarray, ImageInfo]:
    """:func:`read_image` on bytes already read (``path`` names them in errors and in the info)."""
    limits = limits or InputLimits()
    fmt = sniff_format(data[:32])
    if fmt is None:
        raise ImageDecodeError(path, f"not a recognised image format (the content looks like: "
                                     f"{describe_content(data[:32])}); camid accepts {', '.join(ALLOWED_FORMATS)} only")
    frame = None
    with _library_messages(path) as library:
        if fmt == "PNG":
            check_png_chunks(path, data)
        if fmt == "TIFF":
            array, exif, frame, is_dng = decode_tiff(path, data, limits, _check_size, library.messages)
            if is_dng:
                fmt = "DNG"
                array, exif = decode_dng(path, data, limits, _check_size)
        elif fmt == "HEIF":
            array, exif = decode_heif(path, data, limits, _check_size)
        else:
            array, exif = _decode_pillow(path, data, fmt, limits)
    array, depth = _normalise(path, array)
    info = _info(path, data, fmt, array.shape[0], array.shape[1], 1 if array.ndim == 2 else array.shape[2], depth, exif)
    return array, (replace(info, frame=frame) if frame else info)


def _info(path: str, data: bytes, fmt: str, height: int, width: int, channels: int, depth: int,
          exif: dict[str, Any]) -> ImageInfo:
    sha256, file_size = file_digest(data)  # of the whole file, also when only the image's bytes were kept
    return ImageInfo(path=path, sha256=sha256, file_size=file_size, format=fmt,
                     height=height, width=width, channels=channels, bit_depth=depth, exif=exif)


def jpeg_header_info(path: str, data: bytes, *, limits: InputLimits | None = None) -> ImageInfo:
    """The :class:`ImageInfo` of an 8-bit gray or colour JPEG without decoding its pixels, as
    :func:`decode_bytes` would give it: for files whose pixels another decoder (the GPU's) produces.

    The same refusals apply before any pixel is made: size limits, and a truncated or damaged entropy-coded
    stream (:func:`check_jpeg_stream`). Raises ImageDecodeError, also when the mode is not L/RGB.
    """
    limits = limits or InputLimits()
    if sniff_format(data[:32]) != "JPEG":
        raise ImageDecodeError(path, "not a JPEG")
    image = _open_pillow(path, data, "JPEG")
    with image:
        if image.mode not in ("L", "RGB"):
            raise ImageDecodeError(path, f"not an 8-bit gray/RGB JPEG (mode {image.mode})")
        width, height = image.size
        channels = 1 if image.mode == "L" else 3
        _check_size(path, height, width, channels, 1, limits)
        exif = _pillow_exif(image)
    check_jpeg_stream(path, data)
    return _info(path, data, "JPEG", height, width, channels, 8, exif)

"""Image decoding: read-only, SHA-256 of the bytes decoded, EXIF facts, size limits.

Evidence files are opened read-only (``"rb"``), read once into memory, hashed and decoded from the
same bytes, so the recorded SHA-256 is the hash of exactly what was analysed. Pixels are never
rotated by the EXIF orientation (PRNU lives on the sensor grid); the orientation is only reported.

Accepted: JPEG, PNG, BMP (Pillow) and TIFF (tifffile), 8- or 16-bit, gray, RGB, RGBA (alpha
dropped), palette (converted to RGB), gray+alpha. Refused with a reason: CMYK, 1-bit, floating-point
or 32-bit integer samples, NaN/Inf, empty, truncated and over-large (decompression bomb) files.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from camid_gpu.errors import ImageDecodeError, ImageNotFoundError, ImageUnreadableError

#: largest decoded size accepted, in pixels (a guard against decompression bombs)
MAX_PIXELS = 250_000_000

_EXIF_TAGS = {0x010F: "make", 0x0110: "model", 0x0112: "orientation", 0x0132: "datetime"}
_EXIF_IFD, _DATETIME_ORIGINAL = 0x8769, 0x9003


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_bytes(path: str | os.PathLike) -> bytes:
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageUnreadableError(path, "dangling symbolic link") from None
        raise ImageNotFoundError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageUnreadableError(path, "is a directory, not an image file") from None
    except PermissionError:
        raise ImageUnreadableError(path, "permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageUnreadableError(path, "symbolic link loop") from None
        raise ImageUnreadableError(path, f"cannot be read ({exc.strerror or exc})") from None


def _check_pixels(path: str, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageDecodeError(path, f"declared size {width}x{height} exceeds the limit of {max_pixels} pixels "
                                     f"(possible decompression bomb)")


def _decode_tiff(path: str, data: bytes, max_pixels: int) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            photometric = getattr(page.photometric, "name", str(page.photometric))
            if photometric in ("SEPARATED", "CMYK"):
                raise ImageDecodeError(path, "CMYK TIFF is not camera output; convert it to RGB explicitly")
            shape = page.shape
            _check_pixels(path, page.imagelength, page.imagewidth, max_pixels)
            exif = {}
            for tag, key in (("Make", "make"), ("Model", "model"), ("Orientation", "orientation"),
                             ("DateTime", "datetime")):
                if tag in page.tags:
                    value = page.tags[tag].value
                    exif[key] = int(value) if key == "orientation" else str(value).strip("\x00 ")
            array = page.asarray()
            if photometric == "PALETTE":
                colormap = np.asarray(page.colormap)  # (3, 2**bits), uint16
                array = colormap[:, array].transpose(1, 2, 0)
            elif len(shape) == 3 and page.planarconfig == 2:  # separate planes -> (H, W, C)
                array = np.moveaxis(array, 0, -1)
    except ImageDecodeError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise ImageDecodeError(path, f"damaged or unsupported TIFF ({type(exc).__name__}: {exc})") from None
    return array, exif


def _decode_pillow(path: str, data: bytes, max_pixels: int) -> tuple[np.ndarray, dict[str, Any], str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(path, f"declared size too large (possible decompression bomb): {exc}") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(path, f"truncated or damaged image data ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # Pillow plugins raise many types for hostile headers
        raise ImageDecodeError(path, f"cannot be decoded ({type(exc).__name__}: {exc})") from None
    with image:
        fmt = image.format or "unknown"
        width, height = image.size
        _check_pixels(path, height, width, max_pixels)
        mode = image.mode
        if mode == "CMYK":
            raise ImageDecodeError(path, "CMYK image is not camera output; convert it to RGB explicitly")
        if mode in ("1", "F", "I"):
            raise ImageDecodeError(path, f"unsupported pixel mode {mode!r} (1-bit, float or 32-bit samples)")
        exif = _pillow_exif(image)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
            if mode in ("P", "PA"):
                image = image.convert("RGBA" if "transparency" in image.info or mode == "PA" else "RGB")
            if mode == "YCbCr":
                image = image.convert("RGB")
            array = np.asarray(image)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageDecodeError(path, f"truncated or damaged {fmt} data ({exc})") from None
    if mode.startswith("I;16"):
        array = array.astype(np.uint16)
    return array, exif, fmt


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


def read_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, ImageInfo]:
    """Decode one image file, read-only.

    Returns ``(pixels, info)``: pixels ``(H, W)`` or ``(H, W, 3)``, uint8 or uint16, in the file's
    own pixel order (no EXIF rotation). Raises a subclass of :class:`~camid_gpu.errors.ImageError`
    that names the path and the reason.
    """
    path = os.fspath(path)
    return decode_bytes(path, read_file_bytes(path), max_pixels=max_pixels)


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The whole file, opened read-only; raises ImageError for a missing, unreadable or empty file."""
    path = os.fspath(path)
    data = _read_bytes(path)
    if not data:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    return data


def decode_bytes(path: str, data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, ImageInfo]:
    """:func:`read_image` on bytes already read (``path`` names them in errors and in the info)."""
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        array, exif = _decode_tiff(path, data, max_pixels)
        fmt = "TIFF"
    else:
        array, exif, fmt = _decode_pillow(path, data, max_pixels)
    array, depth = _normalise(path, array)
    return array, _info(path, data, fmt, array.shape[0], array.shape[1],
                        1 if array.ndim == 2 else array.shape[2], depth, exif)


def _info(path: str, data: bytes, fmt: str, height: int, width: int, channels: int, depth: int,
          exif: dict[str, Any]) -> ImageInfo:
    return ImageInfo(path=path, sha256=hashlib.sha256(data).hexdigest(), file_size=len(data), format=fmt,
                     height=height, width=width, channels=channels, bit_depth=depth, exif=exif)


def jpeg_header_info(path: str, data: bytes, *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """The :class:`ImageInfo` of an 8-bit gray or colour JPEG from its header alone (no pixel decoding),
    as :func:`decode_bytes` would give it: for files whose pixels another decoder (the GPU's) produces.
    Raises ImageDecodeError when Pillow cannot read the header or the mode is not L/RGB."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Exception as exc:  # the caller falls back to a full CPU decode, which names the problem
        raise ImageDecodeError(path, f"JPEG header unreadable ({type(exc).__name__}: {exc})") from None
    with image:
        if image.format != "JPEG" or image.mode not in ("L", "RGB"):
            raise ImageDecodeError(path, f"not an 8-bit gray/RGB JPEG ({image.format}, mode {image.mode})")
        width, height = image.size
        _check_pixels(path, height, width, max_pixels)
        return _info(path, data, "JPEG", height, width, 1 if image.mode == "L" else 3, 8, _pillow_exif(image))

"""Formats read through optional extras, imported only when such a file is met: HEIC/HEIF (``pillow-heif``,
extra ``heif``) and DNG (``rawpy``, LibRaw's Python binding, extra ``raw``). Without the extra, such a file is a
per-file error naming the extra, and the batch goes on.

HEIC/HEIF: the primary image, decoded by libheif at its own bit depth (8 bits, or 10/12 bits kept in 16-bit
samples); libheif applies the file's rotation and mirror properties (pillow-heif cannot leave them out), so a
phone photo stored with a rotation property comes out turned: identify such images with ``--rotations all``.

DNG geometry: the demosaiced RGB image LibRaw makes from the raw sensor data (``postprocess`` with a linear
curve, camera white balance, no brightening, no rotation: ``user_flip=0``), 16 bits per sample, at LibRaw's
output size (the sensor's visible area, ``sizes.height x sizes.width``; the masked border and any rows the
camera's JPEG engine crops are not part of it). Neither the raw Bayer mosaic nor the camera's JPEG framing: a
DNG is compared with fingerprints made from DNGs of the same camera; against a JPEG-made fingerprint it matches
only where the two frames have the same size.
"""
from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np

from camid_gpu.config import InputLimits
from camid_gpu.errors import ImageDecodeError

#: ISO base media major brands of HEIF still images (HEVC-coded and generic)
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1")

CheckSize = Callable[[str, int, int, int, int, InputLimits], None]


def _extra(path: str, module: str, extra: str, what: str):
    """Import ``module`` or raise a per-file error that names the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImageDecodeError(path, f"{what} needs the optional extra '{extra}' ({module}): "
                                     f"pip install 'camid_gpu[{extra}]'") from None


def decode_heif(path: str, data: bytes, limits: InputLimits, check_size: CheckSize) -> tuple[np.ndarray, dict]:
    """Pixels ``(H, W, 3)`` uint8 or uint16 and EXIF facts of a HEIC/HEIF file's primary image."""
    pillow_heif = _extra(path, "pillow_heif", "heif", "HEIC/HEIF")
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
        width, height = heif.size
        depth = int(heif.info.get("bit_depth") or 8)
        channels = 4 if heif.has_alpha else 3
        check_size(path, height, width, channels, 1 if depth <= 8 else 2, limits)
        array = np.asarray(heif)
        exif = _exif_of(heif.info.get("exif"))
    except ImageDecodeError:
        raise
    except Exception as exc:  # libheif's errors for damaged or unsupported files
        raise ImageDecodeError(path, f"damaged or unsupported HEIF ({type(exc).__name__}: {exc})") from None
    return array, exif


def decode_dng(path: str, data: bytes, limits: InputLimits, check_size: CheckSize) -> tuple[np.ndarray, dict]:
    """Demosaiced ``(H, W, 3)`` uint16 pixels of a DNG (see the module's note on geometry) and EXIF facts."""
    rawpy = _extra(path, "rawpy", "raw", "DNG")
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            check_size(path, raw.sizes.height, raw.sizes.width, 3, 2, limits)
            array = raw.postprocess(output_bps=16, gamma=(1, 1), no_auto_bright=True, use_camera_wb=True,
                                    user_flip=0)
    except ImageDecodeError:
        raise
    except Exception as exc:  # LibRaw's errors for damaged or unsupported files
        raise ImageDecodeError(path, f"damaged or unsupported DNG ({type(exc).__name__}: {exc})") from None
    return array, _dng_exif(data)


def _exif_of(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(raw[6:] if raw.startswith(b"Exif\x00\x00") else raw)
    except Exception:  # a damaged EXIF block must not stop the analysis of the pixels
        return {"error": "unreadable EXIF"}
    names = {0x010F: "make", 0x0110: "model", 0x0112: "orientation", 0x0132: "datetime"}
    return {key: (int(exif[tag]) if key == "orientation" else str(exif[tag]).strip("\x00 "))
            for tag, key in names.items() if tag in exif}


def _dng_exif(data: bytes) -> dict[str, Any]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            tags = tif.pages.first.tags
            return {key: (int(tags[tag].value) if key == "orientation" else str(tags[tag].value).strip("\x00 "))
                    for tag, key in (("Make", "make"), ("Model", "model"), ("Orientation", "orientation"),
                                     ("DateTime", "datetime")) if tag in tags}
    except Exception:
        return {"error": "unreadable EXIF"}

"""TIFF decoding (tifffile), every page and SubIFD considered: the largest frame is analysed and the record says
which, because a camera or a converter may write a thumbnail first and the full frame second (or in a SubIFD),
and page 1 alone gave the thumbnail's "no match" for an image whose full frame matches. A DNG (a TIFF with a
DNGVersion tag) is handed to :mod:`camid_gpu.io.raw`.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

from camid_gpu.config import InputLimits
from camid_gpu.errors import ImageDecodeError

#: pages and SubIFDs listed at most (each costs a header read); a TIFF with more is refused
MAX_TIFF_PAGES = 1024

_EXIF_TAGS = (("Make", "make"), ("Model", "model"), ("Orientation", "orientation"), ("DateTime", "datetime"))


def decode_tiff(path: str, data: bytes, limits: InputLimits, check_size,
                messages: list[str] | None = None) -> tuple[np.ndarray, dict[str, Any], dict[str, Any] | None, bool]:
    """``(pixels, exif, frame, is_dng)`` of the largest page or SubIFD of a TIFF; ``frame`` lists the pages when
    there is more than one (None for a one-page TIFF); for a DNG only ``is_dng`` is True (pixels None).
    ``check_size(path, rows, columns, channels, sample_bytes, limits)`` refuses a declared size over the limits
    before the pixels are allocated."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if tif.pages.first.is_dng:
                return None, {}, None, True
            frames = _frames(path, tif)
            chosen = max(range(len(frames)), key=lambda k: (_pixels(frames[k][1]), -k))  # the first of the largest
            page = frames[chosen][1]
            photometric = getattr(page.photometric, "name", str(page.photometric))
            if photometric in ("SEPARATED", "CMYK"):
                raise ImageDecodeError(path, "CMYK TIFF is not camera output; convert it to RGB explicitly")
            shape = page.shape
            # the page's declared samples (tiles x tile size), before tifffile allocates them
            samples = int(np.prod(shape)) if shape else 0
            channels = max(samples // max(page.imagelength * page.imagewidth, 1), 1)
            check_size(path, page.imagelength, page.imagewidth, channels, page.dtype.itemsize if page.dtype else 1,
                       limits)
            exif = _exif(tif.pages.first, page)
            logged = len(messages) if messages is not None else 0
            array = page.asarray(maxworkers=1)
            if messages is not None and len(messages) > logged:  # a problem while decoding the pixels
                raise ImageDecodeError(path, f"the TIFF decoder reports a problem: {messages[logged]}")
            if photometric == "PALETTE":
                colormap = np.asarray(page.colormap)  # (3, 2**bits), uint16
                array = colormap[:, array].transpose(1, 2, 0)
            elif len(shape) == 3 and page.planarconfig == 2:  # separate planes -> (H, W, C)
                array = np.moveaxis(array, 0, -1)
            frame = _frame_record(frames, chosen) if len(frames) > 1 else None
    except ImageDecodeError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise ImageDecodeError(path, f"damaged or unsupported TIFF ({type(exc).__name__}: {exc})") from None
    return array, exif, frame, False


def _frames(path: str, tif) -> list[tuple[dict[str, int], Any]]:
    """Every page and SubIFD: ``({"page": i[, "subifd": j]}, TiffPage)``, in file order."""
    import tifffile

    frames: list[tuple[dict[str, int], Any]] = []
    for i, page in enumerate(tif.pages):
        if len(frames) >= MAX_TIFF_PAGES:
            raise ImageDecodeError(path, f"more than {MAX_TIFF_PAGES} pages and SubIFDs")
        page = page if isinstance(page, tifffile.TiffPage) else page.aspage()
        frames.append(({"page": i}, page))
        for j, offset in enumerate(page.subifds or ()):
            tif.filehandle.seek(offset)
            frames.append(({"page": i, "subifd": j}, tifffile.TiffPage(tif, index=(i, j))))
    return frames


def _pixels(page) -> int:
    return int(page.imagelength) * int(page.imagewidth)


def _frame_record(frames, chosen: int) -> dict[str, Any]:
    """Which frame was analysed, among which (pages counted from 1, as a viewer shows them)."""
    listed = [{**{k: v + 1 for k, v in where.items()}, "size": [int(p.imagelength), int(p.imagewidth)]}
              for where, p in frames]
    return {"analysed": listed[chosen], "frames": listed,
            "rule": "the largest page or SubIFD (rows x columns) is analysed; the others are not"}


def _exif(first, page) -> dict[str, Any]:
    exif: dict[str, Any] = {}
    for source in (first, page):  # the analysed frame's own tags win over the first page's
        for tag, key in _EXIF_TAGS:
            if tag in source.tags:
                value = source.tags[tag].value
                exif[key] = int(value) if key == "orientation" else str(value).strip("\x00 ")
    return exif

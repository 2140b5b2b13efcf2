"""Hostile input files, generated at test time (nothing binary is stored in the repository).

Each function returns the bytes of one crafted file; :func:`write_corpus` writes a folder mixing them
with the name each test expects.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def jpeg_bytes(pixels: np.ndarray, quality: int = 90, progressive: bool = False) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, progressive=progressive)
    return buffer.getvalue()


def jpeg_cut_with_eoi(data: bytes, keep: float = 0.6) -> bytes:
    """A JPEG cut at ``keep`` of its length with an end-of-image marker appended: libjpeg fills the rest
    (grey) and only warns."""
    return data[: int(len(data) * keep)] + b"\xff\xd9"


def jpeg_declaring(data: bytes, height: int, width: int) -> bytes:
    """A JPEG whose frame header declares ``height x width`` while its scan holds the original data."""
    raw = bytearray(data)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        i = raw.find(marker)
        if i >= 0:
            raw[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(raw)
    raise ValueError("no SOF0/SOF2 marker")


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def png_bytes(pixels: np.ndarray, level: int = 6, filters: tuple[int, ...] = (0,)) -> bytes:
    """A PNG written here, not by Pillow: 8- or 16-bit gray, gray+alpha, RGB or RGBA, each row filtered with the next
    filter type of ``filters`` (0 none, 1 sub, 2 up, 3 average, 4 Paeth); ``level`` 0 stores the data
    uncompressed (a flipped bit then leaves a valid deflate stream: only the CRC tells)."""
    depth = 16 if pixels.dtype == np.uint16 else 8
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    h, w = pixels.shape[:2]
    raw = np.ascontiguousarray(pixels.astype(">u2" if depth == 16 else np.uint8)).view(np.uint8).reshape(h, -1)
    bpp = channels * depth // 8
    rows, previous = [], np.zeros(raw.shape[1], np.int64)
    for r in range(h):
        line = raw[r].astype(np.int64)
        kind = filters[r % len(filters)]
        out = np.empty_like(line)
        for i in range(line.size):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            pred = (0, a, b, (a + b) // 2, _paeth(int(a), int(b), int(c)))[kind]
            out[i] = (line[i] - pred) % 256
        rows.append(bytes([kind]) + out.astype(np.uint8).tobytes())
        previous = line
    header = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows), level))
            + _chunk(b"IEND", b""))


def png_with_flipped_bit(data: bytes, offset_in_idat: int = 200) -> bytes:
    """The PNG with one bit of its IDAT data flipped (the chunk's CRC no longer matches)."""
    raw = bytearray(data)
    start = raw.find(b"IDAT") + 4
    raw[start + offset_in_idat] ^= 0x10
    return bytes(raw)


def eps_bytes() -> bytes:
    """A tiny Encapsulated PostScript file (Pillow would hand it to Ghostscript)."""
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
            b"newpath 0 0 moveto 8 8 lineto stroke showpage\n%%EOF\n")


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 7).save(buffer, format="GIF")
    return buffer.getvalue()

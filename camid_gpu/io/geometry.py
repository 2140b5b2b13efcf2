"""Pixel geometry: the green channel, 16- to 8-bit, the centre clipping window.

Arrays are ``(H, W)`` or ``(H, W, 3)`` uint8/uint16 pixels as :func:`camid_gpu.io.decode.read_image` returns them.
"""
from __future__ import annotations

import numpy as np

from camid_gpu.errors import ImageTooSmallError


def green_channel(pixels: np.ndarray) -> np.ndarray:
    """The green plane of (H, W, 3) pixels; gray (H, W) pixels are returned as they are."""
    return pixels[..., 1] if pixels.ndim == 3 else pixels


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels: uint8 as is, uint16 rounded to the nearest of 256 levels (x / 257)."""
    if pixels.dtype == np.uint8:
        return pixels
    return np.round(pixels.astype(np.float64) / 257.0).astype(np.uint8)


def clip_window(height: int, width: int, clip: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of the centre clipping ``clip = (h, w)`` of an ``height x width`` image.

    Start offsets are ``floor((size - clip) / 2)`` on each axis, as MATLAB's ``centerCropWindow2d``
    (for an odd surplus the extra row/column is left at the bottom/right).
    """
    return (height - clip[0]) // 2, (width - clip[1]) // 2


def center_clip(pixels: np.ndarray, clip: tuple[int, int] | None, path: str = "<array>") -> np.ndarray:
    """Centre clipping of (H, W[, C]) pixels to ``clip = (h, w)``; None returns the whole image.

    Raises :class:`~camid_gpu.errors.ImageTooSmallError` when the image is smaller than the clipping.
    """
    if clip is None:
        return pixels
    ch, cw = clip
    h, w = pixels.shape[:2]
    if h < ch or w < cw:
        raise ImageTooSmallError(path, f"image is {h}x{w} (rows x columns), smaller than the {ch}x{cw} clipping")
    top, left = clip_window(h, w, clip)
    return pixels[top:top + ch, left:left + cw]

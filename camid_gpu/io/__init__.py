"""Stage 1, input: decoding (read-only, size-limited), geometry (green channel, centre clip) and listing.

:mod:`.images` holds it all; ``read_image`` returns ``(H, W[, 3])`` uint8/uint16 pixels and an ``ImageInfo``.
"""
from camid_gpu.io.images import (IMAGE_SUFFIXES, MAX_PIXELS, ImageInfo, center_clip, clip_window, green_channel,
                                 list_images, orientation_of, read_image, sha256_file, to_8bit)

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "ImageInfo", "center_clip", "clip_window", "green_channel", "list_images",
           "orientation_of", "read_image", "sha256_file", "to_8bit"]

"""Stage 1, input: :mod:`.decode` (read-only decoding, SHA-256, EXIF facts) with :mod:`.reader` (the file's
bytes: hashed whole, JPEG/PNG kept up to their end marker), :mod:`.tiff` (every page and SubIFD, the largest
analysed) and :mod:`.raw` (HEIC/HEIF and DNG through optional extras), :mod:`.geometry` (green channel, centre
clip) and :mod:`.listing` (files and folders to image paths, formats recognised by content).

``read_image`` returns ``(H, W[, 3])`` uint8/uint16 pixels and an ``ImageInfo``.
"""
from camid_gpu.io.decode import ImageInfo, read_image
from camid_gpu.io.geometry import center_clip, clip_window, green_channel, to_8bit
from camid_gpu.io.listing import IMAGE_SUFFIXES, list_images

__all__ = ["IMAGE_SUFFIXES", "ImageInfo", "center_clip", "clip_window", "green_channel", "list_images",
           "read_image", "to_8bit"]

"""Host work before the device: reference folders, the dataset layout, and disputed images decoded and
classified (flat/natural), with the rotations to try (:class:`Prepared`), and the geometry rule that says
which fingerprints an image can be compared with (:func:`match_geometry`). Pure host work that worker
processes run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from camid_gpu.config import InputLimits, Params
from camid_gpu.errors import CamidError, ImageTooSmallError
from camid_gpu.io.decode import ImageInfo, read_image
from camid_gpu.io.geometry import center_clip, green_channel
from camid_gpu.io.listing import IMAGE_SUFFIXES, Listing, scan_inputs
from camid_gpu.prnu.search import MIN_SIDE  # the smallest side any comparison (the crop search too) needs

KINDS = ("flat", "natural")


@dataclass
class CameraRefs:
    """A camera's reference files, after selection; ``errors`` are per-file error entries."""

    camera: str
    paths: list[str]
    errors: list[dict[str, Any]] = field(default_factory=list)


def camera_folders(refs_dir: str) -> list[tuple[str, str]]:
    """(camera, folder) for every subfolder of ``refs_dir`` (sorted; symbolic links to folders count)."""
    if not os.path.isdir(refs_dir):
        raise CamidError(f"{refs_dir}: reference folder does not exist")
    found = [(name, os.path.join(refs_dir, name)) for name in sorted(os.listdir(refs_dir))
             if os.path.isdir(os.path.join(refs_dir, name)) and not name.startswith(".")]
    if not found:
        raise CamidError(f"{refs_dir}: no camera subfolders (expected REFS_DIR/<camera>/<images>)")
    return found


def load_reference(path: str, clip: tuple[int, int] | None = None,
                   limits: InputLimits | None = None) -> tuple[np.ndarray, ImageInfo]:
    """Decode a reference image (and clip it when ``clip`` is given): pixels (h, w[, 3]) uint8/uint16."""
    pixels, info = read_image(path, limits=limits)
    return center_clip(pixels, clip, path), info


@dataclass
class Prepared:
    """A decoded disputed image and the rotations to try (host arrays; rotated and clipped on demand)."""

    path: str
    info: ImageInfo
    kind: str
    kind_source: str
    rotations: list[int]
    pixels: np.ndarray  # (H, W[, 3]) as stored
    natural_green: np.ndarray | None = None  # whole-image green plane (paper mode only)

    def shape_at(self, degrees: int) -> tuple[int, int]:
        """(rows, columns) of the image turned by ``degrees`` (counter-clockwise)."""
        h, w = self.pixels.shape[:2]
        return (w, h) if degrees % 180 else (h, w)

    def view(self, degrees: int, clip: tuple[int, int] | None = None) -> np.ndarray:
        """The pixels turned by ``degrees`` and centre-clipped to ``clip`` (None = whole): a contiguous copy."""
        turned = np.rot90(self.pixels, degrees // 90) if degrees else self.pixels
        return np.ascontiguousarray(center_clip(turned, clip, self.path))


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


def guess_kind(path: str, green: np.ndarray) -> tuple[str, str]:
    """'flat' or 'natural' from the file name when it says so, else from the content.

    Content rule (documented heuristic): a 16x-downsampled copy whose relative spread (std/mean)
    is under 0.15 is a flat field.
    """
    name = os.path.basename(path).lower()
    for kind in KINDS:
        if kind in name:
            return kind, "name"
    h, w = green.shape
    f = max(1, min(h, w) // 16)
    small = green[: h // f * f, : w // f * f].astype(np.float64).reshape(h // f, f, w // f, f).mean(axis=(1, 3))
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
                     kind: str = "auto", limits: InputLimits | None = None) -> Prepared:
    """Host work for one disputed image: decode, decide the kind, list the rotations to try against the
    fingerprints' sensor frames ``sensor_shapes`` (one (rows, columns) or several). Raises ImageError."""
    pixels, info = read_image(path, limits=limits)
    if min(info.height, info.width) < MIN_SIDE:  # too small for any residual, whatever the fingerprints
        raise ImageTooSmallError(path, f"image is {info.height}x{info.width} (rows x columns, as stored), smaller "
                                       f"than the {MIN_SIDE}x{MIN_SIDE} that any comparison needs")
    if kind == "auto":
        kind, source = guess_kind(path, green_channel(pixels))
    else:
        source = "given"
    if len(sensor_shapes) == 2 and all(isinstance(v, (int, np.integer)) for v in sensor_shapes):
        sensor_shapes = [sensor_shapes]  # type: ignore[list-item]
    wanted = {d for s in sensor_shapes for d in rotations_to_try((info.height, info.width), s, params.rotations)}
    rotations = [d for d in (0, 90, 180, 270) if d in wanted]
    natural = green_channel(pixels) if (kind == "natural" and params.natural_mode == "paper") else None
    return Prepared(path, info, kind, source, rotations, pixels, natural)


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
        if not os.path.exists(p) and not p.lower().endswith(IMAGE_SUFFIXES):
            raise CamidError(f"{p}: disputed-image folder does not exist")
    listing = scan_inputs(*paths)
    if not listing.images:
        raise CamidError(f"no images found in {', '.join(map(str, paths))}"
                         + (f" ({len(listing.skipped)} other files skipped)" if listing.skipped else ""))
    return listing


def disputed_images(paths: Sequence[str]) -> list[str]:
    return disputed_listing(paths).images

"""Host work before the device: reference folders, the dataset layout, and disputed images decoded,
classified (flat/natural), rotated and clipped (:class:`Prepared`). Pure host work that worker processes run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from camid_gpu.config import MIN_CONTENT_STD, REF_MAX_SATURATED_FRACTION, REF_MIN_MEAN, InputLimits, Params
from camid_gpu.errors import CamidError, ImageContentError, ImageError, ImageTooSmallError
from camid_gpu.io.decode import ImageInfo, read_image
from camid_gpu.io.geometry import center_clip, green_channel
from camid_gpu.io.listing import Listing, scan_inputs

KINDS = ("flat", "natural")


@dataclass
class CameraRefs:
    """A camera's reference files, after selection; ``errors`` are per-file error entries."""

    camera: str
    paths: list[str]
    errors: list[dict[str, Any]] = field(default_factory=list)


def camera_folders(refs_dir: str) -> list[tuple[str, str]]:
    """(camera, folder) for every subfolder of ``refs_dir`` (sorted)."""
    if not os.path.isdir(refs_dir):
        raise CamidError(f"{refs_dir}: reference folder does not exist")
    found = [(name, os.path.join(refs_dir, name)) for name in sorted(os.listdir(refs_dir))
             if os.path.isdir(os.path.join(refs_dir, name)) and not name.startswith(".")]
    if not found:
        raise CamidError(f"{refs_dir}: no camera subfolders (expected REFS_DIR/<camera>/<images>)")
    return found


def load_reference(path: str, clip: tuple[int, int] | None,
                   limits: InputLimits | None = None) -> tuple[np.ndarray, ImageInfo]:
    """Decode a reference image and clip it: pixels (h, w[, 3]) uint8/uint16."""
    pixels, info = read_image(path, limits=limits)
    return center_clip(pixels, clip, path), info


def content_problem(pixels: np.ndarray, bit_depth: int, reference: bool) -> str | None:
    """Why a clip ``(h, w[, 3])`` of ``bit_depth``-bit samples carries no usable PRNU, or None.

    Every image: constant (sample std under ``config.MIN_CONTENT_STD`` on the 0..255 scale). References
    also: saturated (over ``config.REF_MAX_SATURATED_FRACTION`` of samples at the top code) and too dark
    (mean under ``config.REF_MIN_MEAN``): a reference flat must be lit and not blown out.
    """
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


@dataclass
class Prepared:
    """A decoded disputed image, rotated and clipped for every rotation to try (host arrays)."""

    path: str
    info: ImageInfo
    kind: str
    kind_source: str
    rotations: list[int]
    clips: list[np.ndarray]  # per rotation: (h, w[, 3]) pixels
    natural_green: np.ndarray | None = None  # whole-image green plane (paper mode only)


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


def prepare_disputed(path: str, params: Params, fp_source_shape: tuple[int, int],
                     kind: str = "auto", limits: InputLimits | None = None) -> Prepared:
    """Host work for one disputed image: decode, decide the kind, rotate, clip. Raises ImageError."""
    pixels, info = read_image(path, limits=limits)
    if kind == "auto":
        kind, source = guess_kind(path, green_channel(pixels))
    else:
        source = "given"
    rotations, clips = [], []
    tried = rotations_to_try((info.height, info.width), fp_source_shape, params.rotations)
    for degrees in tried:
        turned = np.rot90(pixels, degrees // 90) if degrees else pixels
        try:
            clips.append(np.ascontiguousarray(center_clip(turned, params.clip, path)))
            rotations.append(degrees)
        except ImageError:
            continue
    if not clips:  # the size as stored in the file, not as turned by the last rotation tried
        ch, cw = params.clip  # type: ignore[misc]
        raise ImageTooSmallError(path, f"image is {info.height}x{info.width} (rows x columns, as stored), smaller "
                                       f"than the {ch}x{cw} clipping (rotations tried: "
                                       f"{', '.join(map(str, tried))} degrees)")
    problem = content_problem(clips[0], info.bit_depth, reference=False)
    if problem:
        raise ImageContentError(path, problem)
    natural = green_channel(pixels) if (kind == "natural" and params.natural_mode == "paper") else None
    return Prepared(path, info, kind, source, rotations, clips, natural)


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
    """The disputed images under ``paths`` and the files skipped there (with reasons); at least one image."""
    listing = scan_inputs(*paths)
    if not listing.images:
        raise CamidError(f"no images found in {', '.join(map(str, paths))}"
                         + (f" ({len(listing.skipped)} other files skipped)" if listing.skipped else ""))
    return listing


def disputed_images(paths: Sequence[str]) -> list[str]:
    return disputed_listing(paths).images

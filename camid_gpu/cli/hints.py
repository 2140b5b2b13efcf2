"""What to try when an image matched no camera and its data suggest why (issue 18, item 7).

Two cases are recognised from the record alone, never guessed from a low score:

- the EXIF orientation tag says the photo is shown turned (3: 180 degrees, 6: 90, 8: 270) and
  the rotation that tag implies was not tried: software that applied the tag turned the pixels off the sensor
  grid, and ``--rotations auto`` tries a 180-degree turn only against a fingerprint of the other orientation;
- the image is smaller than a camera's sensor frame in the same aspect ratio (a resized photo, as messaging
  apps and web galleries send them): only the scale/crop search (``--search-scales``) can find its camera. Not
  for an image that has the very size of a sensor searched (upright or turned): it was compared at full frame
  with the cameras of that size, and its size says nothing of a resize.
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

from camid_gpu.config import HINT_ASPECT_TOLERANCE
from camid_gpu.pipeline.crops import native_size
from camid_gpu.pipeline.records import ImageRecord, is_error, pce_of

#: EXIF orientation tag -> the turn (degrees) it asks a viewer to apply; software that applies it turns the pixels
#: off the sensor grid (mirrored tags, 2/4/5/7, cannot be undone by a turn and get no hint)
EXIF_TURNS = {3: 180, 6: 90, 8: 270}


def sensor_shapes(fp_dir: str | Sequence[str]) -> dict[str, tuple[int, int]]:
    """camera -> sensor frame (rows, columns), from the metadata files of the store (or of every store searched
    together, ``identify --store``); no arrays read."""
    if not isinstance(fp_dir, str):
        return {cam: shape for folder in fp_dir for cam, shape in sensor_shapes(folder).items()}
    shapes = {}
    try:
        names = sorted(os.listdir(fp_dir))
    except OSError:
        return {}
    for name in names:
        if not name.endswith(".json") or name == "manifest.json":
            continue
        try:
            with open(os.path.join(fp_dir, name), encoding="utf-8") as handle:
                meta = json.load(handle)
            shapes[str(meta["camera"])] = (int(meta["source_shape"][0]), int(meta["source_shape"][1]))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue  # the run itself checked the store; a hint is not worth an error
    return shapes


def hints_for(record: ImageRecord, sensors: dict[str, tuple[int, int]], rotations: str,
              searched: bool) -> list[str]:
    """The hints for one record (empty when it has a decision, is an error, or nothing suggests a cause)."""
    pce = pce_of(record)
    if is_error(record) or pce is None or pce.get("decision") or record.get("video"):  # a video searched scales
        return []
    out = []
    orientation = (record.get("exif") or {}).get("orientation")
    tried = set(record.get("rotations_tried") or [])
    if rotations != "all" and orientation in EXIF_TURNS and EXIF_TURNS[orientation] not in tried:
        out.append(f"its EXIF orientation is {orientation} (shown turned by {EXIF_TURNS[orientation]} degrees) and "
                   f"that turn was not tried; if software turned the pixels, try --rotations all")
    size = record.get("size")
    if not searched and size and not native_size(tuple(size), list(sensors.values())):
        # an image of a sensor's own size was compared at full frame with its cameras: nothing suggests a resize
        resized = [cam for cam, sensor in sensors.items() if _same_aspect_smaller(tuple(size), sensor)]
        if resized:
            out.append(f"it is {size[0]}x{size[1]}, smaller than the sensor frame of {', '.join(resized[:3])}"
                       f"{', ...' if len(resized) > 3 else ''} in the same aspect ratio (resized?): try "
                       f"--search-scales 0.5:1.0:0.01 (full-frame PCE fingerprints)")
    return out


def _same_aspect_smaller(image: tuple[int, int], sensor: tuple[int, int]) -> bool:
    """Whether ``image`` is smaller than ``sensor`` (either orientation) with the same aspect ratio."""
    for h, w in (sensor, sensor[::-1]):
        if image[0] < h and image[1] < w and abs(image[0] / image[1] - h / w) <= HINT_ASPECT_TOLERANCE * h / w:
            return True
    return False


def all_hints(records: Sequence[ImageRecord], fp_dir: str | Sequence[str], params: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, hint) for every record of a run that a hint applies to."""
    sensors = sensor_shapes(fp_dir)
    rotations, searched = params.get("rotations", "auto"), params.get("search_scales") is not None
    return [(r["path"], h) for r in records for h in hints_for(r, sensors, rotations, searched)]


def print_hints(records: Sequence[ImageRecord], fp_dir: str | Sequence[str], params: dict[str, Any]) -> None:
    """Each hint on stderr (``camid: hint: PATH: ...``)."""
    import sys

    from camid_gpu.io.listing import printable

    for path, hint in all_hints(records, fp_dir, params):
        print(f"camid: hint: {printable(path)}: {printable(hint)}", file=sys.stderr)

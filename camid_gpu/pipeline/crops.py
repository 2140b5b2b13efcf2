"""The crop rule (issue 25 item 2): search in proportion to the evidence.

An image whose size is the sensor frame of a camera compared (upright or turned by a quarter turn) is compared at
full frame with the cameras of that size; the larger sensors it would fit in as a crop are searched only on request
(``Params.search_crops``, ``--search-crops``). An image of no compared sensor's size is crop-searched inside every
larger sensor. Why: a crop search of an image that has the very size of a camera it is compared with spends most
of the run on the cameras it is least likely to come from, and its best unrelated offset (PCE ~20 over 10^6
positions) outranks the same-size cameras (on the real case of issue 25, every 6 MP photo was crop-searched in
every 10 MP fingerprint, and a 10 MP camera was the runner-up of every image).
"""
from __future__ import annotations

from typing import Any, Sequence

from camid_gpu.pipeline.prepare import CROP
from camid_gpu.pipeline.records import CROPS_SKIPPED, crop_rule, searched_record, skipped_crop_entry


def native_size(shape: tuple[int, int], sensors: Sequence[tuple[int, int]]) -> bool:
    """Whether an image of ``shape`` (rows, columns as stored) is the frame of one of ``sensors``, upright or
    turned by a quarter turn."""
    h, w = shape
    return any(tuple(s) in ((h, w), (w, h)) for s in sensors)


def apply_crop_rule(image_size: tuple[int, int], sensors: dict[str, tuple[int, int]],
                    matches: dict[str, list[tuple[int, str]]], refused: dict[str, dict[str, Any]],
                    search_crops: bool) -> dict[str, Any]:
    """The crop rule on one image's PCE comparisons (identify's ``comparisons``: ``matches`` camera ->
    ``(degrees, relation)``, ``refused`` camera -> not-comparable entry), against the cameras' sensor frames
    ``sensors`` (camera -> (rows, columns)): the cameras a crop search would be skipped for move from ``matches``
    to ``refused``, in place. Returns the record's ``searched``
    (:func:`~camid_gpu.pipeline.records.searched_record`)."""
    crop_only = [cam for cam, found in matches.items() if found[0][1] == CROP]
    rule = crop_rule(native_size(image_size, list(sensors.values())), bool(crop_only), search_crops)
    skipped = crop_only if rule == CROPS_SKIPPED else []
    for cam in skipped:
        refused[cam] = skipped_crop_entry(image_size, sensors[cam], [d for d, _ in matches.pop(cam)])
    return searched_record({cam: found[0][1] for cam, found in matches.items()}, skipped, rule)


__all__ = ["apply_crop_rule", "native_size"]

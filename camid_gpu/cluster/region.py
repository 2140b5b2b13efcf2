"""The region compared between images: ``--region auto`` (the default) chooses it from the frames and a budget.

Why: a shared sensor shows in the pair NCC as ``z = rho * sqrt(n)``: the z-score of a same-camera pair grows as
the square root of the pixels compared, the threshold does not. On 16 real 6 MP natural photos of six cameras,
the central 1024 x 1024 gave 0 clusters (same-camera z at most 6.3 against a threshold of 6.9), the full frame
three pure ones (weakest and median same-camera z 7.5 and 35.6 at full frame, 3.1 and 12.6 on the central
1024 x 1024). The cost of more pixels is linear in the residuals (computing them, and the residual rows kept
in ``RUN/residuals/``), and in the Gram products (``rows^2 / 2 * n`` multiply-adds per group).

``auto`` therefore compares whole frames when the run fits the budget (:func:`choose_region`): at most
:data:`~camid_gpu.config.CLUSTER_AUTO_STORE_BYTES` of residual rows (and at most half the free space where the run
folder lies) and :data:`~camid_gpu.config.CLUSTER_AUTO_GRAM_MACS` Gram multiply-adds; otherwise the largest
centred square (a group's whole short side, or a multiple of 256 pixels; never under
:data:`~camid_gpu.config.CLUSTER_REGION_FLOOR`) that does. The frames are read from the files' headers before any
decoding (a file whose header cannot be read counts as the largest frame found; it gets its per-file error later).
A resumed run keeps the region it was made with (its residual rows must stay comparable).

:func:`region_lines` are the console's lines: the region ``auto`` chose and why; when little links, the region
compared, the frames, and what to try.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from dataclasses import replace
from typing import Any, Sequence

from camid_gpu.config import (CLUSTER_AUTO_GRAM_MACS, CLUSTER_AUTO_STORE_BYTES, CLUSTER_REGION_FLOOR,
                              ClusterParams)

#: a square region is a multiple of this many pixels on a side
REGION_STEP = 256
#: name of the run folder's record of the residual parameters (written by the run)
PARAMS_FILE = "cluster-params.json"


def frame_sizes(paths: Sequence[str]) -> list[tuple[int, int] | None]:
    """(height, width) of each file from its header (Pillow, nothing decoded); None where it cannot be read."""
    from PIL import Image

    out: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the decoder's own limits apply later, file by file
                with Image.open(path) as image:
                    out.append((int(image.size[1]), int(image.size[0])))
        except Exception:  # noqa: BLE001 - any unreadable header: the residual stage reports the file
            out.append(None)
    return out


def run_cost(frames: Sequence[tuple[int, int]], region: int | None) -> dict[str, float]:
    """Residual rows, their bytes (float32) and the Gram multiply-adds of clustering ``frames`` over ``region``
    (a square side; None: the full frame). Portrait frames are two rows (both turns), as in the run."""
    groups: dict[tuple[int, int], int] = {}
    pixels_of: dict[tuple[int, int], int] = {}
    for h, w in frames:
        key = (min(h, w), max(h, w))
        groups[key] = groups.get(key, 0) + (2 if h > w else 1)
        side = None if region is None else min(region, key[0])
        pixels_of[key] = key[0] * key[1] if side is None else side * side
    rows = sum(groups.values())
    store = sum(r * pixels_of[k] * 4 for k, r in groups.items())
    macs = sum(r * r / 2 * pixels_of[k] for k, r in groups.items())
    return {"rows": rows, "store_bytes": float(store), "gram_macs": float(macs)}


def store_budget(run_dir: str, cap: int = CLUSTER_AUTO_STORE_BYTES) -> int:
    """Bytes of residual rows allowed: ``cap``, and at most half the free space where ``run_dir`` will lie."""
    folder = os.path.abspath(run_dir)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return int(min(cap, shutil.disk_usage(folder).free // 2))
    except OSError:
        return int(cap)


def choose_region(frames: Sequence[tuple[int, int] | None], store_bytes: int,
                  gram_macs: float = CLUSTER_AUTO_GRAM_MACS) -> dict[str, Any]:
    """The region for ``auto``: None (full frames) when they fit both budgets, else the largest square side
    (a group's short side, or a multiple of REGION_STEP; at least CLUSTER_REGION_FLOOR) that does, or the floor
    when nothing does.
    Returns ``{"region", "reason", "full_cost", "cost", "budget"}``."""
    known = [f for f in frames if f is not None]
    if known:
        largest = max(known, key=lambda f: f[0] * f[1])
        known += [largest] * (len(frames) - len(known))  # unreadable headers: counted as the largest frame
    budget = {"store_bytes": int(store_bytes), "gram_macs": float(gram_macs)}

    def fits(cost: dict[str, float]) -> bool:
        return cost["store_bytes"] <= budget["store_bytes"] and cost["gram_macs"] <= budget["gram_macs"]

    full = run_cost(known, None)
    if fits(full):
        return {"region": None, "reason": "full frames fit the budget", "full_cost": full, "cost": full,
                "budget": budget}
    # candidate sides, largest first: the groups' short sides (their whole square), then multiples of REGION_STEP
    shorts = {min(h, w) for h, w in known}
    steps = range((max(shorts) // REGION_STEP) * REGION_STEP, CLUSTER_REGION_FLOOR - 1, -REGION_STEP)
    sides = sorted({s for s in shorts if s > CLUSTER_REGION_FLOOR} | set(steps), reverse=True)
    side = next((s for s in sides if fits(run_cost(known, s))), CLUSTER_REGION_FLOOR)
    cost = run_cost(known, side)
    reason = ("full frames exceed the budget; the largest square that fits" if fits(cost) else
              f"even {side} x {side} exceeds the budget; {side} is the smallest region auto chooses")
    return {"region": side, "reason": reason, "full_cost": full, "cost": cost, "budget": budget}


def resolve_region(params: ClusterParams, paths: Sequence[str], run_dir: str,
                   resume: bool) -> tuple[ClusterParams, dict[str, Any] | None]:
    """``params`` with ``region="auto"`` made concrete (see the module doc), and the choice made (None when the
    region was given). A resumed run takes the region its folder records."""
    if params.region != "auto":
        return params, None
    recorded = os.path.join(run_dir, PARAMS_FILE)
    if resume and os.path.exists(recorded):
        try:
            with open(recorded, encoding="utf-8") as handle:
                stored = json.load(handle)["region"]
            if stored is None or (isinstance(stored, int) and not isinstance(stored, bool)):
                return replace(params, region=stored), {"region": stored, "reason": "the region of the run resumed"}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged record: the run's own check refuses it with its message
    choice = choose_region(frame_sizes(paths), store_budget(run_dir))
    return replace(params, region=choice["region"]), choice


def describe_region(region: Sequence[int], size: Sequence[int]) -> str:
    """``"the central 1024x1024 of 4000x6000 frames (4.4 % of the pixels)"`` or ``"whole 4000x6000 frames"``."""
    h, w = int(size[0]), int(size[1])
    if int(region[0]) * int(region[1]) >= h * w:
        return f"whole {h}x{w} frames"
    share = 100.0 * region[0] * region[1] / (h * w)
    return f"the central {region[0]}x{region[1]} of {h}x{w} frames ({share:.3g} % of the pixels)"


def region_hint(result: dict[str, Any]) -> list[str]:
    """Lines for the console when little links: in a group where under half of the images are in a cluster,
    what was compared and what to try. Empty when most images linked."""
    clustered: dict[str, int] = {}
    for c in result.get("clusters", []):
        clustered[c["group"]] = clustered.get(c["group"], 0) + c["size"]
    lines = []
    for g in result.get("groups", []):
        images, linked = g["images"], clustered.get(g["name"], 0)
        if images < 2 or 2 * linked >= images:
            continue
        h, w = (int(v) for v in g["name"].split("x"))
        region = g["region"]
        what = describe_region(region, (h, w))
        head = f"note: group {g['name']}: {linked} of {images} images in a cluster; compared {what}"
        if region[0] * region[1] < h * w:
            factor = math.sqrt(h * w / (region[0] * region[1]))
            lines.append(f"{head}. A shared sensor's z-score grows with the square root of the pixels compared: "
                         f"--region full would give same-camera pairs about {factor:.2g} times the z "
                         f"(threshold about the same), at {factor ** 2:.2g} times the residual work and storage")
        else:
            lines.append(f"{head}. Single natural photos may carry too little sensor noise to link: more images "
                         f"per camera, or brighter and smoother ones, help; a larger --pfa links more and admits "
                         f"more false links")
    return lines


def region_lines(result: dict[str, Any]) -> list[str]:
    """The console's lines about the region: what ``auto`` chose and why, then :func:`region_hint`."""
    lines = []
    choice = result.get("region_choice")
    if choice and "cost" in choice:
        cost, budget = choice["cost"], choice["budget"]
        chosen = "whole frames" if choice["region"] is None else f"{choice['region']}x{choice['region']} squares"
        lines.append(f"region auto: {chosen} ({choice['reason']}: {cost['rows']} residual rows, "
                     f"{cost['store_bytes'] / 2**30:.3g} GiB of {budget['store_bytes'] / 2**30:.3g} GiB, "
                     f"{cost['gram_macs']:.3g} of {budget['gram_macs']:.3g} Gram multiply-adds)")
    return lines + region_hint(result)

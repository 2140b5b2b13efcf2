"""A video as a ``camid library search`` query: its pooled residual screened like an image's view, the shortlist
confirmed by the video scoring of ``identify`` (:func:`camid_gpu.pipeline.video.identify_video`: the pooled PCE
with the stabilisation test, or the scale/offset search against a still sensor), at the image's decision
threshold ``T_N`` (Sidak over every camera compared). The record is identify's video record plus ``library``.

Screen. The video's frames (``--frames``, keyframes by default) are pooled into ``X = sum_i w_i W_i I_i`` and
``S = sum_i w_i I_i^2`` (:func:`~camid_gpu.pipeline.video.pool_video`). The screen's rows of a view are
``q = (W - mean W) I``, ``I``, ``I^2`` and ``|W - mean W|`` (:func:`camid_gpu.library.screen.query_rows`); the
video's are ``q = X``, ``I = sqrt(S)``, ``I^2 = S`` and ``|X / sqrt(S) - mean|``: ``X ~ K S`` plus a noise of
variance ``~ S`` per pixel (``w_i var(W_i) = q_i``), as ``W I ~ K I^2`` plus a noise of variance ``~ var(W) I^2``
for an image, so the z is the zero-shift NCC of the pooled plane, N(0, 1) under the null.

Which cameras: those of the frame's own size are screened (at their PCE clip); those of a larger sensor are
confirmed unscreened (the hybrid scale/offset search is not screened); the rest are not comparable. A stabilised
video's screen is at zero shift only: frames moved by the stabiliser are not aligned before the screen, so a
stabilised video is missed there; with ``--shift-range`` (any non-zero range, as for images) the cameras of the
frame's size are confirmed unscreened, each frame aligned (+-``VIDEO_ALIGN_RANGE`` px) as ``identify`` does.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from camid_gpu._shared.jsonio import json_number
from camid_gpu.config import Params
from camid_gpu.engine.context import RunContext
from camid_gpu.engine.video import current_options
from camid_gpu.errors import LibraryError
from camid_gpu.io.geometry import center_clip
from camid_gpu.library import screen as scr
from camid_gpu.pipeline.records import CROPS_NONE, pce_record
from camid_gpu.pipeline.video import identify_video, pool_video

#: why a larger sensor's cameras are confirmed unscreened
HYBRID_UNSCREENED = "a video frame smaller than the sensor (its scale/offset search is not screened)"
#: why the cameras of the frame's size are confirmed unscreened with a --shift-range (or --search-scales)
SHIFTED_UNSCREENED = ("--shift-range (or --search-scales): a stabilised video's frames are aligned in the "
                      "confirmation, which a zero-shift screen cannot see")


def video_query(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The screen's query rows of one pooled view (see the module notes): ``[X; sqrt(S)]`` ``(2, n)``, ``S``
    ``(1, n)`` (float32) and ``|X / sqrt(S) - mean|``."""
    x = x.reshape(1, -1).astype(np.float64)
    x = x - x.mean()
    s = np.maximum(s.reshape(1, -1).astype(np.float64), 1e-6)
    white = x / np.sqrt(s)
    white = white - white.mean()
    first = np.concatenate([x, np.sqrt(s)]).astype(np.float32)
    return first, s.astype(np.float32), np.sqrt(np.einsum("ij,ij->i", white, white))


def search_video(screener: Any, cache: Any, version: str, path: str, params: Params, miss: float,
                 ctx: RunContext) -> dict[str, Any]:
    """The record of the video ``path`` (identify's video record with ``library``); raises ImageError (a
    per-file error) for a video that cannot be used."""
    options = current_options()
    pooled = pool_video(ctx.backend, path, params.sigma_query, params.levels, params.wavelet, options,
                        ctx.config.limits, ctx.fingerprint_batch)
    shape = tuple(pooled.numerator.shape)
    geoms = screener.geoms
    screenable = params.search_scales is None and tuple(params.shift_range or (1, 1)) == (0, 0)
    screened = [g for g in geoms if g.shape == shape and screenable]
    unscreened = {r["name"]: SHIFTED_UNSCREENED if g.shape == shape else HYBRID_UNSCREENED for g in geoms
                  if g not in screened and g.shape[0] >= shape[0] and g.shape[1] >= shape[1]
                  and (g.clip is None or g.shape == shape) for r in g.rows}
    compared = sum(len(g.rows) for g in screened) + len(unscreened)
    thr = scr.screen_threshold(compared, params.pce_threshold, miss)
    scores: dict[str, float] = {}
    for g in screened:
        first, squares, norms = video_query(center_clip(pooled.numerator, g.clip, path),
                                            center_clip(pooled.denominator, g.clip, path))
        z = np.nan_to_num(screener.z(g, first, squares, norms), nan=-np.inf)[0]
        scores.update({r["name"]: float(v) for r, v in zip(g.rows, z)})
    shortlist = sorted(((z, cam) for cam, z in scores.items() if z >= thr.z), key=lambda t: (-t[0], t[1]))
    refused = {r["name"]: screener.refused[r["name"]] for g in screened for r in g.rows
               if r["name"] in screener.refused}
    record = _confirm(ctx, path, [cam for _, cam in shortlist] + sorted(unscreened), cache,
                      replace(params, pce_threshold=thr.decision_pce), options, refused)
    n = thr.cameras if compared else 0
    for s in record["pce"]["scores"].values():
        s["log10_p_fa_library"] = json_number(scr.library_log10_pfa(s["log10_p_fa"], n))
    top = sorted(((z, cam) for cam, z in scores.items() if np.isfinite(z)), key=lambda t: (-t[0], t[1]))
    record["library"] = {
        "version": version, "cameras": sum(len(g.rows) for g in geoms), "compared": n,
        "screened": n - len(unscreened), "unscreened": dict(sorted(unscreened.items())),
        "not_comparable": sum(len(g.rows) for g in geoms) - compared, "crops": record["pce"]["searched"]["crops"],
        "crop_skipped": 0, "threshold": thr.to_dict(),
        "shortlist": [{"camera": cam, "z": json_number(z), "rotation": 0} for z, cam in shortlist],
        "screen_top": [{"camera": cam, "z": json_number(z)} for z, cam in top[:5]],
        "refused": dict(sorted(refused.items())),
        "video_screen": {"frames_pooled": len(pooled.frames), "row": "X = sum w W I against sqrt(S) K",
                         "shift": "zero (stabilised frames are aligned only in the confirmation)"}}
    return record


def _confirm(ctx: RunContext, path: str, names: Sequence[str], cache: Any, params: Params, options: Any,
             refused: dict[str, str]) -> dict[str, Any]:
    """identify's video record against the cameras ``names`` (one scoring per PCE clip of the library, their
    scores joined under the decision rule); a camera whose fingerprint fails its checks goes to ``refused``."""
    by_clip: dict[Any, list] = {}
    for name in sorted(names):
        try:
            fp = cache.get(name)
        except LibraryError as exc:
            refused[name] = str(exc)
            continue
        by_clip.setdefault(fp.clip_of("pce"), []).append(fp)
    parts = [identify_video(ctx.backend, store, path, replace(params, pce_clip=clip), options, ctx.config.limits,
                            ctx.fingerprint_batch) for clip, store in (sorted(by_clip.items(), key=str) or [(None, [])])]
    record = parts[0]
    if len(parts) > 1:
        scores = {cam: s for p in parts for cam, s in p["pce"]["scores"].items()}
        searched = {key: [c for p in parts for c in p["pce"]["searched"][key]]
                    for key in ("full_frame", "crop", "crop_skipped")}
        searched["crops"] = next((p["pce"]["searched"]["crops"] for p in parts
                                  if p["pce"]["searched"]["crops"] != CROPS_NONE), CROPS_NONE)
        record["pce"] = dict(pce_record(dict(sorted(scores.items())), {}, params.pce_threshold, path, searched),
                             method="pce-video")
    return record


__all__ = ["search_video", "video_query"]

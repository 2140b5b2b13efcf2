"""Diagnostics for the casework report, recomputed from the evidence on NumPy: the PCE correlation surface
around the peak of a decision, and the quality of a fingerprint (its references' saturation share and each
reference's PCE against the fingerprint of the others, leave one out).

Both recompute what the run computed, with the run's parameters (``manifest["params"]``): the surface's PCE is
given beside the recorded one, so a reader sees that the figure is of the same comparison. Files are opened
read-only. Only full-frame and clipped comparisons are redrawn (a crop/scale search's plane is of another size).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import get_backend
from camid_gpu.config import Params
from camid_gpu.io.decode import read_image
from camid_gpu.io.geometry import center_clip
from camid_gpu.prnu.fingerprint import FingerprintAccumulator
from camid_gpu.prnu.pce import crosscorr, pce, pce_scores
from camid_gpu.prnu.residual import gray_intensity, pixels_to_device, residual_native, wiener_dft

#: half side of the correlation surface shown around the peak (an 11 x 11 window: Binghamton's PCE
#: neighbourhood, the samples left out of the energy)
SURFACE_RADIUS = 5


def _query(bk: Any, pixels: np.ndarray, params: Params) -> tuple[Any, Any]:
    """(Wiener-filtered residual, gray intensity) of one image as the identification computes them."""
    x = pixels_to_device(bk, np.ascontiguousarray(pixels)[None])
    return wiener_dft(bk, residual_native(bk, x, params.sigma_query, params.levels, params.wavelet)), gray_intensity(bk, x)


def pce_surface(path: str, rotation: int, k: np.ndarray, params: Params) -> dict[str, Any]:
    """The correlation plane of an image (turned by ``rotation`` degrees, as its record says) against
    fingerprint ``k``, in units of the plane's energy (``C / sqrt(energy)``: the peak's square is the PCE),
    in a (2r+1)^2 window centred circularly on the peak; with the PCE and the peak shift recomputed."""
    bk = get_backend("numpy", dtype="float64")
    pixels, _ = read_image(path)
    turned = np.rot90(pixels, rotation // 90) if rotation % 360 else pixels
    res, inten = _query(bk, center_clip(turned, params.pce_clip, path), params)
    corr = crosscorr(bk, res, inten * bk.asarray(k.astype(np.float64))[None])[0]
    stats = pce(bk, corr[None], params.shift_range)
    py, px = (int(v) for v in stats["peak_shift"][0])
    h, w = corr.shape
    r = SURFACE_RADIUS
    window = np.asarray(corr)[np.ix_([(py + d) % h for d in range(-r, r + 1)], [(px + d) % w for d in range(-r, r + 1)])]
    return {"surface": (window / np.sqrt(stats["energy"][0])).tolist(), "peak_shift": [py, px],
            "pce": float(stats["pce"][0]), "radius": r}


def fingerprint_quality(references: Sequence[str], params: Params) -> list[dict[str, Any]]:
    """Per reference (the fingerprint's, in order): its saturation share (samples at the top code) and its PCE
    against the fingerprint of the other references (leave one out; the ML sums of disjoint sets add)."""
    bk = get_backend("numpy", dtype="float64")
    parts, shares, queries = [], [], []
    for path in references:
        pixels, info = read_image(path)
        clip = center_clip(pixels, params.pce_clip, path)
        top = (1 << info.bit_depth) - 1 if info.bit_depth in (8, 16) else np.iinfo(clip.dtype).max
        shares.append(float(np.count_nonzero(clip >= top)) / clip.size)
        acc = FingerprintAccumulator(params.sigma_fingerprint, params.levels, params.wavelet, bk)
        acc.add(clip[None])
        parts.append(acc)
        queries.append(_query(bk, clip, params))
    out = []
    for i, path in enumerate(references):
        others = FingerprintAccumulator(params.sigma_fingerprint, params.levels, params.wavelet, bk)
        for j, part in enumerate(parts):
            if j != i:
                others.merge(part)
        value = None
        if others.count:
            res, inten = queries[i]
            value = float(pce_scores(bk, res, inten, [others.fingerprint()], params.shift_range).pce[0, 0])
        out.append({"path": path, "saturated_share": shares[i], "pce_leave_one_out": value})
    return out

"""Diagnostics for the casework report, recomputed from the evidence on NumPy: the PCE correlation surface
around the peak of a decision, and the quality of a fingerprint (its references' saturation share and each
reference's PCE against the fingerprint of the others, leave one out).

Both recompute what the run computed, with the run's parameters (``manifest["params"]``) at the runs' precision:
the surface's PCE is given beside the recorded one, so a reader sees that the figure is of the same comparison.
Files are opened read-only, one at a time (the working set is one image's, whatever the number of images or
references). Only full-frame and clipped comparisons are redrawn (a crop/scale search's plane is of another size).
The fingerprint quality is computed on a centre clipping (:func:`quality_clip`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu.backend import Backend, get_backend
from camid_gpu.config import PRECISION, QUALITY_CLIP, Params
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


def _backend(bk: Backend | None) -> Backend:
    # the runs' precision (config.PRECISION): a recomputed PCE is then the recorded one's twin, at half the
    # memory of float64 (a 10 MP residual: ~0.6 GB in float32)
    return bk if bk is not None else get_backend("numpy", dtype=PRECISION)


def pce_surface(path: str, rotation: int, k: np.ndarray, params: Params, bk: Backend | None = None) -> dict[str, Any]:
    """The correlation plane of an image (turned by ``rotation`` degrees, as its record says) against
    fingerprint ``k``, in units of the plane's energy (``C / sqrt(energy)``: the peak's square is the PCE),
    in a (2r+1)^2 window centred circularly on the peak; with the PCE and the peak shift recomputed.
    One image at a time: the working set is one residual of the compared frame."""
    bk = _backend(bk)
    pixels, _ = read_image(path)
    turned = np.rot90(pixels, rotation // 90) if rotation % 360 else pixels
    res, inten = _query(bk, center_clip(turned, params.pce_clip, path), params)
    del pixels, turned
    corr = crosscorr(bk, res, inten * bk.asarray(k)[None])[0]
    del res, inten
    stats = pce(bk, corr[None], params.shift_range)
    py, px = (int(v) for v in stats["peak_shift"][0])
    h, w = corr.shape
    r = SURFACE_RADIUS
    window = np.asarray(corr)[np.ix_([(py + d) % h for d in range(-r, r + 1)], [(px + d) % w for d in range(-r, r + 1)])]
    return {"surface": (window.astype(np.float64) / np.sqrt(stats["energy"][0])).tolist(), "peak_shift": [py, px],
            "pce": float(stats["pce"][0]), "radius": r}


def quality_clip(shape: tuple[int, int], params: Params) -> tuple[int, int]:
    """The centre clipping the fingerprint quality is computed on, for references of ``shape``: the run's PCE
    clip, else :data:`~camid_gpu.config.QUALITY_CLIP`, whichever is smaller, within the frame."""
    wanted = params.pce_clip or QUALITY_CLIP
    return (min(shape[0], wanted[0], QUALITY_CLIP[0]), min(shape[1], wanted[1], QUALITY_CLIP[1]))


def _reference(path: str, params: Params) -> tuple[np.ndarray, float, tuple[int, int]]:
    """(centre clip of the reference, its share of samples at the top code, the clip's size)."""
    pixels, info = read_image(path)
    clip = center_clip(pixels, quality_clip(pixels.shape[:2], params), path)
    top = (1 << info.bit_depth) - 1 if info.bit_depth in (8, 16) else np.iinfo(clip.dtype).max
    return np.ascontiguousarray(clip), float(np.count_nonzero(clip >= top)) / clip.size, clip.shape[:2]


def fingerprint_quality(references: Sequence[str], params: Params, bk: Backend | None = None,
                        on_file: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Per reference (the fingerprint's, in order): its saturation share (samples at the top code) and its PCE
    against the fingerprint of the other references (leave one out; the ML sums of disjoint sets add), on the
    centre clipping :func:`quality_clip`.

    Two passes over the files, one reference at a time: the sums of all of them, then per reference its own sums
    taken out of them and its residual scored against the rest. The working set is one clip's, whatever the number
    of references. ``on_file``: called after each file read (twice per reference)."""
    bk = _backend(bk)
    total = FingerprintAccumulator(params.sigma_fingerprint, params.levels, params.wavelet, bk)
    shares, sizes = [], []
    for path in references:
        clip, share, size = _reference(path, params)
        if sizes and size != sizes[0]:
            raise ValueError(f"{path}: reference of {size[0]}x{size[1]} after clipping, the others "
                             f"{sizes[0][0]}x{sizes[0][1]}: not one sensor size")
        total.add(clip[None])
        shares.append(share)
        sizes.append(size)
        if on_file:
            on_file()
    out = []
    for i, path in enumerate(references):
        clip, _, _ = _reference(path, params)
        part = FingerprintAccumulator(params.sigma_fingerprint, params.levels, params.wavelet, bk)
        part.add(clip[None])
        others = total.without(part)
        del part
        value = None
        if others.count:
            res, inten = _query(bk, clip, params)
            value = float(pce_scores(bk, res, inten, [others.fingerprint()], params.shift_range).pce[0, 0])
        out.append({"path": path, "saturated_share": shares[i], "pce_leave_one_out": value,
                    "clip": [int(v) for v in sizes[i]]})
        if on_file:
            on_file()
    return out

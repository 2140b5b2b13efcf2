"""Identification of resized and/or cropped images: Goljan & Fridrich's scale and crop search.

A disputed image ``J`` (``h x w``) may be a crop, taken at offset ``(dy, dx)``, of the camera's full
frame ``I`` (``H x W``) downscaled by a factor ``s``: ``J = crop(resize(I, s), dy, dx)`` (Goljan &
Fridrich, "Camera identification from cropped and scaled images", Proc. SPIE 6819, 2008). For every
scale ``s`` of a grid, the full-frame fingerprint ``K`` is resampled to ``round(s H) x round(s W)``
(``K_s``) and the disputed image's residual is cross-correlated with it over every crop offset at
which ``J`` fits inside ``K_s``::

    C_s[d] = sum_x W[x] J[x] K_s[x + d],   0 <= d <= (round(s H) - h, round(s W) - w)

which is :func:`camid_gpu.prnu.pce.crosscorr`'s ``sum_x W[x] (J K)[x + d]`` with ``J`` placed at offset
``d`` inside ``K_s``. ``W`` is the disputed image's residual after WienerInDFT (denoiser sigma 2, as
``Params.sigma_query`` of :mod:`camid_gpu.pipeline.identify`), ``J`` its gray intensity on the 0..255 scale.
``W J`` (made zero-mean) is zero-padded to ``K_s``'s size, so the admissible offsets never wrap
around, and each scale costs one FFT correlation of ``K_s``-sized planes per camera (the padded
image's spectrum is computed once per scale and shared by the cameras). The peak is searched over
the admissible offsets and its PCE is computed as in :func:`camid_gpu.prnu.pce.pce` (energy over the
whole correlation plane outside the 11 x 11 neighbourhood of the peak), except where ``K`` is not
resampled (see "JPEG grids" below). The reported scale is the one with the largest PCE, the offset
is that scale's peak (pixels of the resized frame). The false-alarm probability is corrected for
the size of the whole search: with ``n`` the number of (scale, offset) positions,
``P_FA = 1 - (1 - p)^n`` where ``p`` is the one-position p-value of the best peak
(:func:`camid_gpu.prnu.pce.log10_false_alarm`).

The template: resampler and low-pass
------------------------------------
``K_s = G_sigma * bilinear(K, s)`` with ``sigma = TEMPLATE_BLUR`` = 1 pixel of the resized frame:

* ``bilinear`` (:func:`resample_fingerprint`, on the host, float32): Pillow's BILINEAR resize of a
  float32 ("F") image. It is anti-aliased (when shrinking, its triangle kernel is stretched by
  ``1/s``, like MATLAB's ``imresize``) and uses the pixel-area geometry of every mainstream resizer
  (pixel centres ``x_src = (x_dst + 0.5) / s - 0.5``), so ``K_s`` lines up with the PRNU of an image
  downscaled to the same size by Pillow (any filter), MATLAB or OpenCV. An aligned-corners
  resampler (``scipy.ndimage.zoom`` with ``grid_mode=False``) would shift ``K_s`` by a fraction of
  a pixel against the image. On the synthetic cameras, BILINEAR gave higher PCEs than Pillow's
  BICUBIC, LANCZOS and BOX and than ``ndimage.zoom`` orders 1 and 3, for images downscaled with
  BICUBIC, BILINEAR, LANCZOS, BOX or NEAREST: its smoother kernel passes less of the band where the
  disputed image has lost its PRNU.
* ``G_sigma``: a Gaussian low-pass, applied in the frequency domain (circularly) to the padded
  image's spectrum, which is the same as low-passing ``K_s`` and costs nothing per camera.
  Interpolation destroys most of the PRNU near Nyquist (a pixel half-way between two source pixels
  is their average) and JPEG compression then removes what is left there (the weak PRNU falls into
  the quantiser's dead zone; q75 steps are far larger than the PRNU), so the Wiener-whitened
  residual carries PRNU at low and middle frequencies and only noise near Nyquist. Measured on the
  synthetic cameras at JPEG quality 75, sigma 1 raised the PCE 1.5-2.5x at scales 0.5-0.99 and
  1.3-1.8x for crops at scale 1 (with the per-class energy below); at quality 95 it changes the
  PCE by -30 % .. +50 % depending on the scale (sigma 0.7 is best there), always far above 60.
  ``template_blur=0`` gives the plain resampled fingerprint.

JPEG grids
----------
Where ``K`` is not resampled (scale 1: a pure crop), the fingerprint, made from JPEG reference
images, and a JPEG disputed image share an 8 x 8 block grid, and at shifts that line the two grids
up (``d = 0 mod 8``) their blocking artefacts add to the correlation's variance (2.5-3x that of
the other shifts on flat images, measured), so a single energy makes unrelated cameras reach
PCE > 60 there (observed: 63 at offset (48, 288)). At such scales :func:`pce_by_alignment`
estimates the energy separately for every alignment class ``d mod 8`` (which also covers the
2 x 2 CFA period). At resampled scales the classes have the same energy within sampling noise
(measured), and :func:`camid_gpu.prnu.pce.pce` is used.

Limits (measured, see ``tests/prnu/test_search.py``): downscaling by ``s`` leaves ``s^2`` of the pixels,
and interpolation plus JPEG remove much of the remaining PRNU, so the PCE falls quickly with the
scale. Cropping a JPEG fingerprint's frame at an offset that is not a multiple of 8 also costs
PCE (the disputed image's blocks no longer line up with the references'). On the synthetic
cameras (PRNU 0.8 %, 768 x 1024, JPEG quality 75 after the change) flat images stay identifiable
down to 0.5 (PCE 62-218 there, 1100-1400 unchanged; downscaled to 0.5 and cropped 80 % x 80 %, 16 % of
the pixels, the weakest of four reaches 50, the others 82-111: the limit, README "Scale search"), natural ones (PCE 84-219 unchanged) only
when downscaled to 0.9 (3 of 4) or cropped to 80 % x 80 % (2 of 4); at 0.8 and below their PCE is
20-46, where unrelated cameras reach 15-31 over the search. Processing time: one FFT correlation
of ``K_s``-sized planes per scale and camera (12 MP fingerprint, 2 CPU cores: ~1.6 s per scale with
NumPy, ~0.9 s with torch; the host-side resampling of ``K`` takes ~0.17 s of that). The scale
grid must be fine enough: a scale error ``ds`` misaligns ``K_s`` by about ``(max(h, w) / 2) ds / s``
pixels at the image's borders, so large images need steps well under 0.01 (or ``refine_step``).
Rotated (portrait) images are not turned here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import Array, Backend, get_backend
from camid_gpu._shared.jsonio import json_number
from camid_gpu.config import (DEFAULT_LEVELS, DEFAULT_WAVELET, PCE_CAMERA_CHUNK, PCE_THRESHOLD, SIGMA_QUERY,
                              is_finite_number)
from camid_gpu.prnu.alignment import GRID_PERIOD, pce_by_alignment
from camid_gpu.prnu.decision import decide
from camid_gpu.prnu.pce import log10_false_alarm, pce
from camid_gpu.prnu.residual import (
    gray_intensity,
    pixels_to_device,
    residual_native,
    validate_images,
    wiener_dft,
)
from camid_gpu.prnu.scales import check_scales, crop_positions, refinement_scales, scale_grid, scaled_size

#: Gaussian low-pass of the template, in pixels of the resized frame (see the module notes)
TEMPLATE_BLUR = 1.0
#: smallest side of a disputed image or fingerprint
MIN_SIDE = 16


@dataclass
class SearchResult:
    """Best (scale, offset) of one camera's fingerprint for one disputed image.

    ``offset`` is ``(rows, columns)`` of the image's top-left corner in the frame resized by ``scale``
    (of ``size = (round(scale H), round(scale W))``). ``log10_p_fa`` is corrected for
    ``positions_planned`` (scales x offsets of the whole search; equal to ``positions_searched``
    unless the search stopped early). ``per_scale``: one dict per scale evaluated, ascending:
    ``scale``, ``size``, ``pce``, ``offset``, ``positions``.
    """

    camera: str
    pce: float
    scale: float
    offset: tuple[int, int]
    log10_p_fa: float
    positions_searched: int
    per_scale: list[dict[str, Any]] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)
    positions_planned: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        d = asdict(self)
        d["offset"], d["size"] = list(self.offset), list(self.size)
        return d


def resample_fingerprint(k: np.ndarray, scale: float) -> np.ndarray:
    """The fingerprint ``K`` (H, W) resampled to :func:`scaled_size`: float32, host side.

    Pillow BILINEAR on a float32 image (anti-aliased, pixel-area geometry; see the module notes);
    a copy of ``K`` when the size does not change. The search's Gaussian low-pass
    (``template_blur``) is applied later, in the frequency domain.
    """
    k = np.asarray(k, dtype=np.float32)
    size = scaled_size(k.shape, scale)
    if size == k.shape:
        return k.copy()
    from PIL import Image

    resized = Image.fromarray(np.ascontiguousarray(k)).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def gaussian_transfer(shape: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """DFT-domain response ``exp(-2 pi^2 sigma^2 f^2)`` of a Gaussian low-pass (``f`` in cycles per pixel).

    Separable: returns the row factor (H, 1) and the column factor (1, W). Applied to a spectrum it is
    a circular Gaussian filter of ``sigma`` pixels (up to the sampled kernel's aliases, < 1 % at 1 px).
    """
    gy = np.exp(-2.0 * (math.pi * sigma) ** 2 * np.fft.fftfreq(shape[0]) ** 2)
    gx = np.exp(-2.0 * (math.pi * sigma) ** 2 * np.fft.fftfreq(shape[1]) ** 2)
    return gy[:, None], gx[None, :]


# ------------------------------------------------------------------------------------------------
# input validation
# ------------------------------------------------------------------------------------------------
def _check_fingerprints(fingerprints: Any) -> list[tuple[str, np.ndarray]]:
    if isinstance(fingerprints, (np.ndarray, str)) or not isinstance(fingerprints, Sequence) or not fingerprints:
        raise ValueError("fingerprints must be a non-empty sequence of (camera name, K) pairs")
    out, seen = [], set()
    for i, item in enumerate(fingerprints):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"fingerprints[{i}] must be a (camera name, K) pair, got {type(item).__name__}")
        name, k = item
        if not isinstance(name, str) or not name:
            raise ValueError(f"fingerprints[{i}]: the camera name must be a non-empty string, got {name!r}")
        if name in seen:
            raise ValueError(f"fingerprints: camera name {name!r} appears twice")
        seen.add(name)
        k = np.asarray(k)
        if k.ndim != 2 or min(k.shape) < MIN_SIDE:
            raise ValueError(f"fingerprint {name!r}: expected a 2-D (H, W) array with sides >= {MIN_SIDE}, "
                             f"got shape {k.shape}")
        if k.dtype.kind != "f":
            raise ValueError(f"fingerprint {name!r}: expected a floating-point K, got dtype {k.dtype}")
        if not np.all(np.isfinite(k)):
            raise ValueError(f"fingerprint {name!r}: contains NaN or infinite values")
        out.append((name, k.astype(np.float32, copy=False)))
    return out


def _check_image(image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"image: expected one image (h, w) or (h, w, 3), got shape {image.shape}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image: sides must be at least {MIN_SIDE} pixels, got shape {image.shape}")
    validate_images(image[None], "image")  # dtype (uint8, uint16 or float 0..255) and finiteness
    return image


def _check_options(sigma: Any, threshold: Any, early_stop: Any, refine_step: Any, template_blur: Any,
                   grid_period: Any, camera_chunk: Any) -> None:
    """ValueError naming the first invalid option of :func:`search_scale_crop`."""
    if not (is_finite_number(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if not is_finite_number(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    if not isinstance(early_stop, bool):
        raise ValueError(f"early_stop must be True or False, got {early_stop!r}")
    if refine_step is not None and not (is_finite_number(refine_step) and 0 < refine_step < 1):
        raise ValueError(f"refine_step must be a number in (0, 1) or None, got {refine_step!r}")
    if not (is_finite_number(template_blur) and 0 <= template_blur <= 10):
        raise ValueError(f"template_blur must be a number in [0, 10] (pixels), got {template_blur!r}")
    if not (isinstance(grid_period, (int, np.integer)) and not isinstance(grid_period, bool) and grid_period >= 0):
        raise ValueError(f"grid_period must be an integer >= 0, got {grid_period!r}")
    if not (isinstance(camera_chunk, (int, np.integer)) and not isinstance(camera_chunk, bool) and camera_chunk >= 1):
        raise ValueError(f"camera_chunk must be a positive integer, got {camera_chunk!r}")


def _check_fits(image_shape: tuple[int, int], cams: list[tuple[str, np.ndarray]], grid: np.ndarray) -> None:
    """ValueError when the image is larger than some camera's resampled fingerprint at every scale of ``grid``."""
    h, w = image_shape
    for name, k in cams:
        if not any(crop_positions(scaled_size(k.shape, float(s)), (h, w)) for s in grid):
            top = scaled_size(k.shape, float(grid[0]))
            raise ValueError(f"image {h}x{w} is larger than fingerprint {name!r} ({k.shape[0]}x{k.shape[1]}) "
                             f"resampled at every scale searched (at the largest, {float(grid[0]):g}: "
                             f"{top[0]}x{top[1]}); is it rotated, upscaled, or from a larger sensor?")


# ------------------------------------------------------------------------------------------------
# the search's steps
# ------------------------------------------------------------------------------------------------
def _weighted_residual(bk: Backend, image: np.ndarray, sigma: float, levels: int, wavelet: str) -> Array:
    """The disputed side, once: Wiener-filtered residual times intensity, zero-mean over the image."""
    pixels = pixels_to_device(bk, validate_images(image[None], "image"))
    residual = wiener_dft(bk, residual_native(bk, pixels, sigma, levels, wavelet))[0]
    weighted = residual * gray_intensity(bk, pixels)[0]
    return weighted - bk.mean(weighted, (-2, -1))


@dataclass
class _ScaleEvaluator:
    """Evaluates one scale for some cameras of one fingerprint size against the disputed side ``weighted``."""

    bk: Backend
    weighted: Array
    image_shape: tuple[int, int]
    template_blur: float
    grid_period: int
    camera_chunk: int

    def __call__(self, scale: float, members: list[tuple[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
        """One padded-image FFT, one per camera: a record per camera, {} where the image does not fit."""
        bk, (h, w) = self.bk, self.image_shape
        full = members[0][1].shape
        size = scaled_size(full, scale)
        positions = crop_positions(size, (h, w))
        if not positions:
            return {}
        padded = bk.asarray(np.zeros(size, dtype=np.float32))
        padded[:h, :w] = self.weighted
        spectrum = bk.fft2(padded).conj()
        del padded
        if self.template_blur > 0:  # G * K_s, applied (symmetrically) to the image side once for all cameras
            gy, gx = gaussian_transfer(size, float(self.template_blur))
            spectrum = spectrum * bk.asarray(gy) * bk.asarray(gx)
        shift_range = (size[0] - h, size[1] - w)
        found = {}
        for start in range(0, len(members), self.camera_chunk):
            chunk = members[start:start + self.camera_chunk]
            ks = bk.asarray(np.stack([resample_fingerprint(k, scale) for _, k in chunk]))
            ks = ks - bk.mean(ks, (-2, -1))
            corr = bk.real(bk.ifft2(spectrum[None] * bk.fft2(ks)))
            del ks
            if self.grid_period and size == full:
                stats = pce_by_alignment(bk, corr, shift_range, int(self.grid_period))
            else:
                stats = pce(bk, corr, shift_range)
            del corr
            for j, (name, _) in enumerate(chunk):
                found[name] = {"scale": float(scale), "size": [size[0], size[1]], "pce": float(stats["pce"][j]),
                               "offset": [int(v) for v in stats["peak_shift"][j]], "positions": positions,
                               "peak": float(stats["peak"][j]), "energy": float(stats["energy"][j])}
        return found


def _search_grid(evaluate: _ScaleEvaluator, members: list[tuple[str, np.ndarray]], grid: np.ndarray,
                 records: dict[str, list[dict[str, Any]]], stopped: dict[str, bool], threshold: float,
                 early_stop: bool) -> None:
    """The grid (descending) for ``members``, each scale's records appended; with ``early_stop`` a camera
    leaves the search past its first local maximum above ``threshold`` (marked in ``stopped``)."""
    active = list(members)
    for scale in grid:
        if not active:
            break
        found = evaluate(float(scale), active)
        still = []
        for name, k in active:
            rec = found.get(name)
            if rec is not None:
                best_before = max((r["pce"] for r in records[name]), default=-math.inf)
                previous = records[name][-1]["pce"] if records[name] else -math.inf
                records[name].append(rec)
                if early_stop and best_before > threshold and rec["pce"] < previous:
                    stopped[name] = True  # past the first local maximum above the threshold
                    continue
            still.append((name, k))
        active = still


def _refine(evaluate: _ScaleEvaluator, members: list[tuple[str, np.ndarray]], grid: np.ndarray, step: float,
            records: dict[str, list[dict[str, Any]]]) -> None:
    """Coarse-to-fine: the scales around each camera's best one not evaluated yet, their records appended."""
    wanted: dict[float, list[tuple[str, np.ndarray]]] = {}
    for name, k in members:
        done = {r["scale"] for r in records[name]}
        best = max(records[name], key=lambda r: r["pce"])["scale"]
        for s in refinement_scales(grid, best, step):
            if s not in done:
                wanted.setdefault(s, []).append((name, k))
    for s in sorted(wanted, reverse=True):
        found = evaluate(s, wanted[s])
        for name, _ in wanted[s]:
            if name in found:
                records[name].append(found[name])


def _camera_result(name: str, full: tuple[int, ...], records: list[dict[str, Any]], stopped: bool,
                   grid: np.ndarray, image_shape: tuple[int, int]) -> SearchResult:
    """One camera's best scale and offset, its P_FA corrected for the planned grid's positions."""
    recs = sorted(records, key=lambda r: r["scale"])
    best = max(recs, key=lambda r: r["pce"])
    searched = sum(r["positions"] for r in recs)
    planned = searched
    if stopped:
        done = {r["scale"] for r in recs}
        planned += sum(crop_positions(scaled_size(full, float(s)), image_shape) for s in grid if float(s) not in done)
    log_pfa = float(log10_false_alarm(np.asarray(best["peak"]), np.asarray(best["energy"]), planned))
    return SearchResult(
        camera=name, pce=best["pce"], scale=best["scale"], offset=(best["offset"][0], best["offset"][1]),
        log10_p_fa=log_pfa, positions_searched=searched,
        per_scale=[{key: r[key] for key in ("scale", "size", "pce", "offset", "positions")} for r in recs],
        size=(best["size"][0], best["size"][1]), positions_planned=planned, stopped_early=stopped)


# ------------------------------------------------------------------------------------------------
# the search
# ------------------------------------------------------------------------------------------------
def search_scale_crop(bk: Backend | str, image: np.ndarray, fingerprints: Sequence[tuple[str, np.ndarray]], *,
                      scales: Sequence[float] | np.ndarray | None = None, sigma: float = SIGMA_QUERY,
                      threshold: float = PCE_THRESHOLD, early_stop: bool = False,
                      refine_step: float | None = None, template_blur: float = TEMPLATE_BLUR,
                      grid_period: int = GRID_PERIOD, levels: int = DEFAULT_LEVELS,
                      wavelet: str = DEFAULT_WAVELET, camera_chunk: int = PCE_CAMERA_CHUNK) -> list[SearchResult]:
    """Search the scale and crop offset of a disputed image against full-frame fingerprints.

    Parameters
    ----------
    bk : a :class:`~camid_gpu.backend.Backend` or its name ("numpy", "torch", "auto").
    image : the disputed image, (h, w) or (h, w, 3), uint8 or uint16 (or float on the 0..255 scale),
        in the sensor's orientation.
    fingerprints : ``(camera name, K)`` pairs; ``K`` (H, W) float, a full-frame fingerprint.
    scales : the scale grid, each in (0, 1] (default :func:`scale_grid` ``(0.5, 1.0, 0.01)``),
        evaluated from the largest down. Scales at which the image is larger than ``K_s`` are skipped.
    sigma : noise std of the disputed image's denoiser (0..255 scale; identify's ``sigma_query``).
    threshold : PCE threshold of ``early_stop`` (the decision is :func:`search_record`'s).
    early_stop : stop a camera's search once its PCE has exceeded ``threshold`` and then fallen
        (the first local maximum above the threshold, following the grid down from the largest
        scale; Goljan & Fridrich stop at the first scale that passes the bound, but going on while
        the PCE grows keeps a neighbour of the true scale from being reported). Default False:
        every scale is evaluated, and the results are deterministic and complete. ``log10_p_fa``
        always counts the positions of the whole planned grid.
    refine_step : when given, after the grid each camera's best scale ``b`` is refined with the
        scales ``b +- refine_step, b +- 2 refine_step, ...`` strictly between its grid neighbours
        (coarse-to-fine); those positions count in ``positions_searched`` and ``log10_p_fa`` too.
    template_blur : sigma (pixels of the resized frame) of the template's Gaussian low-pass; 0 = none.
    grid_period : alignment period of :func:`pce_by_alignment` at unresampled scales; 0 = plain PCE.
    levels, wavelet : the denoiser's DWT depth and wavelet (identify's defaults).
    camera_chunk : fingerprints correlated per FFT batch (device memory about ``3 chunk + 2`` complex
        planes of one scale; one scale is in memory at a time).

    Returns one :class:`SearchResult` per camera, in the order of ``fingerprints``. Raises
    ValueError (naming the parameter or shape) for invalid input, and when the image is larger than
    some camera's resampled fingerprint at every scale of the grid.
    """
    bk = get_backend(bk)
    image = _check_image(image)
    cams = _check_fingerprints(fingerprints)
    grid = check_scales(scale_grid() if scales is None else scales)
    _check_options(sigma, threshold, early_stop, refine_step, template_blur, grid_period, camera_chunk)
    h, w = image.shape[:2]
    _check_fits((h, w), cams, grid)
    evaluate = _ScaleEvaluator(bk, _weighted_residual(bk, image, sigma, levels, wavelet), (h, w),
                               template_blur, grid_period, camera_chunk)
    return search_cameras(evaluate, cams, grid, (h, w), threshold, early_stop, refine_step)


def search_cameras(evaluate: "_ScaleEvaluator", cams: Sequence[tuple[str, np.ndarray]], grid: np.ndarray,
                   shape: tuple[int, int], threshold: float, early_stop: bool,
                   refine_step: float | None = None) -> list[SearchResult]:
    """One ``SearchResult`` per camera of ``cams`` (checked ``(name, K)``): the scale grid searched for the
    disputed residual that ``evaluate`` holds (of size ``shape``), cameras of one sensor size together. Shared by
    the still-image search and the video's hybrid search (:mod:`camid_gpu.prnu.video`)."""
    records: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in cams}
    stopped = {name: False for name, _ in cams}
    groups: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = {}
    for name, k in cams:
        groups.setdefault(k.shape, []).append((name, k))
    for members in groups.values():
        _search_grid(evaluate, members, grid, records, stopped, threshold, early_stop)
        if refine_step is not None:
            _refine(evaluate, members, grid, float(refine_step), records)
    return [_camera_result(name, k.shape, records[name], stopped[name], grid, shape) for name, k in cams]


def search_record(results: Sequence[SearchResult], threshold: float = PCE_THRESHOLD) -> dict[str, Any]:
    """JSON-ready summary of :func:`search_scale_crop`'s results for one disputed image.

    ``scores``: per camera ``pce``, ``scale``, ``offset`` [rows, columns], ``size`` [rows, columns]
    of the resized frame, ``log10_p_fa``, ``positions_searched``; ``best`` (largest PCE) and
    ``best_pce``; ``decision``: the camera with the largest PCE among those above ``threshold``, else
    None; ``above_threshold``: those cameras in decreasing PCE.
    """
    if isinstance(results, SearchResult) or not results:
        raise ValueError("search_record: results must be a non-empty list of SearchResult")
    if not is_finite_number(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    scores = {r.camera: {"pce": json_number(r.pce), "scale": float(r.scale), "offset": [int(v) for v in r.offset],
                         "size": [int(v) for v in r.size], "log10_p_fa": json_number(r.log10_p_fa),
                         "positions_searched": int(r.positions_searched)} for r in results}
    made = decide({r.camera: r.pce for r in results}, threshold)
    return {"method": "pce-scale-crop-search", "threshold": float(threshold), "scores": scores,
            "best": made.best, "best_pce": scores[made.best]["pce"],
            "decision": made.decision, "above_threshold": made.above}


__all__ = ["SearchResult", "scale_grid", "scaled_size", "resample_fingerprint", "gaussian_transfer",
           "pce_by_alignment", "search_scale_crop", "search_record", "TEMPLATE_BLUR", "GRID_PERIOD"]

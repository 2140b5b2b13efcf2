"""Seeded synthetic camera sensors and a dataset writer for PRNU camera identification.

The data for the demo and the tests.  The model is meant to behave like real cameras under the
Binghamton pipeline (wavelet-denoised residuals, ML fingerprint, PCE), **not** to make any
classifier look good: the PRNU is weak and nearly white, it is buried in shot, read and
quantisation noise, it is partly destroyed by demosaicing, gamma, clipping and JPEG, and cameras of
the same model ("twins") share every non-unique artefact while their PRNU is independent.

Units and conventions
---------------------
* Linear signal: fraction of the full well, 0..1 (1.0 = saturation).  Scene radiance ``S`` uses the
  same unit: the value a pixel of unit sensitivity, no vignetting and unit exposure would record.
* DN: digital numbers of the raw ADC with ``adc_bits`` bits (default 12, so 1 DN = 1/4095 of full
  scale).  Fixed-pattern offsets and read noise are given in DN.
* Output images: 8-bit (0..255) for JPEG and PNG, 16-bit (0..65535) for TIFF, RGB, shape
  ``(H, W, 3)``; ``(W, H, 3)`` for the images stored in portrait orientation.
* The sensor grid is ``H x W`` ("landscape" when ``W >= H``); the true PRNU ``K`` is stored on it.
* CFA: Bayer RGGB, i.e. pixel (0, 0) is red, (0, 1) and (1, 0) green, (1, 1) blue.

Per model (shared by twins; drawn from the seed and the model index only)
--------------------------------------------------------------------------
1. Vignetting ``V(y, x) = (1 + a rho^2)^-2`` where ``rho`` is the distance to the optical centre
   divided by the half-diagonal of the sensor and ``a`` is chosen so that the light loss at
   ``rho = 1`` equals the model's strength, drawn uniformly from ``vignetting_range``
   (default 0.20..0.45, i.e. 20..45 % darker corners).  The optical centre is offset from the
   geometric centre by ``N(0, vignetting_centre_jitter)`` times H and W (default 0.02).
2. Additive fixed pattern in DN: column offsets ``N(0, fpn_column_dn)`` (default 1.0 DN), row
   offsets ``N(0, fpn_row_dn)`` (default 0.5 DN) and a periodic tile of i.i.d. Gaussian values with
   standard deviation ``fpn_periodic_dn`` (default 0.5 DN) and a period drawn uniformly from
   ``fpn_period_range`` pixels (default 8..32), tiled over the sensor.  For scale: the PRNU term of a
   flat field at 0.6 of full scale is about 20 DN rms.
3. Colour filter array (RGGB), channel sensitivities ``channel_sensitivity`` (default R 0.60, G 1.00,
   B 0.75) and bilinear demosaicing: these are the same for every model.

Per camera
----------
4. PRNU ``K``: i.i.d. Gaussian, then (if ``prnu_smoothing_sigma`` > 0, default 0.4 px) a slight
   Gaussian low-pass (nearest-neighbour correlation about 0.09, i.e. nearly white), then made exactly
   zero-mean with standard deviation ``prnu_std`` (default 0.008 = 0.8 %).  Independent for every
   camera, twins included.
5. Exposure gain ``exp(N(0, exposure_jitter))`` (default 0.05) and white-balance gains
   ``wb_c = (s_G / s_c) exp(N(0, wb_jitter))`` for c = R, B (default 0.03) and ``wb_G = 1``, where
   ``s_c`` are the channel sensitivities: white balance undoes the CFA sensitivity up to a small,
   camera-specific error.

Per image
---------
6. Scene ``S`` (``H x W x 3`` linear RGB radiance, independent for every image):

   * ``flat``: a nearly uniform bright field like an overcast sky or an out-of-focus white wall: a
     level drawn from ``flat_level_range`` (default 0.50..0.70), a linear gradient of total relative
     change up to ``flat_gradient`` (default 0.10) across the frame in a random direction, a smooth
     low-frequency undulation of relative amplitude ``flat_variation`` (default 0.02, at most ~1.5
     cycles per frame) and a slight neutral-ish tint (``N(0, 0.02)`` per channel, log scale).
   * ``natural``: a "dead leaves" scene.  A background of 1/f texture (amplitude spectrum ~1/f,
     log-normal contrast) in a random muted colour; with probability 1/2 a smooth bright sky above
     a random tilted horizon (0.6..2.5 times the background reflectance scale, brighter towards
     the horizon, so it is often partly saturated); then occluding ellipses, rotated rectangles and
     convex polygons with circumradii following ``p(r) ~ r^-3`` (scale invariant, as in natural
     images) between 3 % and 60 % of the short side, as many as needed to cover each pixel
     ``natural_coverage`` times on average (default 1.5, about 200 shapes), painted from large to
     small.  Each has its own colour (grey level log-uniform in 0.03..0.9, chroma ``N(0, 0.25)``
     per channel, log scale), linear shading and 1/f texture; 8 % are deep shadows or black
     objects (0.005..0.03) and 4 % of the small ones (< 8 % of the short side) are light sources or
     speculars 8..60 (far above full scale once exposed: they saturate).  The reflectance map is
     lit by a random linear illumination gradient (up to +-30 % across the frame) and scaled so
     that the median green radiance is drawn from ``natural_level_range`` (default 0.10..0.30),
     then blurred by the optics (Gaussian ``optical_blur_sigma`` px, default 0.6), which keeps
     edges sharp but not aliased.

7. Image formation on the sensor grid (linear, 0..1 of full well), with ``e`` a per-image exposure
   ``exp(N(0, image_exposure_jitter))`` (default 0.03) times the camera exposure::

       signal = mosaic_RGGB(S) * s_cfa * V * e * (1 + K)
       raw    = signal + N(0, signal / full_well + (read_noise_dn / DN_max)^2)   # shot + read
       raw   += fixed_pattern_dn / DN_max
       raw    = round(clip(raw, 0, 1) * DN_max) / DN_max                           # ADC

   with ``full_well`` default 20 000 e- at 1.0 (shot noise as a Gaussian with variance proportional
   to the signal), ``read_noise_dn`` default 3 DN and ``DN_max = 2^adc_bits - 1``.

8. Development: bilinear demosaicing of the RGGB mosaic (mirror boundary, which keeps the CFA phase),
   white balance, clip to [0, 1], gamma ``x^(1/gamma)`` (default gamma 2.2), quantisation to 8 bits
   (16 bits for TIFF), rounding to nearest.

9. Storage: JPEG via Pillow at ``jpeg_quality`` (default 92) with 4:4:4 chroma (``subsampling=0``,
   no chroma subsampling, so the chroma planes keep full resolution) and standard tables, baseline,
   not optimised; PNG (8-bit, Pillow, default compression); or TIFF (16-bit, tifffile,
   uncompressed).  JPEG and PNG carry EXIF Make (``exif_make``, default "camid-synth"), Model (the
   model name) and Orientation = 1; the TIFF carries the same three tags.  ``portrait`` of each
   camera's disputed natural images (the first ones) are stored rotated by ``np.rot90(img, 1)``
   (90 degrees counter-clockwise, as a portrait shot stored without an EXIF rotation; Orientation
   stays 1); ``np.rot90(stored, -1)`` brings them back to the sensor grid.

Randomness
----------
Every random quantity comes from its own ``np.random.Generator`` seeded by
``np.random.SeedSequence(seed, spawn_key=...)`` with a key naming what it is for (the model index,
the camera index, or camera, image kind and image index), so every file depends only on the seed,
the parameters and its own identity, never on the order of generation, and a camera's data do not
change when more cameras or images are requested.  Same seed and parameters give byte-identical
files (Pillow's JPEG/PNG and tifffile's TIFF writers are deterministic).

Layout written by :func:`make_dataset`::

    OUTDIR/refs/<camera>/ref_000.jpg ...                  flat reference images
    OUTDIR/disputed/<camera>/flat_000.jpg, natural_000.jpg ...
    OUTDIR/truth/<camera>_K.npy                           true PRNU, float32 (H, W)
    OUTDIR/ground_truth.json                              see make_dataset
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import tifffile
from PIL import Image
from scipy import ndimage

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ModelArtefacts",
    "SensorModel",
    "camera_prnu",
    "flat_scene",
    "load_ground_truth",
    "make_dataset",
    "model_artefacts",
    "model_name",
    "natural_scene",
]

FORMAT_NAME = "camid-synth"
FORMAT_VERSION = 1

_FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "tiff": "tiff", "tif": "tiff"}
_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif"}
_KIND_CODES = {"ref": 0, "flat": 1, "natural": 2}

# First element of every SeedSequence spawn key: which kind of quantity the stream is for.
_STREAM_MODEL = 0
_STREAM_PRNU = 1
_STREAM_CAMERA = 2
_STREAM_IMAGE = 3

_EXIF_MAKE, _EXIF_MODEL, _EXIF_ORIENTATION = 0x010F, 0x0110, 0x0112
_MIN_SIDE = 16
_MAX_SIDE = 65500  # JPEG's limit


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SensorModel:
    """Physical parameters of the synthetic cameras; see the module docstring for the model.

    Linear quantities are fractions of the full well (0..1); "dn" quantities are raw ADC digital
    numbers (``2**adc_bits - 1`` at full scale); lengths are in pixels.
    """

    prnu_std: float = 0.008
    """Standard deviation of the PRNU factor K (dimensionless; 0.008 = 0.8 %)."""
    prnu_smoothing_sigma: float = 0.4
    """Gaussian low-pass applied to the white PRNU before normalisation, px (0 = white)."""
    full_well: float = 20000.0
    """Electrons at full scale (1.0); shot-noise variance is ``signal / full_well``."""
    read_noise_dn: float = 3.0
    """Read-noise standard deviation, DN."""
    adc_bits: int = 12
    """Raw ADC bit depth."""
    channel_sensitivity: tuple[float, float, float] = (0.60, 1.00, 0.75)
    """Relative sensitivity of the R, G, B photosites (white balance compensates it)."""
    vignetting_range: tuple[float, float] = (0.20, 0.45)
    """Per-model light loss at the corner (rho = 1), drawn uniformly from this range."""
    vignetting_centre_jitter: float = 0.02
    """Std of the per-model optical-centre offset, as a fraction of H (rows) and W (columns)."""
    fpn_column_dn: float = 1.0
    """Std of the per-model column offsets, DN."""
    fpn_row_dn: float = 0.5
    """Std of the per-model row offsets, DN."""
    fpn_periodic_dn: float = 0.5
    """Std of the per-model periodic fixed pattern, DN."""
    fpn_period_range: tuple[int, int] = (8, 32)
    """Inclusive range of the per-model period of that pattern, px."""
    exposure_jitter: float = 0.05
    """Log-normal sigma of the per-camera exposure gain."""
    image_exposure_jitter: float = 0.03
    """Log-normal sigma of the per-image exposure gain."""
    wb_jitter: float = 0.03
    """Log-normal sigma of the per-camera white-balance error of R and B."""
    gamma: float = 2.2
    """Output encoding is ``x ** (1 / gamma)``."""
    flat_level_range: tuple[float, float] = (0.50, 0.70)
    """Range of the mean linear level of flat scenes."""
    flat_gradient: float = 0.10
    """Largest total relative change of the linear gradient across a flat scene."""
    flat_variation: float = 0.02
    """Relative amplitude of the smooth undulation of flat scenes."""
    natural_level_range: tuple[float, float] = (0.10, 0.30)
    """Range of the median green radiance of natural scenes."""
    natural_coverage: float = 1.5
    """Mean number of shapes of a natural scene covering a pixel (sets how many are drawn)."""
    optical_blur_sigma: float = 0.6
    """Gaussian optical blur of natural scenes, px (0 = none)."""
    exif_make: str = "camid-synth"
    """EXIF Make written into the images."""

    def __post_init__(self) -> None:
        _check_real("prnu_std", self.prnu_std, 0.0, 0.5)
        _check_real("prnu_smoothing_sigma", self.prnu_smoothing_sigma, 0.0, 10.0)
        _check_real("full_well", self.full_well, 1.0, math.inf, lo_open=False)
        _check_real("read_noise_dn", self.read_noise_dn, 0.0, math.inf)
        _check_int("adc_bits", self.adc_bits, 8, 16)
        _check_tuple("channel_sensitivity", self.channel_sensitivity, 3, 1e-3, 10.0)
        _check_range("vignetting_range", self.vignetting_range, 0.0, 0.95)
        _check_real("vignetting_centre_jitter", self.vignetting_centre_jitter, 0.0, 0.25)
        _check_real("fpn_column_dn", self.fpn_column_dn, 0.0, math.inf)
        _check_real("fpn_row_dn", self.fpn_row_dn, 0.0, math.inf)
        _check_real("fpn_periodic_dn", self.fpn_periodic_dn, 0.0, math.inf)
        if (
            not isinstance(self.fpn_period_range, tuple)
            or len(self.fpn_period_range) != 2
            or not all(_is_int(v) for v in self.fpn_period_range)
            or not 1 <= self.fpn_period_range[0] <= self.fpn_period_range[1]
        ):
            raise ValueError(
                f"fpn_period_range must be a tuple (lo, hi) of integers with 1 <= lo <= hi, "
                f"got {self.fpn_period_range!r}"
            )
        _check_real("exposure_jitter", self.exposure_jitter, 0.0, 1.0)
        _check_real("image_exposure_jitter", self.image_exposure_jitter, 0.0, 1.0)
        _check_real("wb_jitter", self.wb_jitter, 0.0, 1.0)
        _check_real("gamma", self.gamma, 0.1, 10.0, lo_open=False)
        _check_range("flat_level_range", self.flat_level_range, 0.0, 10.0)
        _check_real("flat_gradient", self.flat_gradient, 0.0, 1.0)
        _check_real("flat_variation", self.flat_variation, 0.0, 0.5)
        _check_range("natural_level_range", self.natural_level_range, 0.0, 10.0)
        _check_real("natural_coverage", self.natural_coverage, 0.0, 20.0)
        _check_real("optical_blur_sigma", self.optical_blur_sigma, 0.0, 10.0)
        if not isinstance(self.exif_make, str) or not self.exif_make.isascii():
            raise ValueError(f"exif_make must be an ASCII string, got {self.exif_make!r}")

    @property
    def dn_max(self) -> int:
        """Full-scale raw value, DN."""
        return 2**self.adc_bits - 1

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if not _is_int(value) or not lo <= int(value) <= hi:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def _check_real(
    name: str, value: object, lo: float, hi: float, *, lo_open: bool = False
) -> None:
    ok = _is_real(value) and math.isfinite(float(value))  # type: ignore[arg-type]
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        raise ValueError(f"{name} must be a finite number in [{lo}, {hi}], got {value!r}")


def _check_tuple(name: str, value: object, n: int, lo: float, hi: float) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != n
        or not all(_is_real(v) and lo <= float(v) <= hi for v in value)
    ):
        raise ValueError(f"{name} must be a tuple of {n} numbers in [{lo}, {hi}], got {value!r}")


def _check_range(name: str, value: object, lo: float, hi: float) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(_is_real(v) and math.isfinite(float(v)) for v in value)
        or not lo <= float(value[0]) <= float(value[1]) <= hi
    ):
        raise ValueError(
            f"{name} must be a tuple (lo, hi) with {lo} <= lo <= hi <= {hi}, got {value!r}"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Generator for one named quantity; independent of the order in which streams are used."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


# --------------------------------------------------------------------------------------------
# Model and camera artefacts
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ModelArtefacts:
    """Non-unique artefacts shared by every camera of one model.

    ``vignetting``: float32 (H, W), relative transmission, 1 at the optical centre.
    ``fixed_pattern``: float32 (H, W), additive offset in raw DN.
    """

    name: str
    vignetting_strength: float
    optical_centre: tuple[float, float]
    fpn_period: int
    vignetting: np.ndarray
    fixed_pattern: np.ndarray

    def summary(self) -> dict[str, Any]:
        """The scalar parameters, JSON-ready."""
        return {
            "name": self.name,
            "vignetting_strength": self.vignetting_strength,
            "optical_centre": list(self.optical_centre),
            "fpn_period": self.fpn_period,
        }


def model_name(index: int) -> str:
    """``0 -> 'ModelA'``, ``25 -> 'ModelZ'``, ``26 -> 'ModelAA'`` (spreadsheet-style letters)."""
    letters = ""
    n = index + 1
    while n > 0:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("A") + r) + letters
    return "Model" + letters


def model_artefacts(
    index: int, height: int, width: int, seed: int, sensor: SensorModel | None = None
) -> ModelArtefacts:
    """Vignetting and fixed pattern of model ``index``; depends only on the seed and the index."""
    sensor = sensor or SensorModel()
    rng = _rng(seed, _STREAM_MODEL, index)
    strength = float(rng.uniform(*sensor.vignetting_range))
    jitter = sensor.vignetting_centre_jitter
    cy = (height - 1) / 2 + float(rng.normal(0.0, jitter)) * height
    cx = (width - 1) / 2 + float(rng.normal(0.0, jitter)) * width
    vignetting = _vignetting(height, width, cy, cx, strength)

    lo, hi = sensor.fpn_period_range
    period = int(rng.integers(lo, hi, endpoint=True))
    rows = rng.normal(0.0, sensor.fpn_row_dn, height).astype(np.float32)
    cols = rng.normal(0.0, sensor.fpn_column_dn, width).astype(np.float32)
    tile = rng.standard_normal((period, period), dtype=np.float32)
    tile = (tile - tile.mean()) * (sensor.fpn_periodic_dn / max(float(tile.std()), 1e-12))
    reps = (-(-height // period), -(-width // period))
    pattern = np.tile(tile, reps)[:height, :width]
    pattern += rows[:, None]
    pattern += cols[None, :]
    return ModelArtefacts(
        name=model_name(index),
        vignetting_strength=strength,
        optical_centre=(cy, cx),
        fpn_period=period,
        vignetting=vignetting,
        fixed_pattern=np.ascontiguousarray(pattern, dtype=np.float32),
    )


def _vignetting(height: int, width: int, cy: float, cx: float, strength: float) -> np.ndarray:
    """(H, W) float32 transmission ``(1 + a rho^2)^-2``, with light loss ``strength`` at rho = 1."""
    half_diag2 = (height / 2) ** 2 + (width / 2) ** 2
    dy2 = (np.arange(height, dtype=np.float32) - np.float32(cy)) ** 2
    dx2 = (np.arange(width, dtype=np.float32) - np.float32(cx)) ** 2
    rho2 = (dy2[:, None] + dx2[None, :]) / np.float32(half_diag2)
    a = np.float32((1.0 - strength) ** -0.5 - 1.0)
    return (1.0 / (1.0 + a * rho2) ** 2).astype(np.float32)


def camera_prnu(index: int, height: int, width: int, seed: int, sensor: SensorModel) -> np.ndarray:
    """True PRNU ``K`` of camera ``index``: float32 (H, W), zero mean, std ``prnu_std``."""
    rng = _rng(seed, _STREAM_PRNU, index)
    k = rng.standard_normal((height, width), dtype=np.float32)
    if sensor.prnu_smoothing_sigma > 0:
        k = ndimage.gaussian_filter(k, sensor.prnu_smoothing_sigma, mode="wrap")
    k -= k.mean(dtype=np.float64)
    std = float(k.std(dtype=np.float64))
    k *= np.float32(sensor.prnu_std / std) if std > 0 else np.float32(0.0)
    return k


@dataclass(frozen=True, eq=False)
class _Camera:
    name: str
    index: int
    model: ModelArtefacts
    prnu: np.ndarray  # float32 (H, W)
    exposure: float
    wb_gains: tuple[float, float, float]
    gain_map: np.ndarray  # float32 (H, W): s_cfa * V * exposure * (1 + K)


def _cfa_channel_index(height: int, width: int) -> np.ndarray:
    """(H, W) uint8 colour index (0 R, 1 G, 2 B) of the RGGB photosites."""
    cfa = np.ones((height, width), dtype=np.uint8)
    cfa[0::2, 0::2] = 0
    cfa[1::2, 1::2] = 2
    return cfa


def _make_camera(
    index: int, name: str, model: ModelArtefacts, seed: int, sensor: SensorModel
) -> _Camera:
    height, width = model.vignetting.shape
    k = camera_prnu(index, height, width, seed, sensor)
    rng = _rng(seed, _STREAM_CAMERA, index)
    exposure = float(np.exp(rng.normal(0.0, sensor.exposure_jitter)))
    err_r, err_b = rng.normal(0.0, sensor.wb_jitter, 2)
    s_r, s_g, s_b = (float(s) for s in sensor.channel_sensitivity)
    wb = (s_g / s_r * math.exp(err_r), 1.0, s_g / s_b * math.exp(err_b))
    sens = np.asarray(sensor.channel_sensitivity, dtype=np.float32)[_cfa_channel_index(height, width)]
    gain = sens * model.vignetting * np.float32(exposure) * (1.0 + k)
    return _Camera(name, index, model, k, exposure, wb, gain.astype(np.float32))


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------
def _flat_field(
    rng: np.random.Generator,
    height: int,
    width: int,
    gradient: float,
    variation: float,
    terms: int = 4,
    max_cycles: float = 1.5,
) -> np.ndarray:
    """(H, W) float32 ``1 + plane + variation * undulation``, all smooth and separable.

    The plane has a total change of at most ``gradient`` across the frame in a random direction;
    the undulation is a sum of ``terms`` random plane waves of at most ``max_cycles`` cycles per
    frame with unit standard deviation.  Every term is a sum of outer products (cos(a + b) =
    cos a cos b - sin a sin b), so the whole field is one (H, r) @ (r, W) product.
    """
    y = np.linspace(-0.5, 0.5, height, dtype=np.float64)
    x = np.linspace(-0.5, 0.5, width, dtype=np.float64)
    angle = rng.uniform(0.0, 2 * np.pi)
    slope = rng.uniform(0.0, gradient)
    # Dividing by |cos| + |sin| keeps the corner-to-corner change of the plane <= slope.
    norm = max(abs(math.cos(angle)) + abs(math.sin(angle)), 1e-6)
    gy, gx = slope * math.sin(angle) / norm, slope * math.cos(angle) / norm
    left = [np.ones(height), y]
    right = [1.0 + gx * x, np.full(width, gy)]
    amp = variation * math.sqrt(2.0 / terms)
    for _ in range(terms):
        fy, fx = rng.uniform(-max_cycles, max_cycles, 2)
        phase = rng.uniform(0.0, 2 * np.pi)
        ay, ax = 2 * np.pi * fy * y, 2 * np.pi * fx * x + phase
        left += [np.cos(ay), np.sin(ay)]
        right += [amp * np.cos(ax), -amp * np.sin(ax)]
    lhs = np.stack(left, axis=1).astype(np.float32)
    rhs = np.stack(right, axis=0).astype(np.float32)
    return lhs @ rhs


def flat_scene(
    rng: np.random.Generator, height: int, width: int, sensor: SensorModel | None = None
) -> np.ndarray:
    """Nearly uniform bright field: float32 (H, W, 3) linear radiance, mean in ``flat_level_range``."""
    sensor = sensor or SensorModel()
    level = rng.uniform(*sensor.flat_level_range)
    field = _flat_field(rng, height, width, sensor.flat_gradient, sensor.flat_variation)
    np.maximum(field, 0.0, out=field)
    tint = (level * np.exp(rng.normal(0.0, 0.02, 3))).astype(np.float32)
    return field[:, :, None] * tint


def _pink_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float32 Gaussian texture with amplitude spectrum ~1/f, zero mean, unit std."""
    white = rng.standard_normal((height, width), dtype=np.float32)
    spectrum = scipy.fft.rfft2(white)
    fy = np.fft.fftfreq(height).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(width).astype(np.float32)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    # Frequencies below one cycle per frame are flattened so the DC does not dominate.
    amplitude = 1.0 / np.maximum(f, np.float32(1.0 / max(height, width)))
    amplitude[0, 0] = 0.0
    field = scipy.fft.irfft2(spectrum * amplitude, s=(height, width)).astype(np.float32)
    field /= max(float(field.std()), 1e-12)
    return field


def _shape_mask(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, radius: float
) -> np.ndarray:
    """Boolean mask of a random ellipse, rotated rectangle or convex polygon of circumradius
    ``radius`` centred at (0, 0); ``yy`` (h, 1) and ``xx`` (1, w) are offsets from the centre, px."""
    kind = rng.integers(3)
    theta = rng.uniform(0.0, np.pi)
    c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    u = xx * c + yy * s
    v = yy * c - xx * s
    if kind == 0:  # ellipse
        b = radius * rng.uniform(0.3, 1.0)
        return (u / np.float32(radius)) ** 2 + (v / np.float32(b)) ** 2 <= 1.0
    if kind == 1:  # rectangle whose half-diagonal is the radius
        phi = rng.uniform(0.15, np.pi / 2 - 0.15)
        return (np.abs(u) <= radius * math.cos(phi)) & (np.abs(v) <= radius * math.sin(phi))
    # convex polygon inscribed in the circle: vertices at sorted random angles
    n = int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, n))
    vy = radius * np.sin(angles)
    vx = radius * np.cos(angles)
    mask = np.ones(np.broadcast_shapes(yy.shape, xx.shape), dtype=bool)
    for i in range(n):
        j = (i + 1) % n
        ey, ex = vy[j] - vy[i], vx[j] - vx[i]
        # Counter-clockwise vertices: the inside is on the left of every edge.
        mask &= (ex * (yy - vy[i]) - ey * (xx - vx[i])) >= 0.0
    return mask


def _shape_colour(rng: np.random.Generator, *, small: bool) -> np.ndarray:
    """float32 (3,) reflectance of one shape: mostly ordinary surfaces, some deep shadows, and
    (small shapes only) light sources or speculars far above full scale, which will saturate."""
    role = rng.uniform()
    if role < 0.08:
        colour = rng.uniform(0.005, 0.03) * np.exp(rng.normal(0.0, 0.1, 3))
    elif small and role < 0.12:
        colour = rng.uniform(8.0, 60.0) * np.exp(rng.normal(0.0, 0.15, 3))
    else:
        grey = np.exp(rng.uniform(np.log(0.03), np.log(0.9)))
        colour = grey * np.exp(rng.normal(0.0, 0.25, 3))
    return colour.astype(np.float32)


def _paint_sky(rng: np.random.Generator, reflectance: np.ndarray) -> None:
    """Overwrite, in place, the part of an (H, W, 3) map above a random tilted horizon with a
    smooth bright sky (a few times the typical surface radiance, so it partly saturates)."""
    height, width, _ = reflectance.shape
    horizon = rng.uniform(0.2, 0.55) * height
    tilt = rng.uniform(-0.15, 0.15) * height
    rows = np.arange(height, dtype=np.float32)[:, None]
    line = horizon + tilt * np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    mask = rows < line
    brightness = rng.uniform(0.6, 2.5)
    # Brighter towards the horizon, slightly blue.
    profile = brightness * (0.6 + 0.4 * np.clip(rows / np.maximum(line, 1.0), 0.0, 1.0))
    tint = np.array([0.85, 0.95, 1.15], dtype=np.float32) * np.exp(rng.normal(0.0, 0.05, 3))
    sky = profile[:, :, None] * tint.astype(np.float32)
    sky = np.broadcast_to(sky, reflectance.shape)
    reflectance[mask] = sky[mask]


def natural_scene(
    rng: np.random.Generator, height: int, width: int, sensor: SensorModel | None = None
) -> np.ndarray:
    """Textured "dead leaves" scene: float32 (H, W, 3) linear radiance (may exceed 1: saturates).

    Median green radiance in ``natural_level_range``; see the module docstring.
    """
    sensor = sensor or SensorModel()
    background_texture = _pink_noise(rng, height, width)
    shape_texture = _pink_noise(rng, height, width)

    base = np.exp(rng.normal(np.log(0.25), 0.25, 3)).astype(np.float32)
    reflectance = np.exp(np.float32(rng.uniform(0.2, 0.5)) * background_texture)[:, :, None] * base

    if rng.uniform() < 0.5:
        _paint_sky(rng, reflectance)

    side = min(height, width)
    r_min, r_max = max(1.5, 0.03 * side), max(3.0, 0.6 * side)
    # p(r) ~ r^-3 on [r_min, r_max] has E[r^2] = 2 ln(r_max / r_min) / (r_min^-2 - r_max^-2);
    # the shapes fill about 0.55 of their circumscribed circle on average.
    mean_area = 0.55 * math.pi * 2 * math.log(r_max / r_min) / (r_min**-2 - r_max**-2)
    count = int(round(sensor.natural_coverage * height * width / mean_area))
    # Inverse CDF sampling; big shapes are painted first, so small ones occlude them.
    u = rng.uniform(0.0, 1.0, count)
    radii = np.sort((r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5)[::-1]
    for radius in radii:
        cy = rng.uniform(-radius, height + radius)
        cx = rng.uniform(-radius, width + radius)
        y0, y1 = max(0, int(cy - radius)), min(height, int(cy + radius) + 2)
        x0, x1 = max(0, int(cx - radius)), min(width, int(cx + radius) + 2)
        if y0 >= y1 or x0 >= x1:
            # The centre lies within a radius of the frame, so only a sliver can miss it.
            continue
        yy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
        xx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
        mask = _shape_mask(rng, yy, xx, float(radius))
        colour = _shape_colour(rng, small=radius < 0.08 * side)
        gy, gx = rng.uniform(-0.5, 0.5, 2)
        shading = 1.0 + (np.float32(gy) * yy + np.float32(gx) * xx) / np.float32(radius)
        texture = np.exp(np.float32(rng.uniform(0.0, 0.5)) * shape_texture[y0:y1, x0:x1])
        patch = (np.maximum(shading, 0.05) * texture)[:, :, None] * colour
        window = reflectance[y0:y1, x0:x1]
        window[mask] = patch[mask]

    gy, gx = rng.uniform(-0.6, 0.6, 2)
    illumination = (
        1.0
        + np.float32(gy) * np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
        + np.float32(gx) * np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    )
    scene = reflectance * illumination[:, :, None]
    target = rng.uniform(*sensor.natural_level_range)
    median = float(np.median(scene[::4, ::4, 1]))  # subsampled: the median of a smooth-ish field
    scene *= np.float32(target / max(median, 1e-6))
    if sensor.optical_blur_sigma > 0:
        scene = ndimage.gaussian_filter(
            scene, (sensor.optical_blur_sigma, sensor.optical_blur_sigma, 0), mode="nearest"
        )
    return scene.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Image formation and development
# --------------------------------------------------------------------------------------------
def _mosaic(scene: np.ndarray) -> np.ndarray:
    """RGGB sampling of an (H, W, 3) scene: float32 (H, W)."""
    raw = np.empty(scene.shape[:2], dtype=np.float32)
    raw[0::2, 0::2] = scene[0::2, 0::2, 0]
    raw[0::2, 1::2] = scene[0::2, 1::2, 1]
    raw[1::2, 0::2] = scene[1::2, 0::2, 1]
    raw[1::2, 1::2] = scene[1::2, 1::2, 2]
    return raw


def _expose(
    scene: np.ndarray, camera: _Camera, sensor: SensorModel, rng: np.random.Generator
) -> np.ndarray:
    """Raw RGGB frame, float32 (H, W) on 0..1 quantised to the ADC grid."""
    image_gain = np.float32(np.exp(rng.normal(0.0, sensor.image_exposure_jitter)))
    signal = _mosaic(scene)
    signal *= camera.gain_map
    signal *= image_gain
    dn_max = np.float32(sensor.dn_max)
    variance = signal / np.float32(sensor.full_well) + np.float32((sensor.read_noise_dn / dn_max) ** 2)
    raw = signal + np.sqrt(variance) * rng.standard_normal(signal.shape, dtype=np.float32)
    raw += camera.model.fixed_pattern / dn_max
    np.clip(raw, 0.0, 1.0, out=raw)
    raw *= dn_max
    np.rint(raw, out=raw)
    raw /= dn_max
    return raw


def _neighbour_sum_121(plane: np.ndarray) -> np.ndarray:
    """Separable [1/2, 1, 1/2] x [1/2, 1, 1/2] filter of an (H, W) plane with mirror boundaries.

    'reflect' padding mirrors about the edge pixel, which keeps the CFA phase of the neighbours.
    """
    q = np.pad(plane, 1, mode="reflect")
    rows = q[1:-1, :] + np.float32(0.5) * (q[:-2, :] + q[2:, :])
    return rows[:, 1:-1] + np.float32(0.5) * (rows[:, :-2] + rows[:, 2:])


def _demosaic_bilinear(raw: np.ndarray) -> np.ndarray:
    """Bilinear RGGB demosaicing: float32 (H, W) -> float32 (H, W, 3).

    Each colour plane is kept at its own photosites (zeros elsewhere) and filtered: R and B with
    the 3x3 kernel [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 4, G with [[0, 1, 0], [1, 4, 1], [0, 1, 0]] / 4,
    which reproduce the samples at their sites and average the 2 or 4 nearest ones elsewhere.
    """
    height, width = raw.shape
    rgb = np.empty((height, width, 3), dtype=np.float32)
    plane = np.zeros_like(raw)
    plane[0::2, 0::2] = raw[0::2, 0::2]
    rgb[:, :, 0] = _neighbour_sum_121(plane)
    plane[0::2, 0::2] = 0.0
    plane[1::2, 1::2] = raw[1::2, 1::2]
    rgb[:, :, 2] = _neighbour_sum_121(plane)
    plane[:] = raw
    plane[0::2, 0::2] = 0.0
    plane[1::2, 1::2] = 0.0
    q = np.pad(plane, 1, mode="reflect")
    rgb[:, :, 1] = q[1:-1, 1:-1] + np.float32(0.25) * (
        q[:-2, 1:-1] + q[2:, 1:-1] + q[1:-1, :-2] + q[1:-1, 2:]
    )
    return rgb


def _develop(raw: np.ndarray, camera: _Camera, sensor: SensorModel, bits: int) -> np.ndarray:
    """Demosaic, white balance, clip, gamma and quantise: (H, W, 3) uint8 (0..255) or uint16."""
    rgb = _demosaic_bilinear(raw)
    rgb *= np.asarray(camera.wb_gains, dtype=np.float32)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    np.power(rgb, np.float32(1.0 / sensor.gamma), out=rgb)
    top = np.float32(2**bits - 1)
    rgb *= top
    np.rint(rgb, out=rgb)
    return rgb.astype(np.uint8 if bits == 8 else np.uint16)


def _render(
    kind: str, index: int, camera: _Camera, seed: int, sensor: SensorModel, bits: int
) -> np.ndarray:
    """One developed image of ``camera`` on the sensor grid: (H, W, 3) uint8 or uint16."""
    height, width = camera.gain_map.shape
    rng = _rng(seed, _STREAM_IMAGE, camera.index, _KIND_CODES[kind], index)
    scene_fn = natural_scene if kind == "natural" else flat_scene
    scene = scene_fn(rng, height, width, sensor)
    raw = _expose(scene, camera, sensor, rng)
    return _develop(raw, camera, sensor, bits)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _write_image(
    path: Path, image: np.ndarray, fmt: str, jpeg_quality: int, make: str, model: str
) -> None:
    """Store an (h, w, 3) uint8 (JPEG/PNG) or uint16 (TIFF) image with Make/Model/Orientation."""
    if fmt == "tiff":
        tifffile.imwrite(
            path,
            image,
            photometric="rgb",
            metadata=None,
            extratags=[(271, "s", 0, make, True), (272, "s", 0, model, True), (274, "H", 1, 1, True)],
        )
        return
    exif = Image.Exif()
    exif[_EXIF_MAKE] = make
    exif[_EXIF_MODEL] = model
    exif[_EXIF_ORIENTATION] = 1
    pil = Image.fromarray(image)
    if fmt == "jpeg":
        pil.save(path, format="JPEG", quality=jpeg_quality, subsampling=0, exif=exif)
    else:
        pil.save(path, format="PNG", exif=exif)


def _clear_previous(out: Path) -> None:
    """Delete the files a previous camid-synth dataset in ``out`` listed, and its empty folders."""
    try:
        old = load_ground_truth(out)
    except (FileNotFoundError, ValueError):
        return
    paths = [out / img["path"] for img in old.get("images", [])]
    paths += [out / cam["K"] for cam in old.get("cameras", []) if "K" in cam]
    for path in paths:
        if path.is_file() and path.resolve().is_relative_to(out.resolve()):
            path.unlink()
    for sub in ("refs", "disputed", "truth"):
        top = out / sub
        if top.is_dir():
            for folder in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            if not any(top.iterdir()):
                top.rmdir()
    (out / "ground_truth.json").unlink(missing_ok=True)


def _prepare_outdir(outdir: str | os.PathLike[str], overwrite: bool) -> Path:
    if not isinstance(outdir, (str, os.PathLike)):
        raise ValueError(f"outdir must be a path, got {outdir!r}")
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"outdir must be a directory, got {str(out)!r} (a file)")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"outdir {str(out)!r} is not empty; pass overwrite=True to replace a dataset"
            )
        _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _validate_counts(**counts: object) -> None:
    minimum = {"cameras": 1, "per_model": 1, "refs": 1}
    for name, value in counts.items():
        _check_int(name, value, minimum.get(name, 0), 100000)


def _render_and_write(
    out: Path,
    camera: _Camera,
    seed: int,
    sensor: SensorModel,
    fmt: str,
    jpeg_quality: int,
    portrait: int,
    item: tuple[str, int],
) -> dict[str, Any]:
    """Render image ``item = (kind, index)`` of ``camera``, store it and return its truth entry."""
    kind, index = item
    folder = "refs" if kind == "ref" else "disputed"
    rel = f"{folder}/{camera.name}/{kind}_{index:03d}{_EXTENSIONS[fmt]}"
    image = _render(kind, index, camera, seed, sensor, 16 if fmt == "tiff" else 8)
    rotation = 90 if kind == "natural" and index < portrait else 0
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, 1))
    _write_image(out / rel, image, fmt, jpeg_quality, sensor.exif_make, camera.model.name)
    return {
        "path": rel,
        "camera": camera.name,
        "kind": kind,
        "rotation": rotation,
        "size": [int(image.shape[0]), int(image.shape[1])],
    }


def make_dataset(
    outdir: str | os.PathLike[str],
    *,
    cameras: int = 4,
    per_model: int = 2,
    refs: int = 15,
    disputed_flat: int = 3,
    disputed_natural: int = 3,
    height: int = 1000,
    width: int = 1200,
    jpeg_quality: int = 92,
    fmt: str = "jpeg",
    portrait: int = 0,
    seed: int = 0,
    sensor: SensorModel | None = None,
    overwrite: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write a synthetic dataset of ``cameras`` cameras into ``outdir`` and return its ground truth.

    Camera ``i`` (0-based, named ``C01``, ``C02``, ...) belongs to model ``i // per_model``
    (``ModelA``, ``ModelB``, ...), so the defaults give 2 models x 2 twins.  Every camera gets
    ``refs`` flat reference images, ``disputed_flat`` flat and ``disputed_natural`` natural disputed
    images; the first ``portrait`` of its natural ones are stored rotated by ``np.rot90(img, 1)``.
    Images are ``height x width`` RGB (``width x height`` when rotated), 8-bit JPEG
    (``fmt="jpeg"``, quality ``jpeg_quality``, 4:4:4) or PNG (``"png"``), or 16-bit TIFF
    (``"tiff"``).  ``outdir`` must be empty or absent unless ``overwrite`` is true, in which case
    the files of a previous camid-synth dataset there (as listed by its ground truth) are deleted
    first and other files are left alone.  ``workers`` threads render a camera's images in
    parallel (default ``min(4, os.cpu_count())``); the output does not depend on it.

    Ground truth (returned, and written to ``outdir/ground_truth.json``)::

        {"format": "camid-synth", "version": 1, "seed": int,
         "parameters": {"cameras", "per_model", "refs", "disputed_flat", "disputed_natural",
                        "height", "width", "jpeg_quality", "fmt", "portrait", "seed",
                        "sensor": {every SensorModel field}},
         "models":  [{"name", "cameras": [names], "vignetting_strength",
                      "optical_centre": [y, x] (px), "fpn_period" (px)}],
         "cameras": [{"name", "model", "twins": [other cameras of the model],
                      "K": "truth/<name>_K.npy", "exposure_gain", "wb_gains": [r, g, b]}],
         "images":  [{"path" (relative to outdir, posix), "camera",
                      "kind": "ref" | "flat" | "natural", "rotation": 0 | 90,
                      "size": [h, w] (as stored)}]}

    Raises ``ValueError`` (naming the parameter) for invalid arguments and ``FileExistsError`` for
    a non-empty ``outdir`` without ``overwrite``.
    """
    _validate_counts(
        cameras=cameras,
        per_model=per_model,
        refs=refs,
        disputed_flat=disputed_flat,
        disputed_natural=disputed_natural,
        portrait=portrait,
    )
    _check_int("height", height, _MIN_SIDE, _MAX_SIDE)
    _check_int("width", width, _MIN_SIDE, _MAX_SIDE)
    _check_int("jpeg_quality", jpeg_quality, 1, 100)
    _check_int("seed", seed, 0, 2**128 - 1)
    if not isinstance(fmt, str) or fmt.lower() not in _FORMATS:
        raise ValueError(f"fmt must be one of 'jpeg', 'png', 'tiff', got {fmt!r}")
    if portrait > disputed_natural:
        raise ValueError(
            f"portrait must be <= disputed_natural ({disputed_natural}), got {portrait!r}"
        )
    if sensor is None:
        sensor = SensorModel()
    elif not isinstance(sensor, SensorModel):
        raise ValueError(f"sensor must be a SensorModel or None, got {sensor!r}")
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be a bool, got {overwrite!r}")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    _check_int("workers", workers, 1, 256)
    fmt = _FORMATS[fmt.lower()]
    cameras, per_model, refs = int(cameras), int(per_model), int(refs)
    disputed_flat, disputed_natural, portrait = int(disputed_flat), int(disputed_natural), int(portrait)
    height, width, jpeg_quality, seed = int(height), int(width), int(jpeg_quality), int(seed)

    out = _prepare_outdir(outdir, overwrite)
    digits = max(2, len(str(cameras)))
    names = [f"C{i + 1:0{digits}d}" for i in range(cameras)]
    n_models = -(-cameras // per_model)
    members = [names[m * per_model : (m + 1) * per_model] for m in range(n_models)]

    truth: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "seed": seed,
        "parameters": {
            "cameras": cameras,
            "per_model": per_model,
            "refs": refs,
            "disputed_flat": disputed_flat,
            "disputed_natural": disputed_natural,
            "height": height,
            "width": width,
            "jpeg_quality": jpeg_quality,
            "fmt": fmt,
            "portrait": portrait,
            "seed": seed,
            "sensor": sensor.to_dict(),
        },
        "models": [],
        "cameras": [],
        "images": [],
    }
    (out / "truth").mkdir(exist_ok=True)
    plan = [("ref", i) for i in range(refs)]
    plan += [("flat", i) for i in range(disputed_flat)]
    plan += [("natural", i) for i in range(disputed_natural)]

    for m in range(n_models):
        artefacts = model_artefacts(m, height, width, seed, sensor)
        truth["models"].append({**artefacts.summary(), "cameras": members[m]})
        for cam_index in range(m * per_model, min((m + 1) * per_model, cameras)):
            name = names[cam_index]
            camera = _make_camera(cam_index, name, artefacts, seed, sensor)
            k_rel = f"truth/{name}_K.npy"
            np.save(out / k_rel, camera.prnu)
            truth["cameras"].append(
                {
                    "name": name,
                    "model": artefacts.name,
                    "twins": [n for n in members[m] if n != name],
                    "K": k_rel,
                    "exposure_gain": camera.exposure,
                    "wb_gains": list(camera.wb_gains),
                }
            )
            (out / "refs" / name).mkdir(parents=True, exist_ok=True)
            (out / "disputed" / name).mkdir(parents=True, exist_ok=True)
            job = functools.partial(
                _render_and_write, out, camera, seed, sensor, fmt, jpeg_quality, portrait
            )
            # Every image has its own generator, so threads change the speed, never the bytes;
            # NumPy, SciPy's FFT and Pillow's encoders release the GIL for the heavy parts.
            if workers == 1:
                truth["images"].extend(job(item) for item in plan)
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    truth["images"].extend(pool.map(job, plan))
            del camera  # one camera's full-size maps in memory at a time

    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return truth


def load_ground_truth(outdir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``outdir/ground_truth.json``; ``ValueError`` if it is not a camid-synth v1 file."""
    path = Path(outdir) / "ground_truth.json"
    with path.open(encoding="utf-8") as fh:
        truth = json.load(fh)
    if not isinstance(truth, dict) or truth.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(path)!r} is not a {FORMAT_NAME} ground-truth file")
    if truth.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has version {truth.get('version')!r}; expected {FORMAT_VERSION}"
        )
    return truth

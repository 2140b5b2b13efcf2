"""The synthetic cameras' sensors: parameters (:class:`SensorModel`), the artefacts of a model and of a
camera (steps 1-5 of the model in :mod:`camid_gpu.datasets.synthetic`), and image formation and
development (steps 7-8): scene radiance in, a developed RGB image out.

Every random quantity comes from :func:`rng_for` with a key naming what it is for (a ``STREAM_*``
constant first), so nothing depends on the order of generation.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from camid_gpu.config import is_finite_number

# First element of every SeedSequence spawn key: which kind of quantity the stream is for.
STREAM_MODEL = 0
STREAM_PRNU = 1
STREAM_CAMERA = 2
STREAM_IMAGE = 3


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
        check_int("adc_bits", self.adc_bits, 8, 16)
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


def check_int(name: str, value: object, lo: int, hi: int) -> None:
    if not _is_int(value) or not lo <= int(value) <= hi:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def _check_real(
    name: str, value: object, lo: float, hi: float, *, lo_open: bool = False
) -> None:
    ok = is_finite_number(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        raise ValueError(f"{name} must be a finite number in [{lo}, {hi}], got {value!r}")


def _check_tuple(name: str, value: object, n: int, lo: float, hi: float) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != n
        or not all(is_finite_number(v) and lo <= float(v) <= hi for v in value)
    ):
        raise ValueError(f"{name} must be a tuple of {n} numbers in [{lo}, {hi}], got {value!r}")


def _check_range(name: str, value: object, lo: float, hi: float) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(is_finite_number(v) for v in value)
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


def rng_for(seed: int, *key: int) -> np.random.Generator:
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
    rng = rng_for(seed, STREAM_MODEL, index)
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
    rng = rng_for(seed, STREAM_PRNU, index)
    k = rng.standard_normal((height, width), dtype=np.float32)
    if sensor.prnu_smoothing_sigma > 0:
        k = ndimage.gaussian_filter(k, sensor.prnu_smoothing_sigma, mode="wrap")
    k -= k.mean(dtype=np.float64)
    std = float(k.std(dtype=np.float64))
    k *= np.float32(sensor.prnu_std / std) if std > 0 else np.float32(0.0)
    return k


@dataclass(frozen=True, eq=False)
class Camera:
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


def make_camera(
    index: int, name: str, model: ModelArtefacts, seed: int, sensor: SensorModel
) -> Camera:
    height, width = model.vignetting.shape
    k = camera_prnu(index, height, width, seed, sensor)
    rng = rng_for(seed, STREAM_CAMERA, index)
    exposure = float(np.exp(rng.normal(0.0, sensor.exposure_jitter)))
    err_r, err_b = rng.normal(0.0, sensor.wb_jitter, 2)
    s_r, s_g, s_b = (float(s) for s in sensor.channel_sensitivity)
    wb = (s_g / s_r * math.exp(err_r), 1.0, s_g / s_b * math.exp(err_b))
    sens = np.asarray(sensor.channel_sensitivity, dtype=np.float32)[_cfa_channel_index(height, width)]
    gain = sens * model.vignetting * np.float32(exposure) * (1.0 + k)
    return Camera(name, index, model, k, exposure, wb, gain.astype(np.float32))


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


def expose(
    scene: np.ndarray, camera: Camera, sensor: SensorModel, rng: np.random.Generator
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


def develop(raw: np.ndarray, camera: Camera, sensor: SensorModel, bits: int) -> np.ndarray:
    """Demosaic, white balance, clip, gamma and quantise: (H, W, 3) uint8 (0..255) or uint16."""
    rgb = _demosaic_bilinear(raw)
    rgb *= np.asarray(camera.wb_gains, dtype=np.float32)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    np.power(rgb, np.float32(1.0 / sensor.gamma), out=rgb)
    top = np.float32(2**bits - 1)
    rgb *= top
    np.rint(rgb, out=rgb)
    return rgb.astype(np.uint8 if bits == 8 else np.uint16)

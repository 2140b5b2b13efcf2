"""Scenes of the synthetic dataset (step 6 of the model in :mod:`camid_gpu.datasets.synthetic`): linear RGB
radiance, float32 ``(H, W, 3)``, of a nearly uniform bright field (:func:`flat_scene`) or of a "dead
leaves" natural scene (:func:`natural_scene`), each drawn from the generator it is given.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy import ndimage

from camid_gpu.datasets.sensor import SensorModel


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

"""Seeded synthetic camera sensors and a dataset writer for PRNU camera identification.

This module describes the model and gathers the public names; the code is in :mod:`.sensor`
(parameters, model and camera artefacts, image formation and development: steps 1-5, 7, 8),
:mod:`.scenes` (step 6) and :mod:`.writer` (step 9, the files and the ground truth).

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

from camid_gpu.datasets.scenes import flat_scene, natural_scene
from camid_gpu.datasets.sensor import ModelArtefacts, SensorModel, camera_prnu, model_artefacts, model_name
from camid_gpu.datasets.writer import FORMAT_NAME, FORMAT_VERSION, load_ground_truth, make_dataset

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

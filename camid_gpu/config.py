"""Every default and parameter type of camid, in one place.

What to compute is a :class:`Params` (it shapes every number in a result and is recorded with it); how to
run is a :class:`RunConfig` (backend, workers, memory; never changes a result). The command line, the
algorithms' keyword defaults and the record of a run all read their defaults from here. Units: pixel
values on the 0..255 scale, sizes in pixels as (rows, columns), memory in bytes.

Where each default comes from is listed in the README ("Parameters, defaults and where they come from").
"""
from __future__ import annotations

import math
from dataclasses import InitVar, asdict, dataclass, field, fields
from typing import Any

import numpy as np

from camid_gpu.backend import Backend, get_backend

# -- the residual (Binghamton NoiseExtract) -------------------------------------------------------
#: wavelet and decomposition levels of NoiseExtract
DEFAULT_WAVELET = "db4"
DEFAULT_LEVELS = 4
#: window sizes of Mihcak's local variance estimate (Binghamton's WaveNoise)
MIHCAK_WINDOWS: tuple[int, ...] = (3, 5, 7, 9)
#: rgb -> gray weights of Binghamton's rgb2gray1 (MATLAB's rgb2gray)
GRAY_WEIGHTS: tuple[float, float, float] = (0.2989, 0.5870, 0.1140)
#: denoiser noise std of reference residuals (Binghamton getFingerprint), 0..255 scale
SIGMA_FINGERPRINT = 3.0
#: the same for disputed images in the PCE method (Binghamton example)
SIGMA_QUERY = 2.0
#: the same for both sides of the Mahalanobis method (the PeerJ CS paper)
SIGMA_MAHALANOBIS = 2.0

# -- PCE -------------------------------------------------------------------------------------------
#: same-camera threshold on the PCE used by the field
PCE_THRESHOLD = 60.0
#: side of the square around the peak left out of the correlation energy
PEAK_NEIGHBOURHOOD = 11
#: PCE peak search range (rows, columns): no shift
SHIFT_RANGE = (0, 0)
#: fingerprints correlated per step by the PCE and the scale/crop search (device memory grows with it; the
#: engine's chunk sizing counts this many fingerprint planes per image)
PCE_CAMERA_CHUNK = 4

# -- images and references -------------------------------------------------------------------------
#: centre clipping (rows, columns) of the PeerJ CS paper: the Mahalanobis method's geometry
CLIP = (1000, 1000)
#: geometry of the PCE method: the full sensor frame (None), as Binghamton's getFingerprint and PCE
PCE_CLIP: tuple[int, int] | None = None
#: geometry of the Mahalanobis method: the paper's centre clipping
MAHALANOBIS_CLIP: tuple[int, int] | None = CLIP
#: reference images per camera (the paper's R)
REFERENCES = 15
#: usable references per camera under which ``camid fingerprint`` warns (every usable one is used by default):
#: a fingerprint's estimation noise falls roughly as 1/N, so fewer flats give lower PCE to genuine matches
RECOMMENDED_REFERENCES = REFERENCES

# -- usable references and fingerprints (checked when a fingerprint is built and when it is loaded) ----
#: a reference clip is "saturated" when more than this fraction of its samples sit at the top code value
#: (a blown-out flat: clipped pixels carry no PRNU)
REF_MAX_SATURATED_FRACTION = 0.5
#: a reference clip is "too dark" when its mean is under this (0..255 scale; lens cap on: the PRNU is
#: multiplicative, so a dark image carries almost none)
REF_MIN_MEAN = 5.0
#: a disputed image's region compared by the Mahalanobis method has "insufficient content" when more than this
#: fraction of its samples sit at the top code value (its per-pixel votes would run on blown-out pixels)
MAX_SATURATED_FRACTION = 0.5
#: a reference or disputed clip is "constant" when its sample std is under this (0..255 scale)
MIN_CONTENT_STD = 0.5
#: fewest usable references a fingerprint may be built from (fewer is refused at build and at load)
MIN_REFERENCES = 2
#: a stored fingerprint array whose std is under this is degenerate (all zero or constant)
MIN_FINGERPRINT_STD = 1e-8

# -- input limits (checked before a file is read and before pixels are allocated) --------------------
#: largest input file read, in bytes (a 3 GB sparse ".jpg" is refused before it is read)
MAX_FILE_BYTES = 1 << 30
#: largest decoded image, in bytes of samples (rows x columns x channels x bytes per sample), declared by
#: the header and checked before decoding; 1 GiB holds a 100-megapixel 16-bit RGB image
MAX_DECODED_BYTES = 1 << 30
#: largest decoded image in pixels, whatever the sample size (a second guard against decompression bombs)
MAX_PIXELS = 250_000_000

# -- blind clustering (camid cluster) --------------------------------------------------------------
#: region compared between images: "auto" (whole frames when the run fits the two budgets below, else the largest
#: centred square that does: camid_gpu/cluster/region.py), "full", or N: the largest centred square up to N x N
CLUSTER_REGION = "auto"
#: the smallest square side "auto" chooses (the default before "auto"; what it compares when nothing fits)
CLUSTER_REGION_FLOOR = 1024
#: "auto": residual rows kept in RUN/residuals/ at most (float32; also at most half the free disk space there)
CLUSTER_AUTO_STORE_BYTES = 64 << 30
#: "auto": Gram multiply-adds at most (rows^2 / 2 x pixels per group; 1e13 took ~23 min on a shared 2-core CPU
#: at 7.4 GMAC/s float32, far less on a GPU)
CLUSTER_AUTO_GRAM_MACS = 1e13
#: smallest region side accepted
CLUSTER_MIN_REGION = 32
#: probability of any false link in the whole set (both stages: the image pairs and the fingerprint refinement)
CLUSTER_PFA = 1e-6
#: the pair stage's share of --pfa; the fingerprint refinement (merges and attachments) gets the rest. The split is
#: of the expected number of false links ``-ln(1 - pfa)`` (Sidak's composition): the pair stage spends
#: ``pfa_pairs = 1 - (1 - pfa)^share``, the refinement ``pfa_refine = 1 - (1 - pfa)^(1 - share)``, so that
#: ``1 - (1 - pfa_pairs)(1 - pfa_refine) = pfa`` exactly (``pfa_pairs + pfa_refine`` exceeds ``pfa`` only by their
#: product, 2.5e-13 at the default). Fixed before any comparison is made: see camid_gpu/cluster/threshold.py
CLUSTER_PFA_PAIRS_SHARE = 0.5
#: residual RMS (0..255 gray levels) below which an image carries no sensor noise to compare (a constant or
#: fully saturated frame: its residual is rounding error, identical between such frames, so it would link them)
CLUSTER_MIN_RESIDUAL_RMS = 1e-2
#: fingerprint merge/attach rounds at most
CLUSTER_MAX_ROUNDS = 20
#: same-scene guard (camid_gpu/cluster/scene.py): two images whose band-passed block-mean content has an NCC of at least
#: this are a same-scene pair (their residuals share the scene the denoiser leaves in them): never linked
CLUSTER_SAME_SCENE_NCC = 0.5
#: ... and only when both have at least this much band-passed content (RMS, gray levels 0..255): a flat field has
#: none, and what is left there (averaged PRNU, fixed pattern) is shared by a camera's flats
CLUSTER_SCENE_MIN_CONTRAST = 1.0
#: Gram product precisions ("auto": float16 on CUDA, float32 elsewhere)
GRAM_PRECISIONS = ("auto", "float32", "float16")

# -- console answers (camid identify) --------------------------------------------------------------
#: a best PCE at or above this fraction of the threshold, with no decision, is printed as a "near miss"
NEAR_MISS_FRACTION = 0.5
#: relative difference of aspect ratios (rows/columns) under which a smaller image is "the sensor's frame
#: resized or cropped" for the --search-scales hint
HINT_ASPECT_TOLERANCE = 0.02

# -- evidence strength (camid calibrate; --calibration) -------------------------------------------
#: fewest same-source (image, own camera) pairs of one image kind a calibration is fitted from: floors, not a
#: guarantee (the ELUB bounds say how large an LR the data support); fewer is refused, naming the shortfall
CALIBRATION_MIN_SAME_SOURCE = 20
#: fewest different-source pairs of one image kind (of the population chosen for the alternative hypothesis)
CALIBRATION_MIN_DIFFERENT_SOURCE = 100
#: fewest cameras with images of one kind: the validation holds each camera out in turn
CALIBRATION_MIN_CAMERAS = 4
#: score-to-LR models (lir): logistic regression (default; monotone in the score), kernel density, isotonic (PAV)
CALIBRATORS = ("logistic", "kde", "isotonic")
#: the population of the alternative hypothesis: every other camera, or only other cameras of the same model
DIFFERENT_SOURCE_CHOICES = ("all", "same-model")
#: longest casework text (--case, --examiner, --note, an --exhibit label), characters
CASEWORK_MAX_CHARS = 2000

# -- the fingerprint library (camid library) ------------------------------------------------------
#: catalogue schema version this camid writes (older catalogues are migrated on open, newer ones refused)
LIBRARY_SCHEMA_VERSION = 2
#: screening miss rate: a genuine pair whose full-frame PCE reaches the decision threshold is shortlisted with
#: probability at least 1 - this, under the signal model below
LIBRARY_SCREEN_MISS = 1e-3
#: signal model of the screen: its z (zero-shift NCC * sqrt(n) on the compact form) is ``retained *
#: sqrt(PCE) + e`` with ``e ~ N(0, LIBRARY_SCREEN_SPREAD^2)``: one null standard deviation covers what separates
#: the two statistics (float16 rounding, the PCE's energy estimate, residuals that are not quite white)
LIBRARY_SCREEN_SPREAD = 1.0
#: fraction of the full-frame z the default compact form keeps (full frame in float16: rounding only, about
#: 3e-4 of the z; kept as 0.999 to cover it)
LIBRARY_SCREEN_RETAINED = 0.999
#: false-alarm probability of any false link in ``camid library link`` (fingerprint against fingerprint)
LIBRARY_LINK_PFA = 1e-6
#: most query images per chunk of a library search: each pass over the library's rows serves a whole chunk
LIBRARY_CHUNK_LIMIT = 32

# -- choices ---------------------------------------------------------------------------------------
METHOD_CHOICES = ("pce", "mahalanobis", "both")
ROTATION_CHOICES = ("auto", "all", "none")
NATURAL_MODES = ("aligned", "paper")
BACKEND_CHOICES = ("auto", "numpy", "torch")
#: working precision of batch runs (--precision). float32: about 3.5x faster on the NumPy backend at full
#: frame, residuals within ~1e-4 (0..255) of float64, the same decisions (tests/backend/test_numpy_fast.py);
#: float64 is the reference, selectable for reproducibility. The Python API (a backend named by string, e.g.
#: ``extract_residual(x, backend="numpy")``) is the other rule: each backend's own default, float64 on NumPy
#: (``backend.NUMPY_DTYPE``) and float32 on torch; it stays in ``backend`` because config sits above it.
PRECISION = "float32"
PRECISION_CHOICES = ("float32", "float64")
KIND_CHOICES = ("auto", "flat", "natural")
#: JPEG decoder: "auto" = the GPU (nvJPEG via torchvision) when the backend is torch on CUDA and torchvision
#: is installed, else the CPU; "gpu" insists (an error without CUDA); files the GPU cannot take use the CPU
DECODE_CHOICES = ("auto", "cpu", "gpu")
#: the default of each choice above, for the command line and the dataclasses below alike
METHOD = "pce"  # the decision; the Mahalanobis method on request (--method both), in demo and evaluate --paper
ROTATIONS = "auto"
NATURAL_MODE = "aligned"
BACKEND = "auto"
KIND = "auto"
DECODE = "auto"
GRAM_PRECISION = "auto"
#: decoding processes (--workers)
WORKERS = 1


#: sanity bounds of the numeric parameters (checked at the edge: nothing outside reaches the maths)
MAX_SIGMA = 255.0
MAX_PCE_THRESHOLD = 1e9


def is_finite_number(value: Any) -> bool:
    """A finite int or float (NumPy's too; not a bool): the one test of "a finite number", for parameters,
    records and the report."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def _plain_numbers(obj: Any) -> None:
    """Replace NumPy scalars in the fields of the frozen dataclass ``obj`` by Python numbers: the checks
    accept both, the JSON records take only the latter."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.generic):
            object.__setattr__(obj, f.name, value.item())


#: smallest memory budget accepted (--max-host-memory, --max-gpu-memory), bytes
MIN_MEMORY_BUDGET = 1 << 20
#: images per step of a fingerprint's ML accumulation (camera and cluster fingerprints), at most: the count
#: before budgets applied (a step holds that many whole frames; a smaller budget gives smaller steps)
FINGERPRINT_BATCH = 4
#: disputed images per Dask task of ``identify --dask`` (``--chunk`` when fixed); a task scores them in chunks
#: within the budget
DASK_IMAGES_PER_TASK = 8


#: deepest wavelet decomposition accepted (Binghamton uses 4); each level also needs the image to be at least
#: 2**levels samples on its short side (the mirror padding grows to a multiple of 2**levels: levels=20 on a
#: small image asked for an 8 TiB array)
MAX_LEVELS = 8


def check_levels(levels: Any, shape: tuple[int, ...] | None = None) -> None:
    """The DWT depth: a whole number in [1, MAX_LEVELS] and, given an image ``shape`` (rows, columns, ...),
    ``2**levels`` at most its short side. The one check of the command line, :class:`Params` and the API."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels (--levels) must be a whole number from 1 to {MAX_LEVELS}, got {levels!r}")
    if shape is not None and min(shape[:2]) < 2 ** levels:
        raise ValueError(f"levels (--levels) {levels} needs images of at least {2 ** levels} pixels on the short "
                         f"side (2**levels), got {shape[0]}x{shape[1]}")


def check_sigma(name: str, value: Any) -> None:
    """A denoiser noise std on the 0..255 scale: finite, in (0, MAX_SIGMA] (inf gave NaN residuals, 1e300 an
    OverflowError)."""
    if not is_finite_number(value) or not 0 < value <= MAX_SIGMA:
        raise ValueError(f"{name} (--{name.replace('_', '-')}) must be a finite number in (0, {MAX_SIGMA:g}] "
                         f"(0..255 scale), got {value!r}")


@dataclass(frozen=True)
class Params:
    """Every parameter that shapes a result. Defaults follow the two source methods.

    pce_clip : geometry of the PCE method: a centre clipping (rows, columns) of references and disputed
        images, or None = the full sensor frame (default, as Binghamton's getFingerprint and PCE).
    mahalanobis_clip : geometry of the Mahalanobis method (default the paper's 1000x1000 centre clipping;
        None = full frame).
    clip : (constructor only) one geometry for both methods, e.g. ``Params(clip=(1000, 1000))`` as the
        command line's ``--clip``; it overrides ``pce_clip`` and ``mahalanobis_clip`` (and reads back as
        "per-method": the geometry is in the two fields).
    sigma_fingerprint : denoiser noise std (0..255) for reference residuals of the PCE method
        (Binghamton getFingerprint: 3).
    sigma_query : the same for disputed images in the PCE method (Binghamton example: 2).
    sigma_mahalanobis : the same for both sides of the Mahalanobis method (the paper: 2).
    refs : reference images per camera (first ``refs`` in sorted order; the paper's R = 15);
        None = all of them (default; fewer than RECOMMENDED_REFERENCES gives a warning).
    pce_threshold : "same camera" when PCE exceeds it (60).
    shift_range : peak search range (rows, columns) of the PCE; (0, 0) = no shift; None = all.
    rotations : "auto" (0 degrees when the orientation matches the fingerprint's, else 0/90/180/270),
        "all" (always the four) or "none".
    natural_mode : "aligned" (default) or "paper" pixel selection for natural images (method 2).
    search_scales : (low, high, step) to search downscaled and/or cropped images (Goljan & Fridrich,
        ``camid_gpu.prnu.search``) against full-frame fingerprints (``clip=None``); None = no search.
    """

    pce_clip: tuple[int, int] | None = PCE_CLIP
    mahalanobis_clip: tuple[int, int] | None = MAHALANOBIS_CLIP
    sigma_fingerprint: float = SIGMA_FINGERPRINT
    sigma_query: float = SIGMA_QUERY
    sigma_mahalanobis: float = SIGMA_MAHALANOBIS
    levels: int = DEFAULT_LEVELS
    wavelet: str = DEFAULT_WAVELET
    refs: int | None = None
    pce_threshold: float = PCE_THRESHOLD
    shift_range: tuple[int, int] | None = SHIFT_RANGE
    rotations: str = ROTATIONS
    natural_mode: str = NATURAL_MODE
    search_scales: tuple[float, float, float] | None = None
    clip: InitVar[Any] = "per-method"

    def __post_init__(self, clip: Any):
        _plain_numbers(self)
        if not (isinstance(clip, str) and clip == "per-method"):  # one geometry for both methods
            object.__setattr__(self, "pce_clip", clip)
            object.__setattr__(self, "mahalanobis_clip", clip)
        for name in ("pce_clip", "mahalanobis_clip"):
            value = getattr(self, name)
            if isinstance(value, list):  # e.g. read back from JSON
                value = tuple(value)
                object.__setattr__(self, name, value)
            if value is not None and not (isinstance(value, tuple) and len(value) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in value)):
                raise ValueError(f"{name} must be None (full frame) or (rows, columns) >= 16, got {value!r}")
        if self.rotations not in ROTATION_CHOICES:
            raise ValueError(f"rotations must be 'auto', 'all' or 'none', got {self.rotations!r}")
        if self.natural_mode not in NATURAL_MODES:
            raise ValueError(f"natural_mode must be 'aligned' or 'paper', got {self.natural_mode!r}")
        if self.refs is not None and (not isinstance(self.refs, int) or self.refs < 1):
            raise ValueError(f"refs (--refs) must be a whole number >= 1 or 'all', got {self.refs!r}")
        for name in ("sigma_fingerprint", "sigma_query", "sigma_mahalanobis"):
            check_sigma(name, getattr(self, name))
        if not is_finite_number(self.pce_threshold) or not 0 < self.pce_threshold <= MAX_PCE_THRESHOLD:
            raise ValueError(f"pce_threshold (--pce-threshold) must be a finite number in (0, {MAX_PCE_THRESHOLD:g}], "
                             f"got {self.pce_threshold!r}")
        check_levels(self.levels)
        if self.shift_range is not None and (len(self.shift_range) != 2 or min(self.shift_range) < 0):
            raise ValueError(f"shift_range (--shift-range) must be N >= 0, HxW or 'all', got {self.shift_range!r}")
        if self.search_scales is not None:
            lo, hi, step = self.search_scales
            if not all(is_finite_number(v) for v in (lo, hi, step)) or not (0 < lo <= hi <= 1 and step > 0):
                raise ValueError(f"search_scales (--search-scales) must be LO:HI:STEP with 0 < LO <= HI <= 1 and "
                                 f"STEP > 0, got {self.search_scales!r}")

    def clip_of(self, method: str) -> tuple[int, int] | None:
        """The geometry of ``method`` ("pce" or "mahalanobis"): a centre clipping, or None = full frame."""
        if method not in ("pce", "mahalanobis"):
            raise ValueError(f"method must be 'pce' or 'mahalanobis', got {method!r}")
        return self.pce_clip if method == "pce" else self.mahalanobis_clip

    def fingerprint_params(self) -> dict[str, Any]:
        """The parameters recorded in (and checked against) a stored fingerprint."""
        return {"sigma_fingerprint": self.sigma_fingerprint, "sigma_mahalanobis": self.sigma_mahalanobis,
                "levels": self.levels, "wavelet": self.wavelet}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples as lists); :meth:`from_dict` inverts it."""
        d = asdict(self)
        for name in ("pce_clip", "mahalanobis_clip"):
            d[name] = list(d[name]) if d[name] else None
        d["shift_range"] = list(self.shift_range) if self.shift_range is not None else None
        d["search_scales"] = list(self.search_scales) if self.search_scales is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Params":
        """The inverse of :meth:`to_dict`: ``Params.from_dict(p.to_dict()) == p``.

        A record written before the per-method geometry (one ``clip`` for both methods) is read as that
        geometry for both methods.
        """
        d = dict(d)
        if "clip" in d:  # the format of camid before the per-method geometry
            d["clip"] = tuple(d["clip"]) if d.get("clip") else None
        for name in ("pce_clip", "mahalanobis_clip"):
            if name in d:
                d[name] = tuple(d[name]) if d[name] else None
        d["shift_range"] = tuple(d["shift_range"]) if d.get("shift_range") is not None else None
        d["search_scales"] = tuple(d["search_scales"]) if d.get("search_scales") is not None else None
        return cls(**d)


@dataclass(frozen=True)
class InputLimits:
    """Limits on one input file, checked before reading (file size) and before decoding (declared size).

    max_file_bytes : largest file read, bytes.
    max_decoded_bytes : largest decoded image, bytes of samples (rows x columns x channels x bytes/sample).
    max_pixels : largest decoded image, pixels.
    """

    max_file_bytes: int = MAX_FILE_BYTES
    max_decoded_bytes: int = MAX_DECODED_BYTES
    max_pixels: int = MAX_PIXELS

    def __post_init__(self):
        for name in ("max_file_bytes", "max_decoded_bytes", "max_pixels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")


@dataclass(frozen=True)
class ClusterParams:
    """Every parameter that shapes a clustering (``camid cluster``).

    region : side of the centred square compared (the largest up to this); None = the full frame; "auto" = chosen
             from the frames and a budget when the run starts (:data:`CLUSTER_REGION`).
    pfa : probability of any false link in the whole set, Sidak-corrected per comparison: split between the pair
          stage and the fingerprint refinement (:data:`CLUSTER_PFA_PAIRS_SHARE`), each with its own count of
          comparisons (the refinement's an upper bound fixed before it starts).
    sigma, levels, wavelet : the residual denoiser (as for fingerprints: sigma 3 on the 0..255 scale).
    precision : Gram products: "auto" (float16 on CUDA, float32 elsewhere), "float32" or "float16".
    max_rounds : fingerprint merge/attach rounds at most.
    """

    region: int | str | None = CLUSTER_REGION
    pfa: float = CLUSTER_PFA
    sigma: float = SIGMA_FINGERPRINT
    levels: int = DEFAULT_LEVELS
    wavelet: str = DEFAULT_WAVELET
    precision: str = GRAM_PRECISION
    max_rounds: int = CLUSTER_MAX_ROUNDS

    def __post_init__(self):
        _plain_numbers(self)
        if self.region is not None and self.region != "auto" and (
                not isinstance(self.region, int) or isinstance(self.region, bool) or self.region < CLUSTER_MIN_REGION):
            raise ValueError(f"region must be 'auto', 'full' or at least {CLUSTER_MIN_REGION}, got {self.region!r}")
        if not 0.0 < self.pfa < 1.0:
            raise ValueError(f"pfa must lie in (0, 1), got {self.pfa!r}")
        check_sigma("sigma", self.sigma)
        if self.precision not in GRAM_PRECISIONS:
            raise ValueError(f"precision must be one of {GRAM_PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint_params(self) -> dict[str, Any]:
        """Parameters recorded in the cluster fingerprints (as ``camid fingerprint`` records them)."""
        return Params(sigma_fingerprint=self.sigma, levels=self.levels, wavelet=self.wavelet).fingerprint_params()


@dataclass
class RunConfig:
    """How to run (never what to compute: that is :class:`Params`)."""

    backend: str = BACKEND
    device: str | None = None
    workers: int = WORKERS
    max_host_memory: int | None = None
    max_gpu_memory: int | None = None
    progress: bool | None = None
    dask: str | None = None  # Dask scheduler (--dask): 'local', 'local:N' or an address; None = this process
    chunk: int | None = None  # fixed chunk size (testing); None = from the memory budget
    precision: str = PRECISION
    limits: InputLimits = field(default_factory=InputLimits)  # per input file, before reading/decoding
    decode: str = DECODE  # JPEG decoder, one of DECODE_CHOICES
    log: list[str] = field(default_factory=list)

    def __post_init__(self):
        for name in ("max_host_memory", "max_gpu_memory"):
            value = getattr(self, name)
            if value is not None and value < MIN_MEMORY_BUDGET:  # under it, chunk sizing had no budget left
                raise ValueError(f"{name.replace('_', '-')} must be at least {MIN_MEMORY_BUDGET >> 20}M, "
                                 f"got {value} bytes")
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {self.precision!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers (--workers) must be a whole number >= 1, got {self.workers!r}")
        for name in ("max_host_memory", "max_gpu_memory"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be a positive number of bytes, "
                                 f"got {value!r}")
        if self.dask is not None:
            parse_dask(self.dask)

    def backend_obj(self) -> Backend:
        return get_backend(self.backend, device=self.device, dtype=self.precision)


def methods_of(method: str) -> tuple[str, ...]:
    """``"pce"``, ``"mahalanobis"`` or ``"both"`` -> the methods to run, PCE first."""
    if method not in METHOD_CHOICES:
        raise ValueError(f"method must be one of {METHOD_CHOICES}, got {method!r}")
    return ("pce", "mahalanobis") if method == "both" else (method,)


# -- parsers of the textual forms (command line, manifests) -----------------------------------------
def parse_clip(value: str | int | tuple[int, int] | None) -> tuple[int, int] | None:
    """Parse a clipping size: ``1000``, ``"1000"``, ``"768x1024"`` (rows x columns), ``"full"``/None."""
    if value is None or (isinstance(value, str) and value.lower() in ("full", "none", "")):
        return None
    if isinstance(value, int):
        h = w = value
    elif isinstance(value, tuple):
        h, w = value
    else:
        parts = str(value).lower().split("x")
        try:
            h, w = (int(parts[0]),) * 2 if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        except ValueError:
            raise ValueError(f"clip (--clip) must be N, HxW or 'full', got {value!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"clip must be at least 16x16, got {h}x{w}")
    return int(h), int(w)


def parse_pair(text: str) -> tuple[int, int]:
    """``"N"`` -> (N, N); ``"HxW"`` -> (H, W)."""
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected N or HxW (whole numbers), got {text!r}") from None
    if len(values) > 2 or min(values) < 0:
        raise ValueError(f"expected N or HxW (whole numbers >= 0), got {text!r}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def parse_shift_range(text: str) -> tuple[int, int] | None:
    """``"all"`` -> None (every shift); ``"N"`` or ``"HxW"`` -> shifts 0..N."""
    return None if str(text).lower() == "all" else parse_pair(text)


def parse_refs(text: str | int) -> int | None:
    """``"all"`` -> None (every reference); else the count."""
    if str(text).lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--refs must be a whole number or 'all', got {text!r}") from None


def parse_dask(text: str) -> str:
    """Check a ``--dask`` scheduler: ``local``, ``local:N`` (N >= 1 workers) or ``tcp://HOST:PORT``."""
    if text == "local" or text.startswith(("tcp://", "tls://", "ucx://")):
        return text
    if text.startswith("local:"):
        count = text.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--dask local:N needs N >= 1 workers, got {text!r}")
        return text
    raise ValueError(f"--dask must be 'local', 'local:N' or tcp://HOST:PORT, got {text!r}")


def parse_scales(text: str | None) -> tuple[float, float, float] | None:
    """``"LO:HI:STEP"`` (e.g. ``0.5:1.0:0.01``) -> (lo, hi, step); None -> None."""
    if text is None:
        return None
    try:
        lo, hi, step = (float(v) for v in text.split(":"))
        if not all(math.isfinite(v) for v in (lo, hi, step)) or not (0 < lo <= hi <= 1 and step > 0):
            raise ValueError
    except ValueError:
        raise ValueError(f"--search-scales must be LO:HI:STEP such as 0.5:1.0:0.01, got {text!r}") from None
    return lo, hi, step


def parse_bytes(text: str | int | None) -> int | None:
    """'8G', '512M', '1.5GiB', 1000 -> bytes."""
    if text is None or isinstance(text, int):
        return text
    s = str(text).strip().upper().replace("IB", "").rstrip("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        value = float(s[:-1]) * scale[s[-1]] if s and s[-1] in scale else float(s)
        if not math.isfinite(value) or not 0 < value < 2 ** 62:
            raise ValueError
        return int(value)
    except ValueError:
        raise ValueError(f"memory size must look like 8G, 512M or a number of bytes (finite, positive); "
                         f"got {text!r}") from None

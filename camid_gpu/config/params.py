"""The parameter types: :class:`Params` (what to compute: it shapes every number in a result and is recorded
with it), :class:`InputLimits`, :class:`ClusterParams`, :class:`RunConfig` (how to run: backend, workers,
memory; never changes a result). Their defaults come from :mod:`.defaults`, their checks from :mod:`.checks`."""
from __future__ import annotations

from dataclasses import InitVar, asdict, dataclass, field
from typing import Any

from camid_gpu.config.checks import *  # noqa: F403
from camid_gpu.config.checks import _plain_numbers
from camid_gpu.config.defaults import *  # noqa: F403


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
    search_crops : crop-search larger sensors also for an image whose size is the native frame of a compared
        camera (``--search-crops``); by default such an image is compared at full frame with those cameras only.
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
    search_crops: bool = SEARCH_CROPS
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
        if not isinstance(self.search_crops, bool):
            raise ValueError(f"search_crops (--search-crops) must be True or False, got {self.search_crops!r}")
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
            object.__setattr__(self, name, check_whole_number(name, value))


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
        object.__setattr__(self, "workers", check_whole_number("workers", self.workers, option="--workers"))
        for name in ("max_host_memory", "max_gpu_memory"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be a positive number of bytes, "
                                 f"got {value!r}")
        if self.dask is not None:
            parse_dask(self.dask)

"""The checks of parameter values and the parsers of their textual forms (command line, manifests): one test
of each thing (a finite number, a wavelet depth, a sigma, a clip, a byte size ...)."""
from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import numpy as np

from camid_gpu.config.defaults import *  # noqa: F403 (the bounds the checks use)

__all__ = ["is_finite_number", "is_whole_number", "check_whole_number", "check_levels", "check_sigma", "methods_of", "parse_clip", "parse_pair",
           "parse_shift_range", "shift_range_text", "parse_refs", "parse_dask", "parse_scales", "parse_bytes"]


def is_finite_number(value: Any) -> bool:
    """A finite int or float (NumPy's too; not a bool): the one test of "a finite number", for parameters,
    records and the report."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def is_whole_number(value: Any) -> bool:
    """An int (NumPy's too; not a bool, not 2.0): the one test of "a whole number"."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_whole_number(name: str, value: Any, minimum: int = 1, option: str | None = None) -> int:
    """A count or size given as ``name`` (the API's argument; ``option`` the command line's, when it has one):
    a whole number at least ``minimum``, returned as a Python int (``batch_size=2.5`` and ``camera_chunk=0``
    gave bare Python errors deep inside; ``np.int64(3)`` is a whole number)."""
    if not is_whole_number(value) or value < minimum:
        where = f"{name} ({option})" if option else name
        raise ValueError(f"{where} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _plain_numbers(obj: Any) -> None:
    """Replace NumPy scalars in the fields of the frozen dataclass ``obj`` by Python numbers: the checks
    accept both, the JSON records take only the latter."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.generic):
            object.__setattr__(obj, f.name, value.item())


def check_levels(levels: Any, shape: tuple[int, ...] | None = None) -> None:
    """The DWT depth: a whole number in [1, MAX_LEVELS] and, given an image ``shape`` (rows, columns, ...),
    ``2**levels`` at most its short side. The one check of the command line, :class:`Params` and the API."""
    if not is_whole_number(levels) or not 1 <= levels <= MAX_LEVELS:
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


def shift_range_text(pair: tuple[int, int] | None) -> str:
    """A shift range as ``--shift-range`` reads it (:func:`parse_shift_range`'s inverse): 'all', N or HxW."""
    return "all" if pair is None else str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


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


def parse_frames(selection: Any) -> str | int:
    """``--frames``: ``"i"`` (intra frames), ``"all"`` or a positive frame count; ValueError otherwise."""
    if isinstance(selection, str) and selection.strip().lower() in ("i", "all"):
        return selection.strip().lower()
    try:
        count = int(str(selection))
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise ValueError(f"--frames must be i (intra frames), all, or a positive number of frames; got {selection!r}")
    return count
__all__ += ["parse_frames"]

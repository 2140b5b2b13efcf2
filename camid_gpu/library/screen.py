"""Screening: every (image, camera) pair of compatible geometry scored on the compact form, in batched products.

**Statistic.** For one image view (a rotation, clipped to the camera's PCE geometry) with Wiener-filtered
residual ``W`` and gray intensity ``I``, and a fingerprint row ``K`` (``K / rms(K)`` stored in float16), the
screen computes the zero-shift normalised correlation that PCE's correlation plane has at shift (0, 0)::

    NCC = sum((W - mean W) I K) / (|W - mean W| * |I K - mean(I K)|),   z = NCC * sqrt(n)

from three query rows per view, ``q = (W - mean W) I``, ``I`` and ``I^2``, against the library rows ``K`` and
``K^2``: ``sum(q K)``, ``sum(I K)`` and ``sum(I^2 K^2)`` give the numerator and ``|I K - mean|^2 = sum(I^2 K^2) -
sum(I K)^2 / n``. So a chunk of query views against a chunk of library rows is two matrix products (BLAS sgemm
on the CPU, torch on a device, through :class:`camid_gpu.cluster.similarity.GramEngine` in float32: the
``I^2`` rows would overflow float16).

**Threshold** (:func:`screen_threshold`). The decision threshold of an image compared with ``N`` cameras is
Sidak's: the per-comparison false-alarm probability of the PCE threshold ``T`` (``alpha_1 = Q(sqrt(T))``, what
``identify`` applies to each camera) is shared over the ``N`` cameras, ``alpha_N = 1 - (1 - alpha_1)^(1/N)``,
and the decision needs ``PCE > T_N = Q^-1(alpha_N)^2`` (``T_1 = T``: one camera, identify's rule). Signal model:
a genuine pair's screen z is ``retained * sqrt(PCE) + e``, ``e ~ N(0, spread^2)`` (config
``LIBRARY_SCREEN_RETAINED``, ``LIBRARY_SCREEN_SPREAD``). A pair at the decision threshold is shortlisted with
probability ``1 - miss`` when ``z >= tau = retained * sqrt(T_N) - Q^-1(miss) * spread``. Null model: ``z ~
N(0, 1)``; the expected number of cameras shortlisted by chance is ``N * Q(tau)``, recorded with the threshold.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import Backend
from camid_gpu.cluster.similarity import GramEngine
from camid_gpu.cluster.threshold import comparison_level
from camid_gpu.config import LIBRARY_SCREEN_MISS, LIBRARY_SCREEN_RETAINED, LIBRARY_SCREEN_SPREAD
from camid_gpu.prnu.decision import union_bound

#: what the default compact form is (recorded in every search)
SCREEN_FORM = "full PCE frame, K / rms(K) in float16; products in float32"


@dataclass(frozen=True)
class ScreenThreshold:
    """The decision and screening thresholds of an image compared with ``cameras`` library cameras."""

    cameras: int
    pce_threshold: float          # T: identify's per-comparison threshold
    alpha_one: float              # Q(sqrt(T))
    alpha_camera: float           # Sidak's level per camera over ``cameras``
    decision_pce: float           # T_N
    miss: float
    retained: float
    spread: float
    z: float                      # tau: shortlisted when the screen z reaches it
    expected_false_shortlists: float
    form: str = SCREEN_FORM

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def screen_threshold(cameras: int, pce_threshold: float, miss: float = LIBRARY_SCREEN_MISS,
                     retained: float = LIBRARY_SCREEN_RETAINED, spread: float = LIBRARY_SCREEN_SPREAD) -> ScreenThreshold:
    from scipy import special  # on first use: scipy.special costs ~0.3 s of every start-up

    if not 0.0 < miss < 0.5:
        raise ValueError(f"the screening miss rate must lie in (0, 0.5), got {miss!r}")
    n = max(int(cameras), 1)
    alpha_one = float(special.ndtr(-math.sqrt(pce_threshold)))
    alpha = comparison_level(alpha_one, n) if n > 1 else alpha_one
    decision = float(pce_threshold) if n == 1 else max(float(pce_threshold), float(special.ndtri(alpha)) ** 2)
    tau = retained * math.sqrt(decision) - float(-special.ndtri(miss)) * spread
    return ScreenThreshold(cameras=n, pce_threshold=float(pce_threshold), alpha_one=alpha_one, alpha_camera=alpha,
                           decision_pce=decision, miss=float(miss), retained=float(retained), spread=float(spread),
                           z=tau, expected_false_shortlists=n * float(special.ndtr(-tau)))


def library_log10_pfa(log10_p: float | None, cameras: int) -> float | None:
    """log10 of Sidak's ``1 - (1 - p)^N``: a camera's false-alarm probability counted over the ``N`` cameras."""
    if log10_p is None or not math.isfinite(log10_p):
        return log10_p
    p = 10.0 ** log10_p
    if p < 1e-12:  # Sidak's and Bonferroni's agree here; the latter without the rounding of 1 - p
        return union_bound(log10_p, cameras)
    return math.log10(-math.expm1(cameras * math.log1p(-min(p, 1 - 1e-16))))


def query_rows(residuals: np.ndarray, intensities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For views ``(m, h, w)``: the rows ``[q; I]`` ``(2m, n)``, ``I^2`` ``(m, n)`` (float32) and ``|W - mean W|``."""
    m = residuals.shape[0]
    w = residuals.reshape(m, -1).astype(np.float64)
    w = w - w.mean(axis=1, keepdims=True)
    i = intensities.reshape(m, -1).astype(np.float64)
    first = np.concatenate([w * i, i]).astype(np.float32)
    return first, (i * i).astype(np.float32), np.sqrt(np.einsum("ij,ij->i", w, w))


class TileBuffers:
    """Buffers reused from tile to tile: the float16 rows as read, their float32 copy and its square (fresh
    gigabyte-sized arrays per tile cost as much in page faults as the products)."""

    def __init__(self):
        self.shape: tuple[int, int] | None = None

    def get(self, rows: int, pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.shape is None or self.shape[0] < rows or self.shape[1] != pixels:
            self.shape = (rows, pixels)
            self.raw = np.empty(self.shape, np.float16)
            self.k = np.empty(self.shape, np.float32)
            self.k2 = np.empty(self.shape, np.float32)
        return self.raw[:rows], self.k[:rows], self.k2[:rows]


def _convert(rows: np.ndarray, k: np.ndarray, k2: np.ndarray) -> None:
    """``k = float32(rows)``, ``k2 = k^2``, in as many threads as CPUs (NumPy releases the GIL on these
    memory-bound loops, which cost as much as the products on the CPU)."""
    from concurrent.futures import ThreadPoolExecutor

    def part(lo: int, hi: int) -> None:
        np.copyto(k[lo:hi], rows[lo:hi])
        np.multiply(k[lo:hi], k[lo:hi], out=k2[lo:hi])

    threads = max(1, min(8, os.cpu_count() or 1, rows.shape[0]))
    bounds = np.linspace(0, rows.shape[0], threads + 1).astype(int)
    if threads == 1:
        part(0, rows.shape[0])
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(part, bounds[:-1], bounds[1:]))


def tile_products(engine: GramEngine, first: np.ndarray, squares: np.ndarray, rows: np.ndarray,
                  buffers: TileBuffers | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[q; I] K^T`` and ``I^2 (K^2)^T`` of one query block against library rows ``K`` (float16 ``(c, n)``)."""
    _, k, k2 = (buffers or TileBuffers()).get(*rows.shape)
    _convert(rows, k, k2)
    # library rows on the left: OpenBLAS multiplies (c, n) x (n, m) about 10x faster than (m, n) x (n, c) for a
    # few query rows (measured: 1000 x 4096 against 16 rows, 32 ms against 320 ms)
    a = engine.product(engine.upload(k), engine.upload(first)).T
    b = engine.product(engine.upload(k2), engine.upload(squares)).T
    return a, b


def z_scores(a: np.ndarray, b: np.ndarray, w_norms: np.ndarray, pixels: int) -> np.ndarray:
    """z ``(m, c)`` from :func:`tile_products` (float64 arithmetic); a degenerate view gives 0."""
    m = w_norms.shape[0]
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    numerator, sums = a64[:m], a64[m:]
    energy = np.maximum(b64 - sums * sums / pixels, 0.0)
    denominator = w_norms[:, None] * np.sqrt(energy)
    safe = np.where(denominator > 0, denominator, np.inf)
    return numerator / safe * math.sqrt(pixels)


def tile_task(path: str, pixels: int, index: Sequence[int], first: np.ndarray, squares: np.ndarray,
              backend: str, device: str | None, hashes: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One screening tile in this process (a Dask task): library rows ``index`` of the screening file at ``path``,
    each checked against its catalogue SHA-256 ``hashes`` as read (:func:`checked_rows`); returns the products
    and the positions of the rows that differ (zeroed: they score nothing)."""
    from camid_gpu.backend import get_backend

    engine = GramEngine(get_backend(backend, device=device), "float32")
    buffers = TileBuffers()
    rows, bad = checked_rows(path, pixels, index, hashes, buffers)
    return (*tile_products(engine, first, squares, rows, buffers), bad)


def checked_rows(path: str, pixels: int, index: Sequence[int], hashes: Sequence[str],
                 buffers: TileBuffers) -> tuple[np.ndarray, list[int]]:
    """Rows ``index`` of a screening file, read into the tile buffer, and the positions of those whose SHA-256
    is not the catalogue's (hashed in the streaming read: each row once, while it is in cache)."""
    from camid_gpu.library.arrays import read_screen_rows, screen_row_mismatches

    rows = read_screen_rows(path, pixels, np.asarray(index), buffers.get(len(index), pixels)[0])
    return rows, screen_row_mismatches(rows, hashes) if len(hashes) else []


def chunk_rows(pixels: int, budget: int | None, limit: int = 4096) -> int:
    """Library rows per tile so that the float16 rows, their float32 and squared copies fit ``budget``."""
    if not budget:
        return limit
    return int(max(1, min(limit, budget // max(pixels * (2 + 4 + 4), 1))))


def engine_for(bk: Backend) -> GramEngine:
    return GramEngine(bk, "float32")

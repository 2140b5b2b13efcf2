"""All-pairs similarity of noise residuals: normalised cross-correlation at zero shift, as a tiled Gram.

Every residual row ``x`` (one image's Wiener-filtered residual over the group's common region,
flattened, ``n`` pixels) is made zero-mean and unit-norm once (:func:`normalise_rows`); the NCC of
two images is then the dot product of their rows, and all pairs are the Gram matrix ``X X^T``.
It is computed in square tiles of ``tile`` rows, so at most two ``(tile, n)`` row blocks and one
``(tile, tile)`` product are on the device at a time; the rows stay in host memory (or a memory-mapped
file) and are streamed to the device tile by tile.

Precision: on CUDA the row blocks travel and multiply in float16 (tensor cores, float32 accumulation),
elsewhere in float32 (BLAS sgemm). ``tests/cluster/test_cluster_similarity.py`` measures the NCC error of
float16 and bfloat16 inputs against the null spread ``1/sqrt(n)`` (about 3e-4 and 3e-3 of it,
rms): float16 is negligible and is the CUDA choice; bfloat16 is 10x worse and is not used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from camid_gpu.backend import Backend
from camid_gpu.config import GRAM_PRECISIONS

#: half-precision rows are scaled by this before the cast (kept normal for float16 at n up to ~16M pixels;
#: the Gram is divided by its square afterwards, so values stay far below float16's 65504)
HALF_SCALE = 16.0

#: a function returning rows [start, stop) of a row store as a host float32 array (stop - start, n)
RowSource = Callable[[int, int], np.ndarray]


def normalise_rows(rows: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm float32 rows ``(N, n)`` (float64 arithmetic); an all-zero row stays zero."""
    x = np.asarray(rows, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def resolve_precision(bk: Backend, precision: str = "auto") -> str:
    """``float16`` on a CUDA device with ``auto``, else ``float32``; checks the name."""
    if precision not in GRAM_PRECISIONS:
        raise ValueError(f"Gram precision must be one of {GRAM_PRECISIONS}, got {precision!r}")
    on_cuda = str(getattr(bk, "device", "cpu")).startswith("cuda")
    if precision == "float16" and not on_cuda:
        raise ValueError("float16 Gram products need a CUDA device (CPUs gain nothing from them)")
    return "float16" if precision == "auto" and on_cuda else ("float32" if precision == "auto" else precision)


@dataclass
class GramEngine:
    """Products of row blocks on one backend in one precision (the backend's ``gram_upload``/``gram_product``).

    ``numpy`` backends multiply on the host in float32 (BLAS); torch backends on their device.
    """

    bk: Backend
    precision: str = "float32"

    def upload(self, block: np.ndarray):
        return self.bk.gram_upload(block, HALF_SCALE if self.precision == "float16" else None)

    def product(self, a, b) -> np.ndarray:
        """``a b^T`` of two uploaded blocks as a host float32 array."""
        return self.bk.gram_product(a, b, HALF_SCALE if self.precision == "float16" else None)


def tile_rows(pixels: int, budget_bytes: int | None, value_bytes: int = 4, limit: int = 4096) -> int:
    """Rows per tile so that two row blocks and their product fit ``budget_bytes`` (at least 1)."""
    if not budget_bytes:
        return limit
    # 2 blocks of t rows of n values, the t x t product, and the float32 upload staging of one block
    per_row = pixels * (2 * value_bytes + 4)
    t = budget_bytes // max(per_row, 1)
    while t > 1 and t * per_row + t * t * 4 > budget_bytes:
        t -= 1
    return int(max(1, min(limit, t)))


def tile_pairs(n_rows: int, tile: int, start_row: int = 0) -> list[tuple[int, int, int, int]]:
    """Upper-triangular tiles ``(i0, i1, j0, j1)`` (``i0 <= j0``) covering every pair of rows with at least
    one row ``>= start_row`` (all pairs when ``start_row`` is 0: the incremental case computes new rows only)."""
    bounds = [(s, min(s + tile, n_rows)) for s in range(0, n_rows, tile)]
    out = []
    for a, (i0, i1) in enumerate(bounds):
        for j0, j1 in bounds[a:]:
            if max(i1, j1) > start_row:
                out.append((i0, i1, j0, j1))
    return out


def gram_tiles(rows: RowSource, n_rows: int, engine: GramEngine, tile: int,
               start_row: int = 0) -> Iterator[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Yield ``((i0, i1, j0, j1), block)`` for the upper-triangular tiles of the Gram of ``n_rows`` rows.

    The row block of ``i`` is uploaded once and reused along its tile row.
    """
    current, a = None, None
    for key in tile_pairs(n_rows, tile, start_row):
        i0, i1, j0, j1 = key
        if current != (i0, i1):
            current, a = (i0, i1), engine.upload(rows(i0, i1))
        b = a if (j0, j1) == (i0, i1) else engine.upload(rows(j0, j1))
        yield key, engine.product(a, b)


def gram_matrix(rows: RowSource, n_rows: int, engine: GramEngine, tile: int,
                previous: np.ndarray | None = None) -> np.ndarray:
    """The full symmetric Gram ``(n_rows, n_rows)`` float32 on the host.

    ``previous``: the Gram of the first ``m`` rows from an earlier run; only pairs involving rows
    ``>= m`` are computed (incremental clustering).
    """
    out = np.zeros((n_rows, n_rows), dtype=np.float32)
    start = 0
    if previous is not None:
        start = previous.shape[0]
        out[:start, :start] = previous
    for (i0, i1, j0, j1), block in gram_tiles(rows, n_rows, engine, tile, start):
        out[i0:i1, j0:j1] = block
        out[j0:j1, i0:i1] = block.T
    return out


def cross_gram(a_rows: np.ndarray, b_rows: np.ndarray, engine: GramEngine, tile: int) -> np.ndarray:
    """``A B^T`` of two host row sets ``(Na, n)``, ``(Nb, n)`` in tiles -> ``(Na, Nb)`` float32."""
    out = np.zeros((a_rows.shape[0], b_rows.shape[0]), dtype=np.float32)
    for i0 in range(0, a_rows.shape[0], tile):
        a = engine.upload(a_rows[i0:i0 + tile])
        for j0 in range(0, b_rows.shape[0], tile):
            out[i0:i0 + tile, j0:j0 + tile] = engine.product(a, engine.upload(b_rows[j0:j0 + tile]))
    return out

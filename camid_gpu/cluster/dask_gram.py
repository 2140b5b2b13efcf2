"""The Gram of a group on a Dask cluster: every tile is one task.

A task reads its two row blocks from the group's residual file (``RUN/residuals/<group>.f32``, which
every worker must see at the same path: a shared file system, or one machine) and returns the
``(tile, tile)`` product. The tiles are the same as in one process (:func:`~camid_gpu.cluster.similarity.tile_pairs`)
and each is computed by the same :class:`~camid_gpu.cluster.similarity.GramEngine`, so the matrix, and
therefore the clusters, are the same as without Dask.
"""
from __future__ import annotations

import numpy as np

from camid_gpu._shared.optional import import_optional
from camid_gpu.backend import get_backend
from camid_gpu.cluster.similarity import GramEngine, tile_pairs


def tile_product(path: str, n_rows: int, pixels: int, key: tuple[int, int, int, int], backend: str,
                 device: str | None, precision: str) -> np.ndarray:
    """One Dask task: rows ``[i0, i1)`` times rows ``[j0, j1)`` of the row file at ``path``."""
    i0, i1, j0, j1 = key
    rows = np.memmap(path, dtype=np.float32, mode="r", shape=(n_rows, pixels))
    engine = GramEngine(get_backend(backend, device=device), precision)
    a = engine.upload(np.array(rows[i0:i1]))
    b = a if (j0, j1) == (i0, i1) else engine.upload(np.array(rows[j0:j1]))
    return engine.product(a, b)


def gram_on_dask(path: str, n_rows: int, pixels: int, tile: int, previous: np.ndarray | None, config,
                 precision: str) -> np.ndarray:
    """The symmetric Gram ``(n_rows, n_rows)`` float32 from tile tasks on ``config.dask``.

    ``previous``: the Gram of the first rows from an earlier run (only tiles with new rows are sent).
    """
    distributed = import_optional("dask.distributed", "dist", "--dask")
    from camid_gpu.engine.dask import dask_client

    out = np.zeros((n_rows, n_rows), dtype=np.float32)
    start = 0
    if previous is not None:
        start = previous.shape[0]
        out[:start, :start] = previous
    keys = tile_pairs(n_rows, tile, start)
    client, cluster = dask_client(distributed, config.dask, len(keys), config)
    try:
        futures = [client.submit(tile_product, path, n_rows, pixels, key, config.backend, config.device, precision,
                                 pure=False) for key in keys]
        for (i0, i1, j0, j1), fut in zip(keys, futures):
            block = fut.result()
            out[i0:i1, j0:j1] = block
            out[j0:j1, i0:i1] = block.T
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return out

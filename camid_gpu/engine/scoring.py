"""Scoring prepared disputed images chunk by chunk within the run's budget, the same in this process and on a
Dask worker (:class:`ChunkScorer`)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from camid_gpu.config import Params
from camid_gpu.engine.context import RunContext
from camid_gpu.engine.scheduler import is_out_of_memory, run_chunk_with_retry
from camid_gpu.pipeline import identify as ident
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline.records import error_entry
from camid_gpu.store import CameraFingerprint


class ChunkScorer:
    """Identifies prepared images (:class:`~camid_gpu.pipeline.prepare.Prepared`) against ``store`` in chunks of
    :attr:`size` images, sized from the run's memory budget for the largest frame any method works on. A chunk
    that runs out of memory is halved and retried (later chunks keep the smaller size); one image that does not
    fit even alone gets its error record and the run goes on."""

    def __init__(self, ctx: RunContext, store: Sequence[CameraFingerprint], params: Params, methods: Sequence[str]):
        self.ctx, self.store, self.params, self.methods = ctx, store, params, methods
        self.fp_cache: dict = {}  # fingerprints on the device, kept from chunk to chunk
        # the largest frame any method works on bounds a chunk's working set (fingerprints travel per camera chunk)
        frames = [int(np.prod(fp.shape_of(m))) for fp in store for m in methods if m in fp.methods]
        self.size = ctx.chunk(max(frames), len(store))

    def records(self, pending: Sequence[Any], uploads: Any = None) -> list[dict[str, Any]]:
        """The records of ``pending`` (prepared images and error records, in input order), in that order.

        ``uploads``: the staged uploads of exactly the prepared images of ``pending``
        (:func:`~camid_gpu.pipeline.identify.stage_chunk`), or None; a retried half uploads again."""
        bk = self.ctx.backend
        prepared = [x for x in pending if isinstance(x, prepare.Prepared)]

        def compute(items):  # the staged uploads hold the whole chunk; an out-of-memory retry re-uploads halves
            try:
                return ident.identify_chunk(bk, self.store, items, self.params, self.methods, self.fp_cache,
                                            uploads if items is prepared else None)
            except (MemoryError, RuntimeError) as exc:
                if len(items) > 1 or not is_out_of_memory(exc):
                    raise  # a chunk is halved and retried by run_chunk_with_retry
                bk.empty_cache()  # one image that does not fit even alone: that image's error, the run goes on
                return [error_entry(items[0].path, exc if isinstance(exc, MemoryError) else MemoryError(str(exc)))]

        scored = iter(run_chunk_with_retry(compute, prepared, self._halved, bk.empty_cache) if prepared else [])
        return [next(scored) if isinstance(x, prepare.Prepared) else x for x in pending]

    def _halved(self, size: int) -> None:
        self.size = size

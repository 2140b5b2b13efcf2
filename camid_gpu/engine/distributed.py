"""Running identification on a Dask cluster (``--cluster local|local:N|tcp://HOST:8786``).

One task identifies a batch of paths in a worker process (:func:`identify_paths_worker`) and returns its
records; the results come back in submission order, so the output does not depend on the cluster.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from camid_gpu._shared.optional import import_optional
from camid_gpu.backend import get_backend
from camid_gpu.config import InputLimits, Params, RunConfig
from camid_gpu.engine.scheduler import Progress
from camid_gpu.errors import CamidError
from camid_gpu.pipeline import identify as ident
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline.records import error_entry
from camid_gpu.store import load_stores


def identify_paths_worker(fp_dir: str, paths: Sequence[str], methods: Sequence[str], params_dict: dict[str, Any],
                          backend: str, device: str | None, kind: str, precision: str,
                          limits: InputLimits | None = None) -> list[dict[str, Any]]:
    """One Dask task: identify ``paths`` in this process and return their records in order."""
    store = load_stores(fp_dir, methods=tuple(methods))
    params = Params.from_dict(params_dict)
    bk = get_backend(backend, device=device, dtype=precision)
    sensor_shapes = sorted({fp.source_shape for fp in store})
    records = []
    for path in paths:
        try:
            item = prepare.prepare_disputed(path, params, sensor_shapes, kind, limits)
        except (CamidError, OSError, ValueError) as exc:
            records.append(error_entry(path, exc))
            continue
        records.extend(ident.identify_chunk(bk, store, [item], params, methods))
    return records


def identify_on_cluster(fp_dir: str, todo: Sequence[str], write: Callable[[list[dict[str, Any]]], None],
                        methods: Sequence[str], params: Params, config: RunConfig, kind: str, progress: Progress) -> None:
    """Identify ``todo`` on a Dask cluster (``config.cluster``), in batches of ``config.chunk or 8`` images;
    ``write`` receives each batch's records in input order."""
    distributed = import_optional("dask.distributed", "dist", "--cluster")
    per_task = config.chunk or 8
    batches = [todo[i:i + per_task] for i in range(0, len(todo), per_task)]
    client, cluster = dask_client(distributed, config.cluster)
    try:
        futures = [client.submit(identify_paths_worker, fp_dir, batch, list(methods), params.to_dict(),
                                 config.backend, config.device, kind, config.precision, config.limits,
                                 pure=False)
                   for batch in batches]
        for fut in futures:  # in submission order: deterministic output
            records = fut.result()
            write(records)
            progress.advance(len(records))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def dask_client(distributed, address: str):
    """``local``: one worker per GPU (dask-cuda) when available, else a LocalCluster of processes. Local clusters
    take free ports (dashboard included), so concurrent runs on one machine do not collide."""
    if address == "local":
        try:
            from dask_cuda import LocalCUDACluster  # type: ignore[import-not-found]

            cluster = LocalCUDACluster()
        except ImportError:
            cluster = distributed.LocalCluster(n_workers=max(1, min(4, os.cpu_count() or 1)), threads_per_worker=1,
                                               processes=True, dashboard_address=":0")
        return distributed.Client(cluster), cluster
    if address.startswith("local:"):
        n = int(address.split(":", 1)[1])
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
        return distributed.Client(cluster), cluster
    return distributed.Client(address), None

"""Running identification on a Dask cluster (``--dask local|local:N|tcp://HOST:8786``).

One task identifies a batch of paths in a worker process (:func:`identify_paths_worker`), within the run's
memory budget as in one process, and returns its records; the results come back in submission order, so the
output does not depend on the cluster.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

from camid_gpu._shared.optional import import_optional
from camid_gpu.config import DASK_IMAGES_PER_TASK, DASK_LOCAL_WORKERS, MIN_MEMORY_BUDGET, Params, RunConfig
from camid_gpu.engine.context import RunContext, run_context
from camid_gpu.engine.scheduler import cap_workers
from camid_gpu.engine.scoring import ChunkScorer
from camid_gpu.errors import CamidError
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline.records import error_entry
from camid_gpu.store import load_stores

def identify_paths_worker(fp_dir: str, paths: Sequence[str], methods: Sequence[str], params_dict: dict[str, Any],
                          kind: str, config: RunConfig, unverified: bool = False) -> list[dict[str, Any]]:
    """One Dask task: identify ``paths`` in this process and return their records in order (the store is checked
    against its manifest here too; ``unverified``: as ``store.load_store``).

    The worker builds its own run context from the run's options: its backend and device, and the budgets as
    given (``--max-host-memory``, ``--max-gpu-memory``) or this worker's defaults (:func:`worker_config`); the
    images are scored in chunks within them, a chunk that runs out of memory halved and retried, as in one
    process."""
    ctx = run_context(worker_config(config))
    store = load_stores(fp_dir, methods=tuple(methods), unverified=unverified)
    params = Params.from_dict(params_dict)
    scorer = ChunkScorer(ctx, store, params, methods)
    sensor_shapes = sorted({fp.source_shape for fp in store})
    records: list[dict[str, Any]] = []
    pending: list = []
    for path in paths:
        try:
            pending.append(prepare.prepare_disputed(path, params, sensor_shapes, kind, ctx.config.limits))
        except (CamidError, OSError, ValueError) as exc:
            pending.append(error_entry(path, exc))
        if sum(isinstance(x, prepare.Prepared) for x in pending) >= scorer.size:
            records += scorer.records(pending)
            pending = []
    return records + scorer.records(pending)


def worker_config(config: RunConfig) -> RunConfig:
    """The run's options as a Dask worker applies them: without ``--max-host-memory``, the host budget is half
    of this worker's Dask memory limit (a local cluster gives each worker its share of the machine's memory),
    as one process takes half of the machine's; several workers each taking half of the machine's memory
    would overcommit it."""
    if config.max_host_memory is not None:
        return config
    try:
        from distributed import get_worker  # type: ignore[import-not-found]

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):  # not in a Dask worker (or no memory manager)
        return config
    return replace(config, max_host_memory=max(int(limit) // 2, MIN_MEMORY_BUDGET)) if limit else config


def identify_on_dask(fp_dir: str, todo: Sequence[str], write: Callable[[list[dict[str, Any]]], None],
                     methods: Sequence[str], params: Params, ctx: RunContext, kind: str,
                     unverified: bool = False) -> None:
    """Identify ``todo`` on Dask (``ctx.dask``), in tasks of ``--chunk`` or :data:`~camid_gpu.config.DASK_IMAGES_PER_TASK` images;
    ``write`` receives each task's records in input order."""
    distributed = import_optional("dask.distributed", "dist", "--dask")
    per_task = ctx.config.chunk or DASK_IMAGES_PER_TASK
    batches = [todo[i:i + per_task] for i in range(0, len(todo), per_task)]
    worker_config = replace(ctx.config, dask=None, progress=False)  # a worker runs its share in its own process
    client, cluster = dask_client(distributed, ctx.dask, len(batches), ctx.config)
    try:
        futures = [client.submit(identify_paths_worker, fp_dir, batch, list(methods), params.to_dict(), kind,
                                 worker_config, unverified, pure=False)
                   for batch in batches]
        for fut in futures:  # in submission order: deterministic output
            write(fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def local_address(address: str, config: RunConfig | None = None, tasks: int | None = None) -> tuple[str, str | None]:
    """``--dask local:N`` with N capped as ``--workers`` is (:func:`~camid_gpu.engine.scheduler.cap_workers`:
    the usable CPUs and the host budget, ``config``'s or the default) and by ``tasks`` (no idle processes);
    returns the address and the note saying why when lowered. Other addresses come back unchanged
    (``local:100000`` started processes until memory ran out; ``local:6`` started 6 on 2 CPUs)."""
    if not address.startswith("local:"):
        return address, None
    config = config or RunConfig()
    requested = int(address.split(":", 1)[1])
    count, note = cap_workers(requested, config.max_host_memory, config.limits, option="--dask local:")
    if tasks is not None and 1 <= tasks < count:
        count = tasks
    return f"local:{count}", note


def dask_client(distributed, address: str, tasks: int | None = None, config: RunConfig | None = None):
    """``local``: one worker per GPU (dask-cuda) when available, else a LocalCluster of processes (at most
    :data:`~camid_gpu.config.DASK_LOCAL_WORKERS`, the usable CPUs and ``tasks``); ``local:N``: N processes,
    capped by :func:`local_address` under ``config``'s host budget (the run's: without it the default budget
    capped a run given --max-host-memory a second time). Local clusters take free ports (dashboard included), so
    concurrent runs on one machine do not collide."""
    if address == "local":
        try:
            from dask_cuda import LocalCUDACluster  # type: ignore[import-not-found]

            cluster = LocalCUDACluster()
            return distributed.Client(cluster), cluster
        except ImportError:
            address = f"local:{DASK_LOCAL_WORKERS}"
    if address.startswith("local:"):
        n = int(local_address(address, config, tasks)[0].split(":", 1)[1])
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
        return distributed.Client(cluster), cluster
    return distributed.Client(address), None

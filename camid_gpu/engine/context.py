"""The run context: how one run executes, decided once, before any work, and shared by every command.

:func:`run_context` turns a :class:`~camid_gpu.config.RunConfig` (the options as given) into a
:class:`RunContext`: the backend, the memory budgets (``--max-host-memory``, ``--max-gpu-memory``, or
their defaults measured once), the decode workers, Dask or this process, and what the manifest says about
them. Every chunk and batch of a run is sized from it (:meth:`RunContext.chunk`,
:meth:`RunContext.fingerprint_batch`), so no path of any command works outside the budget; per-file
errors are built by :func:`camid_gpu.pipeline.records.error_record` (:meth:`RunContext.error`).
A Dask worker builds its own context from the same options (its device and its memory).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from camid_gpu.pipeline.kernels import kernels_status
from camid_gpu.backend import Backend, get_backend
from camid_gpu.config import FINGERPRINT_BATCH, RunConfig
from camid_gpu.engine.scheduler import chunk_size, default_gpu_memory, default_host_memory
from camid_gpu.io.device_decode import decoder_for
from camid_gpu.pipeline.records import error_record

#: the manifest's ``kernels`` entry for a Dask run: each worker self-checks the kernels on its own device
DASK_KERNELS = "not recorded (dask cluster: each worker self-checks its own device and warns on a fallback)"


@dataclass(frozen=True)
class RunContext:
    """One run's execution settings (never what is computed: that is :class:`~camid_gpu.config.Params`)."""

    config: RunConfig           # the options as given (a Dask worker gets them, and builds its own context)
    backend: Backend            # this process's backend (a Dask worker makes its own from ``config``)
    host_budget: int            # bytes of host memory a chunk may use: --max-host-memory, or config.HOST_MEMORY
    gpu_budget: int | None      # bytes of device memory: --max-gpu-memory, or 80 % of free; None on the host

    @property
    def workers(self) -> int:
        """Decoding processes (``--workers``)."""
        return self.config.workers

    @property
    def dask(self) -> str | None:
        """The Dask scheduler (``--dask``), or None: everything runs in this process."""
        return self.config.dask

    def chunk(self, pixels: int, cameras: int = 0, rotations: int = 1) -> int:
        """Images per chunk of a streamed computation on frames of ``pixels`` (``--chunk`` when fixed)."""
        return self.config.chunk or chunk_size(pixels, cameras, self.gpu_budget, self.host_budget,
                                               rotations=rotations, value_bytes=self.backend.itemsize)

    def fingerprint_batch(self, pixels: int) -> int:
        """Images per step of a fingerprint's accumulation on frames of ``pixels`` (camera and cluster
        fingerprints alike): within the budgets, at most :data:`~camid_gpu.config.FINGERPRINT_BATCH`."""
        return chunk_size(pixels, 0, self.gpu_budget, self.host_budget, value_bytes=self.backend.itemsize,
                          limit=FINGERPRINT_BATCH)

    def describe(self) -> str:
        """The manifest's ``backend``: this process's backend, or the Dask scheduler."""
        return f"dask {self.dask}" if self.dask else self.backend.describe()

    def kernels(self) -> Any:
        """The manifest's ``kernels``: the self-check of this process's device, or :data:`DASK_KERNELS`."""
        return DASK_KERNELS if self.dask else kernels_status(self.backend)

    def computed_by(self) -> dict[str, str]:
        """What shapes every number of a run (``run.json``): a resume on another one is refused."""
        return {"backend": "dask" if self.dask else self.backend.name, "precision": self.config.precision}

    def jpeg_decoder(self):
        """The device JPEG decoder ``--decode`` asks for on this backend, or None (the CPU decodes)."""
        return decoder_for(self.config.decode, self.backend)

    @staticmethod
    def error(path: str, kind: str, reason: str, **facts: Any) -> dict[str, Any]:
        """A per-file (or per-folder, per-camera) error record."""
        return error_record(path, kind, reason, **facts)


def backend_of(config: RunConfig) -> Backend:
    """The backend ``config`` names, at the run's precision (``--precision``; :data:`~camid_gpu.config.PRECISION`
    unless given), where the Python API's default is :data:`~camid_gpu.config.API_PRECISION`."""
    return get_backend(config.backend, device=config.device, dtype=config.precision)


def run_context(config: RunConfig | RunContext | None = None) -> RunContext:
    """The context of a run with ``config`` (a context is returned as it is: a command builds one, once, and
    passes it on to the commands it runs)."""
    if isinstance(config, RunContext):
        return config
    config = config or RunConfig()
    bk = backend_of(config)
    return RunContext(config=config, backend=bk, host_budget=config.max_host_memory or default_host_memory(),
                      gpu_budget=config.max_gpu_memory or default_gpu_memory(bk))

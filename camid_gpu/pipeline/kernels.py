"""The fused CUDA kernels of camid, in one list: what the run manifest's ``kernels`` line and the selftest
check on a device. Each kernel is held by its algorithm beside its twin (``prnu.residual.MIHCAK_KERNEL``,
``mahalanobis.statistics.MAHALANOBIS_KERNEL``); its launcher is beside the algorithm
(``prnu/mihcak_kernel.py``, ``mahalanobis/kernel.py``) and its source in ``camid_gpu/kernels/``.
"""
from __future__ import annotations

from typing import Any

from camid_gpu._cuda import loader as cuda
from camid_gpu.mahalanobis import statistics
from camid_gpu.prnu import residual


def fused_kernels() -> tuple[cuda.FusedKernel, ...]:
    """Every fused CUDA kernel, by name."""
    return tuple(sorted((residual.MIHCAK_KERNEL, statistics.MAHALANOBIS_KERNEL), key=lambda k: k.name))


def kernels_status(bk: Any) -> str:
    """The run manifest's ``kernels`` line for backend ``bk``: "not used", "verified" or
    "fallback (name: reason; ...)" (:func:`camid_gpu._cuda.loader.kernels_status`)."""
    return cuda.kernels_status(bk, fused_kernels())

"""Double-buffered host -> device uploads: copy chunk k+1 on a side stream while chunk k computes.

:class:`UploadStager` stacks a chunk's integer pixels into one of ``slots`` reusable host buffers
(page-locked on CUDA, grown only when a chunk needs more), starts the copy on the backend's copy stream and
returns an :class:`Upload`. The compute stream waits for the copy's event when the pixels are taken
(:meth:`Upload.native`); before a slot's buffer is overwritten, the host waits for that slot's previous
copy. On the host (NumPy, torch on CPU) the same code runs with no streams: copies finish on return.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from camid_gpu.backend.base import Array, Backend


@dataclass
class Upload:
    """Pixels on their way to the device: ``(N, ...)`` integers as they were on the host (uint8/uint16)."""

    bk: Backend
    array: Array  # native, integer dtype; do not use before native()
    event: Any
    host_dtype: np.dtype

    def native(self) -> Array:
        """The native integer array, with later device work ordered after the copy."""
        self.bk.wait_event(self.event)
        return self.array


class UploadStager:
    """Uploads through ``slots`` reused host buffers and one copy stream (see the module docstring)."""

    def __init__(self, bk: Backend, slots: int = 2):
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.bk = bk
        self.stream = bk.copy_stream()
        self._buffers: list[np.ndarray | None] = [None] * slots
        self._events: list[Any] = [None] * slots
        self._next = 0
        self.allocations = 0  # host buffers allocated so far (reuse keeps this at most ``slots`` for one size)

    def stage(self, arrays: Sequence[np.ndarray]) -> Upload:
        """Stack ``arrays`` (equal shapes, one integer dtype) into the next slot and start their upload."""
        if len(arrays) == 0:
            raise ValueError("stage: nothing to upload (an empty chunk)")
        first = arrays[0]
        shape, dtype = (len(arrays), *first.shape), first.dtype
        if any(a.shape != first.shape or a.dtype != dtype for a in arrays):
            raise ValueError("stage: every array of one upload must have the same shape and dtype")
        nbytes = math.prod(shape) * dtype.itemsize
        slot, self._next = self._next, (self._next + 1) % len(self._buffers)
        self.bk.host_wait_event(self._events[slot])  # the slot's previous copy has left its buffer
        buffer = self._buffers[slot]
        if buffer is None or buffer.nbytes < nbytes:
            buffer = self._buffers[slot] = self.bk.host_buffer(max(nbytes, 1))
            self.allocations += 1
        view = buffer[:nbytes].view(dtype).reshape(shape)
        np.stack(arrays, out=view)
        array, event = self.bk.upload(view, self.stream)
        self._events[slot] = event
        return Upload(self.bk, array, event, dtype)

"""The batch engine: stream files through decode workers and the device in bounded chunks.

- Decoding (the CPU bottleneck: tens of ms per 12 MP JPEG) runs in a pool of worker processes
  (``workers``); at most ``prefetch`` decoded items wait in host memory, so memory stays bounded
  whatever the number of images. Only the clippings travel back (uint8/uint16), never float32.
- The chunk size comes from the memory budget and the clipping size; a CUDA out-of-memory error
  halves the chunk and retries it.
- Results are appended to a JSON Lines file as each chunk finishes, flushed and fsync'ed, in input
  order, so a crash or kill loses at most the chunk in flight. What ``--resume`` skips, retries or flags
  is decided by ``camid_gpu.engine.run_folder`` (records keyed by canonical path and SHA-256).
- Processes are forked with Ctrl-C and SIGTERM held (``camid_gpu._shared.interrupts``): one arriving while the
  pool starts is raised when the fork is done, never dropped inside fork's hooks.
- Decode workers ignore Ctrl-C and SIGTERM (the parent answers them) and die with the parent (``PR_SET_PDEATHSIG``,
  plus a watchdog thread where that is not available).
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import sys
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Sequence, Sized

from camid_gpu._shared import interrupts
from camid_gpu._shared.files import writing
from camid_gpu._shared.jsonio import read_jsonl
from camid_gpu._shared.progress import Progress  # noqa: F401 - the engine's bar (re-exported)
from camid_gpu.backend import Backend
from camid_gpu.config import HOST_MEMORY, PCE_CAMERA_CHUNK, InputLimits
from camid_gpu.errors import CamidError
from camid_gpu.pipeline.records import ImageRecord, final_view


def read_results(path: str | os.PathLike) -> list[ImageRecord]:
    """The run folder's results: one record per input (a retried or flagged file's latest record, in the
    place of its first), from the complete lines of ``results.jsonl``."""
    return final_view(read_jsonl(path))  # type: ignore[arg-type]

#: working arrays per channel-pixel during the residual (padded planes, wavelet pyramid, box means);
#: measured: a 16-image chunk of 1000x1000 RGB clips peaked at ~4.3 GB with NumPy float64
VALUES_PER_CHANNEL_PIXEL = 12
#: extra values per pixel per fingerprint correlated at once (template, two complex spectra, C plane)
VALUES_PER_PIXEL_PER_CAMERA = 8


def default_host_memory() -> int:
    """The host budget without ``--max-host-memory``: :data:`~camid_gpu.config.HOST_MEMORY` (a shared
    workstation's share), or half of the machine's physical memory when that is less."""
    try:
        half = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        half = HOST_MEMORY
    return int(min(HOST_MEMORY, half))


def default_gpu_memory(bk: Backend) -> int | None:
    """80 % of the backend's free device memory, or None on the host."""
    info = bk.memory_info()
    return None if info is None else int(info[0] * 0.8)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_memory(limits: InputLimits) -> int:
    """Bytes one decode worker may hold at once: a file's kept bytes (at most the file-size limit) and its
    decoded pixels twice (the decoder's array and the normalised copy), each within the decoded-size limit."""
    return limits.max_file_bytes + 2 * limits.max_decoded_bytes


def declared_worker_memory(paths: Sequence[str], limits: InputLimits) -> int:
    """Bytes one decode worker may hold for the largest of ``paths`` (image files or folders): the file's size and
    twice its decoded size as its header declares it (rows x columns x channels x bytes per sample), each within
    the limits; a file whose header Pillow cannot read (HEIC, DNG) counts at the decoded-size limit."""
    from PIL import Image

    from camid_gpu._shared.files import open_regular
    from camid_gpu.io.listing import list_images

    largest = 0
    for path in list_images(*paths):
        try:  # read-only, never waiting on a FIFO: anything but a regular file is its own error when it is read
            handle = open_regular(path)
        except (OSError, ValueError):
            continue
        with handle:
            size = min(os.fstat(handle.fileno()).st_size, limits.max_file_bytes)
            largest = max(largest, size + 2 * _declared_bytes(Image, handle, limits))
    return largest or worker_memory(limits)


def _declared_bytes(image_module, handle, limits: InputLimits) -> int:
    """The decoded size the header of the open file ``handle`` declares, within the limit (the limit when Pillow
    cannot read it)."""
    decoded = limits.max_decoded_bytes
    try:
        with image_module.open(handle) as image:  # the header only: nothing is decoded
            channels = len(image.getbands())
            depth = 2 if image.mode.startswith(("I;16", "I")) else 1
            decoded = min(decoded, image.width * image.height * max(channels, 1) * depth)
    except Exception:  # noqa: BLE001 - any file Pillow cannot open counts at the limit
        pass
    return decoded


def cap_workers(requested: int, host_budget: int | None, limits: InputLimits,
                inputs: Sequence[str] = (), option: str = "--workers") -> tuple[int, str | None]:
    """``--workers`` (or ``option``: ``--dask local:N``'s processes) capped by the usable CPUs and by the host
    memory budget; returns the count and a note saying why when it is lower than asked (None when not). Each
    worker counts as the largest of ``inputs`` needs (:func:`declared_worker_memory`: file size and declared
    decoded size), or the limits' worst case (``worker_memory``) without inputs. The number of files caps it
    again in :func:`ordered_map` (Dask: the number of tasks, :func:`camid_gpu.engine.dask.local_address`)."""
    cpus = usable_cpus()
    budget = host_budget or default_host_memory()
    each = worker_memory(limits)
    if requested <= 1:  # nothing to cap: no input header is opened before the run
        return requested, None
    if inputs and min(requested, cpus) > budget // max(each, 1):  # the worst case would cap: look at the files
        each = declared_worker_memory(inputs, limits)
    by_memory = max(1, budget // max(each, 1))
    count = min(requested, cpus, by_memory)
    if count >= requested:
        return requested, None
    why = [f"{cpus} usable CPUs"] if count == cpus else []
    if count == by_memory:
        what = "the largest input's file size + twice its declared decoded size" if inputs else \
            "file-size limit + twice the decoded-size limit"
        why.append(f"a host memory budget of {budget} bytes holds {by_memory} workers of up to {each} bytes each "
                   f"({what})")
    asked = f"{option}{requested}" if option.endswith(":") else f"{option} {requested}"
    return count, f"{asked} capped to {count}: {'; '.join(why)}"


def chunk_size(pixels: int, cameras: int, budget: int | None, host_budget: int, rotations: int = 1,
               channels: int = 3, value_bytes: int = 8, limit: int = 64) -> int:
    """Images per chunk so that one chunk's working set fits the smaller budget (at least 1).

    ``value_bytes``: 8 for NumPy (float64), 4 for torch float32.
    """
    values = channels * VALUES_PER_CHANNEL_PIXEL + VALUES_PER_PIXEL_PER_CAMERA * min(cameras, PCE_CAMERA_CHUNK)
    per_image = pixels * rotations * values * value_bytes
    budgets = [b for b in (budget, host_budget // 2) if b]
    return int(max(1, min(limit, min(budgets) // max(per_image, 1))))


def ordered_map(func: Callable[..., Any], tasks: Iterable[tuple], workers: int,
                prefetch: int) -> Iterator[tuple[tuple, Any]]:
    """Yield ``(task, func(*task) or the exception it raised)`` in input order.

    With ``workers > 1`` the calls run in a process pool; at most ``prefetch`` are in flight or
    waiting, so decoded images never pile up in memory. A worker that dies (the out-of-memory killer,
    a decoder crash) breaks the whole pool, so every call in flight then is run again alone in a fresh
    process: the file that kills that one too gets a ``MemoryError`` naming it, the others their
    results, and the batch goes on in a new pool.
    """
    if workers <= 1:
        for task in tasks:
            yield task, _call(func, task)
        return
    # never more processes than CPUs or than calls (--workers 6 on one image forked 5 idle workers); still a
    # pool when workers were asked for, so that a decoder crash costs one file, not the run
    workers = min(workers, usable_cpus(), max(len(tasks), 1) if isinstance(tasks, Sized) else workers)
    pool = _new_pool(workers)
    pending: deque[tuple[tuple, cf.Future]] = deque()
    try:
        for task in tasks:
            with interrupts.deferred():  # submit forks: a signal handled inside fork's hooks would be lost
                try:
                    future = pool.submit(_call, func, task)
                except cf.process.BrokenProcessPool:  # broken by a call still pending: its result says which
                    pool.shutdown(wait=False)
                    pool = _new_pool(workers)
                    future = pool.submit(_call, func, task)
            pending.append((task, future))
            if len(pending) >= prefetch:
                done_task, fut = pending.popleft()
                yield done_task, _result(func, done_task, fut)
        while pending:
            done_task, fut = pending.popleft()
            yield done_task, _result(func, done_task, fut)
    finally:
        # on an interrupt or an error in the consumer: drop what is queued, do not wait for it
        pool.shutdown(wait=not pending, cancel_futures=True)


def _new_pool(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),))


def _result(func: Callable[..., Any], task: tuple, fut: cf.Future) -> Any:
    try:
        return fut.result()
    except cf.process.BrokenProcessPool:
        return _call_alone(func, task)


def _call_alone(func: Callable[..., Any], task: tuple) -> Any:
    """``func(*task)`` in a process of its own, after a pool broke: the one call that kills it again is
    named, and no other call shares its fate."""
    with _new_pool(1) as pool:
        try:
            with interrupts.deferred():
                future = pool.submit(_call, func, task)
            return future.result()
        except cf.process.BrokenProcessPool as exc:
            return MemoryError(f"the decode worker died while reading {task[0]} (killed, e.g. by the "
                               f"out-of-memory killer: {exc})")


#: seconds between a worker's checks that its parent is still alive (the fallback where PR_SET_PDEATHSIG
#: is not available)
PARENT_WATCH_SECONDS = 1.0


def _worker_init(parent_pid: int) -> None:
    """In each decode worker: die with the parent, and leave Ctrl-C to the parent.

    - SIGINT and SIGTERM are ignored: a terminal's Ctrl-C and a service manager's SIGTERM go to the whole
      process group, and only the parent should answer them (one clean message, exit 130 / 143). A worker
      that died of the signal while sending a decoded image would leave a partial message in the result
      pipe, on which the pool's reader thread (and so the interpreter's exit) would wait for ever; the
      parent's shutdown lets each worker finish its current file and exit instead.
    - On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` makes the kernel kill the worker when the parent dies
      (kill -9 included); a watchdog thread that exits when the parent pid changes is the fallback.
    """
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above ran
        os._exit(1)

    def watch() -> None:
        import time

        while os.getppid() == parent_pid:
            time.sleep(PARENT_WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="camid-parent-watch", daemon=True).start()


def _call(func, task):
    try:
        return func(*task)
    except (CamidError, OSError, ValueError, MemoryError) as exc:
        return exc


def is_out_of_memory(exc: BaseException) -> bool:
    """A device (torch/CuPy) or host (MemoryError) out-of-memory error, recognised without importing torch."""
    name = type(exc).__name__
    return isinstance(exc, MemoryError) or name in ("OutOfMemoryError", "OutOfMemoryError_") \
        or "out of memory" in str(exc).lower()


def run_chunk_with_retry(func: Callable[[Sequence[Any]], list], items: Sequence[Any],
                         on_halve: Callable[[int], None] | None = None,
                         free_cache: Callable[[], None] | None = None) -> list:
    """``func(items)``; on a device out-of-memory error, call ``free_cache`` (e.g. ``Backend.empty_cache``),
    split the chunk in halves and retry each."""
    try:
        return func(items)
    except Exception as exc:  # MemoryError, torch.cuda.OutOfMemoryError or CuPy's, without importing either
        if not is_out_of_memory(exc) or len(items) <= 1:
            raise
        if free_cache is not None:
            free_cache()
        half = len(items) // 2
        if on_halve:
            on_halve(half)
        return (run_chunk_with_retry(func, items[:half], on_halve, free_cache)
                + run_chunk_with_retry(func, items[half:], on_halve, free_cache))


class ResultsWriter:
    """Append-only JSON Lines results with fsync, and the set of files already done (for resume)."""

    def __init__(self, path: str, resume: bool):
        self.path = path
        self.done: dict[str, str | None] = {}
        if os.path.exists(path):
            if not resume:
                raise CamidError(f"{path}: results file exists; pass --resume to continue it or choose another "
                                 f"output")
            self._load_existing()
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        self._handle = open(path, "a", encoding="utf-8")

    def _load_existing(self) -> None:
        with open(self.path, "rb") as handle:
            data = handle.read()
        good_end = data.rfind(b"\n") + 1
        if good_end < len(data):  # a line cut by a crash: drop it, its image is redone
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)
        for line in data[:good_end].splitlines():
            if line.strip():
                record = json.loads(line)
                self.done[record["path"]] = record.get("sha256")

    def is_done(self, path: str, sha256: str | None = None) -> bool:
        if path not in self.done:
            return False
        recorded = self.done[path]
        return recorded is None or sha256 is None or recorded == sha256

    #: called with each batch of records once they are on disk (e.g. to print each image's decision)
    on_write: Callable[[list[dict[str, Any]]], None] | None = None

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        lines = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records)
        with writing(self.path):  # a full disk names the file (a cut line is dropped by --resume)
            self._handle.write(lines)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        if self.on_write is not None:
            self.on_write(records)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

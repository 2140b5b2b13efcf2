"""The batch engine's parts: memory-derived chunks, OOM halving, ordered worker pool, results file."""
from __future__ import annotations

import json

import pytest

from camid_gpu.config import parse_bytes
from camid_gpu.errors import CamidError, ImageDecodeError
from camid_gpu.engine.scheduler import (
    ResultsWriter,
    chunk_size,
    ordered_map,
    read_results,
    run_chunk_with_retry,
)


def test_parse_bytes():
    assert parse_bytes("8G") == 8 << 30 and parse_bytes("512M") == 512 << 20
    assert parse_bytes("1.5GiB") == int(1.5 * (1 << 30)) and parse_bytes(1000) == 1000
    assert parse_bytes(None) is None
    with pytest.raises(ValueError, match="memory size must look like 8G"):
        parse_bytes("lots")


def test_chunk_size_follows_the_budget():
    pixels = 1000 * 1000
    big = chunk_size(pixels, 4, budget=None, host_budget=1 << 40)
    small = chunk_size(pixels, 4, budget=None, host_budget=8 << 30)
    assert big == 64 and 1 <= small < big
    # 1000x1000 RGB, 4 cameras, float64: (3*12 + 8*4) values * 8 bytes = 544 MB per image
    assert small == (4 << 30) // (1_000_000 * 68 * 8)
    assert chunk_size(pixels, 4, budget=None, host_budget=8 << 30, value_bytes=4) in (2 * small, 2 * small + 1)
    assert chunk_size(pixels, 4, budget=1, host_budget=1 << 40) == 1  # never below one image
    assert chunk_size(pixels, 4, budget=2 << 30, host_budget=1 << 40) < big  # the GPU budget binds


class FakeOOM(RuntimeError):
    pass


FakeOOM.__name__ = "OutOfMemoryError"  # what torch.cuda and CuPy raise


def test_out_of_memory_halves_the_chunk_and_keeps_order():
    calls, halves = [], []

    def compute(items):
        calls.append(len(items))
        if len(items) > 2:
            raise FakeOOM("CUDA out of memory")
        return [x * 10 for x in items]

    freed = []
    assert run_chunk_with_retry(compute, list(range(7)), halves.append, lambda: freed.append(1)) == [
        x * 10 for x in range(7)]
    assert calls == [7, 3, 1, 2, 4, 2, 2] and halves == [3, 1, 2]
    assert len(freed) == len(halves)  # the backend's cache is emptied before every retry


def test_host_backend_has_no_device_budget():
    from camid_gpu.backend import get_backend
    from camid_gpu.engine.scheduler import default_gpu_memory

    bk = get_backend("numpy")
    assert bk.memory_info() is None and default_gpu_memory(bk) is None
    bk.empty_cache()  # a no-op, not an error


def test_other_errors_are_not_retried():
    def compute(items):
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError):
        run_chunk_with_retry(compute, [1, 2, 3])


def _square_or_fail(x):
    if x == 3:
        raise ImageDecodeError(f"f{x}", "broken")
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_ordered_map_keeps_input_order_and_returns_errors(workers):
    out = list(ordered_map(_square_or_fail, [(i,) for i in range(8)], workers=workers, prefetch=3))
    assert [task[0] for task, _ in out] == list(range(8))
    assert [r for _, r in out if not isinstance(r, Exception)] == [i * i for i in range(8) if i != 3]
    assert isinstance(out[3][1], ImageDecodeError) and out[3][1].reason == "broken"


def _square_or_die(x):
    if x == 5:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
    return x * x


def test_ordered_map_survives_a_worker_killed_mid_batch():
    """A dead worker breaks the whole pool: the file that killed it is named, every other file still gets
    its result (in order), and the calls after it run in a fresh pool."""
    out = list(ordered_map(_square_or_die, [(i,) for i in range(12)], workers=2, prefetch=4))
    assert [task[0] for task, _ in out] == list(range(12))
    assert [r for _, r in out if not isinstance(r, Exception)] == [i * i for i in range(12) if i != 5]
    assert isinstance(out[5][1], MemoryError) and "died while reading 5" in str(out[5][1])


def test_results_writer_resume_and_partial_line(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultsWriter(str(path), resume=False) as w:
        w.write([{"path": "a", "sha256": "1"}, {"path": "b", "error": {"kind": "decode", "reason": "x"}}])
    with open(path, "a") as handle:
        handle.write('{"path": "c", "sha2')  # cut by a crash
    with pytest.raises(CamidError, match="--resume"):
        ResultsWriter(str(path), resume=False)
    w = ResultsWriter(str(path), resume=True)
    assert w.is_done("a", "1") and not w.is_done("a", "2") and w.is_done("b") and not w.is_done("c")
    w.write([{"path": "c", "sha256": "3"}])
    w.close()
    assert [r["path"] for r in read_results(str(path))] == ["a", "b", "c"]
    assert all(json.loads(line) for line in path.read_text().splitlines())

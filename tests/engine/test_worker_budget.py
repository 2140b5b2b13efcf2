"""Decode workers sized from the inputs given (their file sizes and declared dimensions), not from the worst case
the limits allow; the default host budget is a shared workstation's share."""
from __future__ import annotations

import numpy as np


def _jpegs(folder, count=3, side=256):
    from PIL import Image

    folder.mkdir()
    for n in range(count):
        Image.fromarray(np.full((side, side + n, 3), 40 * n, np.uint8)).save(folder / f"img_{n}.jpg")
    return str(folder)


def test_workers_from_the_declared_dimensions_of_the_inputs(tmp_path, monkeypatch):
    from camid_gpu.config import InputLimits
    from camid_gpu.engine import scheduler

    monkeypatch.setattr(scheduler, "usable_cpus", lambda: 4)
    folder = _jpegs(tmp_path / "seized")
    limits = InputLimits()  # 1 GiB files, 1 GiB decoded: 3 GiB a worker at worst
    assert scheduler.cap_workers(2, 4 << 30, limits)[0] == 1  # the worst case
    assert scheduler.cap_workers(2, 4 << 30, limits, [folder]) == (2, None)  # the files given: far less
    each = scheduler.declared_worker_memory([folder], limits)
    assert 2 * 256 * 258 * 3 <= each <= 2 * 256 * 258 * 3 + (64 << 10)  # the largest frame, twice, and its file
    count, note = scheduler.cap_workers(4, 2 * each + 10, limits, [folder])
    assert count == 2 and "declared decoded size" in note


def test_cli_workers_two_on_small_files_gives_two(tmp_path, monkeypatch, capsys):
    from camid_gpu.cli.options import config_of
    from camid_gpu.cli.parser import build_parser
    from camid_gpu.engine import scheduler

    monkeypatch.setattr(scheduler, "usable_cpus", lambda: 2)
    folder = _jpegs(tmp_path / "seized")
    args = build_parser().parse_args(["identify", str(tmp_path), folder, "--workers", "2", "--max-host-memory", "4G",
                                      "--backend", "numpy"])
    assert config_of(args).workers == 2
    assert "capped" not in capsys.readouterr().err


def test_default_host_budget_is_a_share_not_half_the_machine(monkeypatch):
    from camid_gpu.config import HOST_MEMORY
    from camid_gpu.engine import scheduler
    from camid_gpu.engine.context import run_context

    assert scheduler.default_host_memory() <= HOST_MEMORY
    monkeypatch.setattr(scheduler.os, "sysconf", lambda name: 4096 if name == "SC_PAGE_SIZE" else (1 << 40) // 4096)
    assert scheduler.default_host_memory() == HOST_MEMORY  # a 1 TiB machine: still the share
    assert run_context().host_budget == HOST_MEMORY


def test_a_fifo_among_the_inputs_is_not_opened_for_its_header(tmp_path, monkeypatch):
    import os
    import signal

    from camid_gpu.config import InputLimits
    from camid_gpu.engine import scheduler

    folder = _jpegs(tmp_path / "seized", count=1)
    os.mkfifo(os.path.join(folder, "pipe.jpg"))  # an open for reading would wait for a writer for ever
    before = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("blocked on the FIFO")))
    signal.alarm(20)
    try:
        each = scheduler.declared_worker_memory([folder], InputLimits())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert each < 1 << 20  # the one JPEG's size and frame: the FIFO was left to its own error

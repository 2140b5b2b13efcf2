"""Failures during a run: out of memory on one image is that image's error; decode workers die with the
parent; SIGINT/SIGTERM end cleanly without hanging."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from camid_gpu.cli import EXIT_OK
from camid_gpu.config import Params, RunConfig
from camid_gpu.engine.runner import identify_files
from camid_gpu.engine.scheduler import read_results
from camid_gpu.pipeline.records import error_entry

from conftest import evidence, RUN_ARGS


def test_memory_error_without_a_reason_gets_one():
    entry = error_entry("/evidence/big.tif", MemoryError())
    assert "out of memory while processing /evidence/big.tif" in entry["error"]["reason"]
    assert "KeyError while processing x" in error_entry("x", KeyError())["error"]["reason"] or \
        error_entry("x", KeyError())["error"]["reason"]


def test_out_of_memory_on_one_image_is_that_image_s_error(world, tmp_path, monkeypatch):
    from camid_gpu.pipeline import identify as ident

    ev = evidence(world, tmp_path)
    victim = sorted(ev.rglob("*.jpg"))[1]
    real = ident.identify_chunk

    def chunk(bk, store, items, *args, **kwargs):
        if any(item.path == str(victim) for item in items):
            raise MemoryError()  # numpy's MemoryError often has no message at all
        return real(bk, store, items, *args, **kwargs)

    monkeypatch.setattr(ident, "identify_chunk", chunk)
    results = tmp_path / "run" / "results.jsonl"
    identify_files(str(world / "fp"), [str(ev)], str(results), ("pce",), Params(clip=(128, 128)),
                   RunConfig(backend="numpy", progress=False, chunk=4))
    records = {r["path"]: r for r in read_results(results)}
    assert f"out of memory while processing {victim}" in records[str(victim)]["error"]["reason"]
    assert sum(r["error"] is None for r in records.values()) == len(records) - 1


@pytest.mark.slow  # 4 s on the shared 2-core machine (pytest --durations)
def test_decode_workers_die_with_the_parent(tmp_path):
    """kill -9 of the parent: its decode workers go too (PR_SET_PDEATHSIG / the watchdog)."""
    code = ("import os, sys, time\n"
            "from camid_gpu.engine.scheduler import ordered_map\n"
            "def slow(i):\n    time.sleep(60)\n    return i\n"
            "if __name__ == '__main__':\n"
            "    it = ordered_map(slow, [(i,) for i in range(4)], 2, 4)\n"
            "    import threading\n"
            "    threading.Thread(target=lambda: next(it), daemon=True).start()\n"
            "    time.sleep(3)\n"
            "    import multiprocessing\n"
            "    print(' '.join(str(p.pid) for p in multiprocessing.active_children()), flush=True)\n"
            "    time.sleep(120)\n")
    script = tmp_path / "parent.py"
    script.write_text(code)
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as proc:
        line = proc.stdout.readline()
        workers = [int(p) for p in line.split()]
        assert len(workers) >= 2
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"workers {alive} outlived their parent"


@pytest.mark.slow  # 7 s on the shared 2-core machine (pytest --durations)
def test_sigterm_to_the_group_while_workers_send_large_results_does_not_hang(tmp_path):
    """A service manager's SIGTERM reaches every process of the group. A worker killed by it while
    writing a decoded image to the pool's pipe left a partial message there, and the pool's reader
    thread, joined at interpreter exit, waited for the rest for ever: workers leave SIGTERM to the parent."""
    code = ("import signal, sys, time\n"
            "from camid_gpu.engine.scheduler import ordered_map\n"
            "def big(i):\n    return bytes(80_000_000)\n"
            "class Stop(BaseException):\n    pass\n"
            "def stop(signum, frame):\n    raise Stop()\n"
            "if __name__ == '__main__':\n"
            "    signal.signal(signal.SIGTERM, stop)\n"
            "    try:\n"
            "        for n, _ in enumerate(ordered_map(big, [(i,) for i in range(40)], 2, 4)):\n"
            "            if n == 1:\n                print('running', flush=True)\n"
            "            time.sleep(0.05)\n"
            "    except Stop:\n        print('stopped', flush=True)\n")
    script = tmp_path / "parent.py"
    script.write_text(code)
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.3)  # results of 80 MB are being written to the pipe now
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the interrupted process did not exit within 60 s")
    assert proc.returncode == 0 and out.strip() == "stopped"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow  # 8-10 s per signal on the shared 2-core machine (pytest --durations)
@pytest.mark.parametrize("signum,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_sigint_with_workers_is_a_clean_exit_130(world, tmp_path, signum, code, word):
    many = tmp_path / "many"
    many.mkdir()
    sources = sorted((world / "data" / "disputed").rglob("*.jpg"))
    images = 180  # seconds of work after the first chunk, so the signal always lands mid-run
    for k in range(images):
        shutil.copy(sources[k % len(sources)], many / f"img_{k:03d}.jpg")
    run = tmp_path / "run"
    results = run / "results.jsonl"
    # camid as a terminal starts it, with Ctrl-C at its default: a process inherits an ignored SIGINT (and
    # Python then keeps it ignored), and in the whole suite the pytest process was seen with SIGINT ignored
    as_from_a_terminal = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                          "sys.argv[0] = 'camid'; runpy.run_module('camid_gpu.cli', run_name='__main__')")
    with subprocess.Popen([sys.executable, "-c", as_from_a_terminal, "identify", str(world / "fp"), str(many),
                           "-o", str(run), "--workers", "2", "--max-host-memory", "8M",
                           # per-file limits that let two workers fit the 8M budget (--workers is capped by it)
                           "--max-file-size", "1M", "--max-decoded-size", "1M", *RUN_ARGS],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (results.exists() and results.read_bytes().count(b"\n") >= 2):
            time.sleep(0.05)
        done_before = results.read_bytes().count(b"\n") if results.exists() else 0
        assert proc.poll() is None, f"the run ended before it could be interrupted ({done_before} records)"
        os.killpg(proc.pid, signum)  # as a terminal's Ctrl-C: the whole process group, workers included
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"camid did not exit within 60 s of signal {signum}") from None
    assert proc.returncode == code, f"{done_before} records when signalled; stderr: {err!r}"
    assert "Traceback" not in err and word in err
    lines = results.read_text().splitlines()
    assert 2 <= len(lines) < images and all(json.loads(line)["path"] for line in lines)
    resumed = subprocess.run([sys.executable, "-m", "camid_gpu.cli", "identify", str(world / "fp"), str(many),
                              "-o", str(run), "--resume", *RUN_ARGS], capture_output=True, text=True)
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert len(read_results(results)) == images == len(results.read_text().splitlines())

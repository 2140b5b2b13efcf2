"""--dask local:N is capped as --workers is (issue 23 item 10): by the usable CPUs, the host budget and the number
of tasks, with the same note (local:100000 grew without output until killed; local:6 started 6 workers on 2
CPUs). No cluster is started: LocalCluster is replaced by a recorder."""
from __future__ import annotations

import re

import numpy as np

from camid_gpu.config import InputLimits, RunConfig
from camid_gpu.engine import dask as engine_dask
from camid_gpu.engine import scheduler


class _Recorder:
    def __init__(self):
        self.workers = []

    def LocalCluster(self, n_workers, **kwargs):  # noqa: N802 (distributed's name)
        self.workers.append(n_workers)
        return "cluster"

    def Client(self, what):  # noqa: N802
        return ("client", what)


def test_local_n_is_capped_by_cpus_memory_and_tasks(monkeypatch):
    monkeypatch.setattr(scheduler, "usable_cpus", lambda: 2)
    monkeypatch.setattr(scheduler, "default_host_memory", lambda: 1 << 40)  # the CPUs are the cap here
    address, note = engine_dask.local_address("local:100000")
    assert address == "local:2" and "--dask local:100000 capped to 2" in note and "2 usable CPUs" in note
    small = RunConfig(max_host_memory=6 << 20, limits=InputLimits(max_file_bytes=1 << 20, max_decoded_bytes=1 << 20))
    monkeypatch.setattr(scheduler, "usable_cpus", lambda: 16)
    address, note = engine_dask.local_address("local:8", small)  # 3 MiB per worker: two fit in 6 MiB
    assert address == "local:2" and "memory budget" in note
    large = RunConfig(max_host_memory=1 << 40)
    assert engine_dask.local_address("local:8", large, tasks=3) == ("local:3", None)  # no idle processes
    assert engine_dask.local_address("tcp://host:8786") == ("tcp://host:8786", None)


def test_the_local_cluster_started_is_the_capped_one(monkeypatch):
    monkeypatch.setattr(scheduler, "usable_cpus", lambda: 2)
    monkeypatch.setattr(scheduler, "default_host_memory", lambda: 1 << 40)  # the CPUs are the cap here
    recorder = _Recorder()
    for address, tasks in (("local:100000", None), ("local:6", None), ("local:6", 1), ("local", None)):
        engine_dask.dask_client(recorder, address, tasks)
    assert recorder.workers == [2, 2, 1, 2]


def test_cli_notes_and_records_the_dask_cap(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from camid_gpu.cli import options
    from camid_gpu.cli.parser import build_parser

    monkeypatch.setattr(scheduler, "usable_cpus", lambda: 2)
    monkeypatch.setattr(scheduler, "default_host_memory", lambda: 1 << 40)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), np.uint8)).save(tmp_path / "a.png")
    args = build_parser().parse_args(["identify", str(tmp_path / "fp"), str(tmp_path / "a.png"), "-o",
                                      str(tmp_path / "run"), "--dask", "local:100000", "--backend", "numpy"])
    config = options.config_of(args)
    assert config.dask == "local:2"
    assert re.search(r"camid: note: --dask local:100000 capped to 2: 2 usable CPUs", capsys.readouterr().err)


def test_the_local_cluster_is_capped_under_the_runs_own_budget(monkeypatch):
    """The run's --max-host-memory reaches the cluster started: with the default budget in its place, a run
    given 64 GiB was capped to one process a second time, with no note."""
    monkeypatch.setattr(scheduler, "usable_cpus", lambda: 16)
    monkeypatch.setattr(scheduler, "default_host_memory", lambda: 2 << 30)  # the default: one worst-case worker
    recorder = _Recorder()
    engine_dask.dask_client(recorder, "local:8", None, RunConfig(max_host_memory=64 << 30))
    engine_dask.dask_client(recorder, "local:8", None)  # no run configuration: the default budget
    assert recorder.workers == [8, 1]

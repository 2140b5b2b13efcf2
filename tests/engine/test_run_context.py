"""The run context: one budget for every path (cluster fingerprints, Dask identification), the --dask option,
the one error-record builder."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from camid_gpu.cli.parser import build_parser
from camid_gpu.cluster.group_ops import GroupOps
from camid_gpu.cluster.residuals import prepare_image
from camid_gpu.config import FINGERPRINT_BATCH, ClusterParams, Params, RunConfig
from camid_gpu.engine import dask as engine_dask
from camid_gpu.engine.context import RunContext, run_context
from camid_gpu.engine.identification import identify_files
from camid_gpu.engine.scheduler import read_results
from camid_gpu.pipeline import identify as ident
from camid_gpu.pipeline.records import error_entry, error_record
from camid_gpu.prnu.fingerprint import FingerprintAccumulator

SMALL_BUDGET = 32 << 20   # under two full 192x256 (or 256x320) frames' working sets: one image at a time
LARGE_BUDGET = 1 << 30
#: the functions the tests spy on, as they are before any test wraps them
ADD = FingerprintAccumulator.add
IDENTIFY_CHUNK = ident.identify_chunk


def test_run_context_is_built_once_and_frozen():
    ctx = run_context(RunConfig(backend="numpy", max_host_memory=SMALL_BUDGET, workers=2, dask="local:2"))
    assert run_context(ctx) is ctx  # a command passes its context on; nothing is rebuilt
    assert (ctx.host_budget, ctx.workers, ctx.dask) == (SMALL_BUDGET, 2, "local:2")
    assert ctx.describe() == "dask local:2" and ctx.computed_by()["backend"] == "dask"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.host_budget = 1  # type: ignore[misc]
    local = run_context(RunConfig(backend="numpy"))
    assert local.describe() == local.backend.describe() and local.host_budget > 0
    assert isinstance(local, RunContext)


def test_error_records_have_one_shape():
    assert error_record("a.jpg", "empty", "no images", current_sha256="x") == {
        "path": "a.jpg", "error": {"kind": "empty", "reason": "no images", "current_sha256": "x"}}
    assert error_entry("a.jpg", ValueError("bad")) == error_record("a.jpg", "ValueError", "bad")


@pytest.mark.parametrize("command", ["identify", "cluster"])
def test_dask_option_comes_from_one_definition(command, capsys):
    parser = build_parser()
    head = ["identify", "fp", "x.jpg"] if command == "identify" else ["cluster", "x.jpg", "-o", "run"]
    assert parser.parse_args(head + ["--dask", "local:2"]).dask == "local:2"
    assert parser.parse_args(head).dask is None
    with pytest.raises(SystemExit):
        parser.parse_args(head + ["--cluster", "local:2"])  # the Dask option is no longer called --cluster
    assert "--cluster" in capsys.readouterr().err


# -- cluster fingerprints ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_frames(tmp_path_factory):
    """Five 256x320 frames sharing one noise pattern (a camera), as PNG files."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(3)
    pattern = rng.normal(0, 4, (256, 320, 3))
    paths = []
    for i in range(5):
        pixels = np.clip(128 + pattern + rng.normal(0, 8, pattern.shape), 0, 255).astype(np.uint8)
        path = root / f"f{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def _accumulate(paths, budget, monkeypatch):
    """The cluster fingerprint of ``paths`` on full frames under ``budget``, and the batch sizes it used."""
    sizes = []

    def spy(self, batch, *args, **kwargs):
        sizes.append(len(batch))
        return ADD(self, batch, *args, **kwargs)

    monkeypatch.setattr(FingerprintAccumulator, "add", spy)
    records = []
    for p in paths:
        image = prepare_image(p, None)
        records.append({"path": p, "sha256": image.info.sha256, "region": list(image.clips[0].shape[:2]),
                        "rows": [len(records)]})
    ctx = run_context(RunConfig(backend="numpy", progress=False, max_host_memory=budget))
    ops = GroupOps(records, None, ClusterParams(region=None), ctx)
    return ops.accumulate([(i, 0) for i in range(len(paths))]).fingerprint(), sizes


def test_cluster_fingerprints_follow_the_host_budget(full_frames, monkeypatch):
    """--region full with a small --max-host-memory: one frame per accumulation step (it was a fixed four)."""
    small, small_sizes = _accumulate(full_frames, SMALL_BUDGET, monkeypatch)
    large, large_sizes = _accumulate(full_frames, LARGE_BUDGET, monkeypatch)
    assert small_sizes == [1] * 5
    assert large_sizes == [FINGERPRINT_BATCH, 1]
    np.testing.assert_allclose(small, large, rtol=1e-9, atol=1e-12)  # the same fingerprint, in smaller steps


# -- Dask identification ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_frame_store(two_camera_store):
    """Two cameras' full-frame PCE fingerprints (192x256) and their four disputed images."""
    return two_camera_store(disputed_flat=2, size=(192, 256), clip="full", backend="numpy")


class _InlineClient:
    """A Dask client stand-in that runs each task here, when its result is asked for."""

    def submit(self, func, *args, pure=True):
        return type("Future", (), {"result": staticmethod(lambda: func(*args))})()

    def close(self):
        pass


def _identify_on_dask(root, out, budget, monkeypatch):
    chunks = []

    def spy(bk, store, items, *args, **kwargs):
        chunks.append(len(items))
        return IDENTIFY_CHUNK(bk, store, items, *args, **kwargs)

    monkeypatch.setattr(ident, "identify_chunk", spy)
    monkeypatch.setattr(engine_dask, "import_optional", lambda *args: None)
    monkeypatch.setattr(engine_dask, "dask_client", lambda distributed, address, tasks=None, config=None: (_InlineClient(), None))
    config = RunConfig(backend="numpy", progress=False, dask="local:2", max_host_memory=budget)
    identify_files(str(root / "fp"), [str(root / "data" / "disputed")], str(out), ("pce",), Params(), config)
    return chunks, read_results(str(out))


def test_dask_identify_follows_the_host_budget(full_frame_store, tmp_path, monkeypatch):
    """Each Dask task scores its images in chunks sized from --max-host-memory (it scored one image per call
    whatever the budget), and the records do not depend on the chunking."""
    small_chunks, small = _identify_on_dask(full_frame_store, tmp_path / "small.jsonl", SMALL_BUDGET, monkeypatch)
    large_chunks, large = _identify_on_dask(full_frame_store, tmp_path / "large.jsonl", LARGE_BUDGET, monkeypatch)
    assert small_chunks == [1, 1, 1, 1]
    assert large_chunks == [4]
    assert [r["pce"] for r in small] == [r["pce"] for r in large]
    assert all(r["pce"]["decision"] == r["path"].split("/")[-2] for r in large)


def test_dask_worker_halves_a_chunk_that_runs_out_of_memory(full_frame_store, tmp_path, monkeypatch):
    """A Dask task retries like the local path: a chunk that runs out of memory is halved, and the records are
    the same as without the error."""
    calls = []

    def fails_on_four(bk, store, items, *args, **kwargs):
        calls.append(len(items))
        if len(items) == 4:
            raise MemoryError("out of memory (test)")
        return IDENTIFY_CHUNK(bk, store, items, *args, **kwargs)

    _, expected = _identify_on_dask(full_frame_store, tmp_path / "ref.jsonl", LARGE_BUDGET, monkeypatch)
    monkeypatch.setattr(ident, "identify_chunk", fails_on_four)
    monkeypatch.setattr(engine_dask, "dask_client", lambda distributed, address, tasks=None, config=None: (_InlineClient(), None))
    config = RunConfig(backend="numpy", progress=False, dask="local:2", max_host_memory=LARGE_BUDGET)
    out = tmp_path / "retried.jsonl"
    identify_files(str(full_frame_store / "fp"), [str(full_frame_store / "data" / "disputed")], str(out), ("pce",),
                   Params(), config)
    assert calls == [4, 2, 2]
    assert [r["pce"] for r in read_results(str(out))] == [r["pce"] for r in expected]


def test_a_dask_worker_takes_its_share_of_the_machine(monkeypatch):
    """Without --max-host-memory a Dask worker's host budget is half of its own memory limit (a local cluster of
    four workers gives each a quarter of the machine), not half of the machine's memory in every worker."""
    distributed = pytest.importorskip("distributed")
    worker = type("Worker", (), {"memory_manager": type("Memory", (), {"memory_limit": 4 << 30})()})()
    monkeypatch.setattr(distributed, "get_worker", lambda: worker)
    config = RunConfig(backend="numpy")
    assert engine_dask.worker_config(config).max_host_memory == 2 << 30
    given = RunConfig(backend="numpy", max_host_memory=SMALL_BUDGET)
    assert engine_dask.worker_config(given) is given  # --max-host-memory as given, on every worker
    monkeypatch.setattr(distributed, "get_worker", lambda: (_ for _ in ()).throw(ValueError("no worker")))
    assert engine_dask.worker_config(config) is config  # outside a worker: this machine's default

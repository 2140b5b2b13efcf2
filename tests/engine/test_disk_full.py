"""A full disk (issue 23 item 11): the error names the file being written and says that --resume goes on; the
resumed run completes; a report that fails leaves no temporary file. The disk is filled by a write that raises
OSError(ENOSPC), as the system does."""
from __future__ import annotations

import builtins
import errno
import os

from camid_gpu._shared import files
from camid_gpu.cli import EXIT_FAIL, EXIT_OK, main
from camid_gpu.engine import scheduler
from camid_gpu.engine.scheduler import read_results
from conftest import RUN_ARGS


class _FullDisk:
    """A file handle whose writes fail as on a full disk (the bytes before are kept)."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def test_identify_on_a_full_disk_names_the_file_and_resume_goes_on(world, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    args = ["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), *RUN_ARGS]

    def full_open(path, mode="r", *rest, **kwargs):
        handle = builtins.open(path, mode, *rest, **kwargs)
        return _FullDisk(handle) if "a" in mode else handle

    monkeypatch.setattr(scheduler, "open", full_open, raising=False)  # the results file's appends
    assert main(args) == EXIT_FAIL
    err = capsys.readouterr().err
    assert f"No space left on device: '{run / 'results.jsonl'}'" in err
    assert "run the same command with --resume" in err
    monkeypatch.undo()
    assert main(args + ["--resume"]) == EXIT_OK
    assert len(read_results(str(run / "results.jsonl"))) == 4


def test_a_report_that_fails_leaves_no_temporary_file(world, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), *RUN_ARGS]) == 0
    before = sorted(os.listdir(run))
    real_fdopen = os.fdopen
    monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k)))
    assert main(["report", str(run), "--quiet"]) == EXIT_FAIL
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert f"No space left on device: '{run / 'report.html'}'" in err and "run the same command again" in err
    assert sorted(os.listdir(run)) == before  # no report.html, no report.html.tmp, no .tmp-*

"""Resuming a run folder: only with the same parameters, fingerprints, backend and precision; changed
files flagged, failed files retried, one process at a time."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil

import pytest
from PIL import Image

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, main
from camid_gpu.config import Params, RunConfig
from camid_gpu.engine import run_folder
from camid_gpu.engine.runner import identify_files
from camid_gpu.engine.scheduler import read_results
from camid_gpu.errors import RunFolderError
from camid_gpu.pipeline.records import final_view

from conftest import evidence, copy_store, FP_ARGS, RUN_ARGS


def test_resume_with_other_parameters_or_fingerprints_is_refused(world, tmp_path, capsys):
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    before = (run / "results.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--resume", "--pce-threshold", "40",
                 *RUN_ARGS]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert "--resume refused" in err and "params.pce_threshold: recorded 60.0, now 40.0" in err
    other = copy_store(world, tmp_path)
    meta = json.loads((other / "C01.json").read_text())
    meta["references"] = meta["references"][:2]  # another store (other metadata; one photo twice is refused apart)
    (other / "C01.json").write_text(json.dumps(meta))
    assert main(["identify", str(other), str(ev), "-o", str(run), "--resume", *RUN_ARGS]) == EXIT_FAIL
    assert "C01.json differs from the manifest" in capsys.readouterr().err  # the edited store itself is refused
    for name in ("manifest.json", "manifest.sha256"):  # a store without a manifest, used knowingly
        (other / name).unlink()
    assert main(["identify", str(other), str(ev), "-o", str(run), "--resume", "--unverified-store",
                 *RUN_ARGS]) == EXIT_FAIL
    assert "fingerprints.C01" in capsys.readouterr().err
    extra = tmp_path / "extra.jpg"
    shutil.copy(next(ev.rglob("*.jpg")), extra)
    assert main(["identify", str(world / "fp"), str(ev), str(extra), "-o", str(run), "--resume",
                 *RUN_ARGS]) == EXIT_FAIL
    assert "1 new file(s)" in capsys.readouterr().err
    assert (run / "results.jsonl").read_bytes() == before  # nothing mixed in


def test_resume_on_another_backend_or_precision_is_refused(world, tmp_path, capsys):
    """A resume with --precision float64 (or --backend torch) after a numpy float32 start went through: one
    results.jsonl held records of two computations, and the manifest named only the last backend."""
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    lines = (run / "results.jsonl").read_text().splitlines()
    failed = json.loads(lines[-1])
    failed["error"] = {"kind": "simulated", "reason": "an earlier failure"}  # so a resume has work to do
    (run / "results.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(failed)]) + "\n")
    (run / "manifest.json").unlink()  # as if killed before its end (an edited finished run is refused)
    before = (run / "results.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--resume", "--adopt-unverified",
                 *RUN_ARGS, "--precision", "float64"]) == EXIT_FAIL
    assert "computed_by.precision: recorded 'float32', now 'float64'" in capsys.readouterr().err
    pytest.importorskip("torch")
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--resume", "--adopt-unverified",
                 "--quiet", "--backend", "torch"]) == EXIT_FAIL
    assert "computed_by.backend: recorded 'numpy', now 'torch'" in capsys.readouterr().err
    assert (run / "results.jsonl").read_bytes() == before
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--resume", "--adopt-unverified",
                 *RUN_ARGS]) == EXIT_OK


def test_resume_with_the_folder_spelled_differently_adds_nothing(world, tmp_path, monkeypatch):
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    assert main(["identify", str(world / "fp"), "ev", "-o", str(run), *RUN_ARGS]) == EXIT_OK
    before = (run / "results.jsonl").read_bytes()
    os.symlink(ev, tmp_path / "link")
    assert main(["identify", str(world / "fp"), "./ev/", str(tmp_path / "link"), "-o", str(run), "--resume",
                 *RUN_ARGS]) == EXIT_OK
    assert (run / "results.jsonl").read_bytes() == before


def test_changed_file_is_flagged_and_failed_file_is_retried(world, tmp_path):
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    images = sorted(ev.rglob("*.jpg"))
    good = images[0].read_bytes()
    images[1].write_bytes(b"not yet a photograph")  # fails now, fixed below
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_PARTIAL
    first = {r["path"]: r for r in read_results(run / "results.jsonl")}
    assert first[str(images[1])]["error"]["kind"] == "decode"
    images[1].write_bytes(good)  # fixed
    changed = Image.open(io.BytesIO(images[2].read_bytes()))
    changed.save(images[2], format="JPEG", quality=70)  # changed since its record
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--resume", *RUN_ARGS]) == EXIT_PARTIAL
    final = read_results(run / "results.jsonl")
    assert len(final) == len(images) and len({r["realpath"] for r in final}) == len(images)
    by_path = {r["path"]: r for r in final}
    assert by_path[str(images[1])]["error"] is None and by_path[str(images[1])]["pce"]["decision"]
    flag = by_path[str(images[2])]["error"]
    assert flag["kind"] == "changed-since-recorded" and "changed since it was analysed" in flag["reason"]
    # order kept: the retried record takes the place of the error it supersedes
    assert [r["path"] for r in final] == [r for r in first]
    lines = (run / "results.jsonl").read_text().splitlines()
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--resume", *RUN_ARGS]) == EXIT_PARTIAL
    assert (run / "results.jsonl").read_text().splitlines() == lines  # flagged once, not again


def test_a_second_process_is_kept_out_by_the_lock(world, tmp_path, capsys):
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    with run_folder.locked(str(run)):
        assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_FAIL
    assert "another camid process is using this run folder" in capsys.readouterr().err
    assert not (run / "results.jsonl").exists()
    with run_folder.locked(str(run)):
        with pytest.raises(RunFolderError):
            with run_folder.locked(str(run)):
                pass


def test_plan_resume_keys_by_canonical_path_and_hash(tmp_path):
    a = tmp_path / "a.jpg"
    a.write_bytes(b"1")
    sha = hashlib.sha256(b"1").hexdigest()
    rec = {"path": "a.jpg", "realpath": str(a), "sha256": sha, "error": None}
    plan = run_folder.plan_resume([str(a), str(tmp_path / "." / "a.jpg")], [rec])
    assert plan.todo == [] and plan.done == 1 and plan.duplicates == 1
    plan = run_folder.plan_resume([str(a)], [dict(rec, sha256="0" * 64)])
    assert plan.changed and plan.changed[0]["error"]["kind"] == "changed-since-recorded"
    err = {"path": "a.jpg", "realpath": str(a), "error": {"kind": "decode", "reason": "x"}}
    plan = run_folder.plan_resume([str(a)], [err])
    assert plan.todo == [str(a)] and plan.retried == 1
    assert final_view([err, rec]) == [rec]


def test_identify_files_refuses_existing_results_without_resume(world, tmp_path):
    ev = evidence(world, tmp_path)
    results = tmp_path / "run" / "results.jsonl"
    cfg = RunConfig(backend="numpy", progress=False)
    identify_files(str(world / "fp"), [str(ev)], str(results), ("pce",), Params(clip=(128, 128)), cfg)
    with pytest.raises(Exception, match="pass --resume"):
        identify_files(str(world / "fp"), [str(ev)], str(results), ("pce",), Params(clip=(128, 128)), cfg)


def test_evaluate_resume_keeps_its_fingerprints_and_refuses_other_parameters(world, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    run = tmp_path / "eval"
    assert main(["evaluate", str(data), "-o", str(run), *FP_ARGS]) == EXIT_OK
    results, fp = (run / "results.jsonl").read_bytes(), (run / "fingerprints" / "C01.npz").read_bytes()
    assert main(["evaluate", str(data), "-o", str(run), *FP_ARGS]) == EXIT_FAIL  # no silent overwrite
    assert main(["evaluate", str(data), "-o", str(run), "--resume", "--pce-threshold", "30", *FP_ARGS]) == EXIT_FAIL
    assert "params.pce_threshold" in capsys.readouterr().err
    assert main(["evaluate", str(data), "-o", str(run), "--resume", *FP_ARGS]) == EXIT_OK
    assert (run / "results.jsonl").read_bytes() == results
    assert (run / "fingerprints" / "C01.npz").read_bytes() == fp
    assert json.loads((run / "run.json").read_text())["command"] == "evaluate"

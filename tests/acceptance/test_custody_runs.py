"""Run folders under the chain of custody, issue 23 items 6 and 9: every record read back (resume, report,
verify) must agree with its own scores; a resume of results that no manifest vouches for is refused unless
--adopt-unverified (recorded); every file of a run folder is in its manifest or named as foreign by verify, the
report and the command that wrote the manifest."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_VERIFY_FAILED, main
from camid_gpu.config import RunConfig
from camid_gpu.engine import scheduler
from camid_gpu.engine.identification import identify_run
from camid_gpu.engine.scheduler import read_results
from conftest import RUN_ARGS


def _interrupt_after_first_write(monkeypatch) -> None:
    """Ctrl-C as the run writes its second chunk of records (the first is written)."""
    real, calls = scheduler.ResultsWriter.write, []

    def interrupted(self, records):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        real(self, records)

    monkeypatch.setattr(scheduler.ResultsWriter, "write", interrupted)


@pytest.fixture(scope="module")
def finished(world, tmp_path_factory):
    """A finished identify run of the world's four flat images."""
    run = tmp_path_factory.mktemp("custody-runs") / "run"
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), *RUN_ARGS]) == 0
    return run


def _copy(finished, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished, target)
    return target


def _resign(run, change=None):
    """Edit the manifest as a careful forger would (``change(manifest)``), and recompute manifest.sha256."""
    manifest = json.loads((run / "manifest.json").read_text())
    if change:
        change(manifest)
    data = json.dumps(manifest).encode()
    (run / "manifest.json").write_bytes(data)
    (run / "manifest.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  manifest.json\n")


def _listed(relpath, path):
    def change(manifest):
        manifest["outputs"] = [e for e in manifest["outputs"] if e.get("relpath") != relpath] + [
            {"path": str(path), "relpath": relpath, "role": "output", "size": path.stat().st_size,
             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]
    return change


def _forge(run):
    """Write C-other as the decision of the first record, whose own best is its true camera: a record that
    contradicts its own scores (the issue's C03 over a best C02 at PCE 28.5). Returns that record's path."""
    lines = (run / "results.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    other = next(c for c in record["pce"]["scores"] if c != record["pce"]["best"])
    record["pce"]["decision"], record["pce"]["above_threshold"] = other, [other]
    lines[0] = json.dumps(record, sort_keys=True)
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    return record["path"]


# -- item 6: records checked against themselves ----------------------------------------------------------------
def test_record_problems_recomputes_the_decision():
    from camid_gpu.pipeline.records import record_problems

    scores = {"C01": {"pce": 28.5}, "C02": {"pce": 1500.0}, "C03": {"pce": 2.0}}
    good = {"path": "a.jpg", "error": None, "pce": {"scores": scores, "best": "C02", "best_pce": 1500.0,
                                                      "decision": "C02", "above_threshold": ["C02"], "threshold": 60.0}}
    assert record_problems(good) == []
    assert record_problems({"path": "b.jpg", "error": {"kind": "decode", "reason": "x"}}) == []
    forged = json.loads(json.dumps(good))
    forged["pce"].update(decision="C03", above_threshold=["C03"])
    assert any("not those of its own scores" in p for p in record_problems(forged))
    forged["pce"].update(decision="C01", above_threshold=["C02"])
    assert any("its decision 'C01' is not what its own scores give (C02 at PCE 1500.0" in p
               for p in record_problems(forged))
    lowered = json.loads(json.dumps(good))
    lowered["pce"]["threshold"] = 2000.0  # the threshold raised over the decided camera's PCE
    assert record_problems(lowered)
    at_rounding = json.loads(json.dumps(good))  # a PCE within the records' rounding of the threshold: either side
    at_rounding["pce"]["scores"]["C02"]["pce"] = at_rounding["pce"]["best_pce"] = 60.0
    assert record_problems(at_rounding) == []
    votes = {"cameras": ["C01", "C02", "C03"], "satisfied": [[0, 9, 9], [1, 0, 1], [1, 9, 0]],
             "unsatisfied": [[0, 1, 1], [9, 0, 9], [9, 1, 0]]}
    maha = {"membership": {"C01": 100.0, "C02": 0.0, "C03": 50.0}, "associated": ["C01"], "pairwise": votes}
    assert record_problems({"path": "c.jpg", "error": None, "mahalanobis": maha}) == []
    assert record_problems({"path": "c.jpg", "error": None, "mahalanobis": dict(maha, associated=["C03"])})


def test_resume_refuses_a_record_that_contradicts_itself_even_adopted(world, finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    forged = _forge(run)
    (run / "manifest.json").unlink()
    (run / "manifest.sha256").unlink()
    base = ["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), "--resume", *RUN_ARGS]
    assert main(base) == EXIT_FAIL
    assert "has results but no manifest.json" in capsys.readouterr().err
    before = (run / "results.jsonl").read_bytes()
    assert main(base + ["--adopt-unverified"]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert "contradict themselves" in err and "results.jsonl line 1" in err and forged in err
    assert (run / "results.jsonl").read_bytes() == before and not (run / "manifest.json").exists()


def test_verify_and_report_name_a_forged_record_under_a_re_signed_manifest(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    _forge(run)
    _resign(run, _listed("results.jsonl", run / "results.jsonl"))  # the manifest re-made to bless the edit
    assert main(["verify", str(run)]) == EXIT_VERIFY_FAILED
    out = capsys.readouterr().out
    assert "RECORD   results.jsonl line 1" in out and "1 record(s) contradicting themselves" in out
    assert main(["report", str(run), "-o", str(tmp_path / "r.html"), "--quiet"]) == EXIT_VERIFY_FAILED
    assert "results.jsonl line 1" in capsys.readouterr().err
    assert "CHAIN OF CUSTODY" in (tmp_path / "r.html").read_text()


def test_calibrate_refuses_a_run_whose_records_contradict_themselves(finished, tmp_path):
    """A calibration fitted on a forged record (its decision not what its own scores give, the manifest re-made
    to bless it) would turn the forgery into likelihood ratios: camid calibrate's reading of a run refuses it."""
    from camid_gpu.errors import CamidError
    from camid_gpu.evidence.pairs import checked_results

    run = _copy(finished, tmp_path)
    _forge(run)
    _resign(run, _listed("results.jsonl", run / "results.jsonl"))
    with pytest.raises(CamidError, match="contradict their own scores"):
        checked_results(str(run))


def test_adopting_results_without_a_manifest_is_recorded(world, finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    (run / "manifest.json").unlink()  # as after kill -9
    base = ["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), "--resume", *RUN_ARGS]
    assert main(base) == EXIT_FAIL
    assert main(base + ["--adopt-unverified"]) == EXIT_OK
    adopted = json.loads((run / "manifest.json").read_text())["adopted_unverified"]
    assert adopted[0]["results_sha256"] == hashlib.sha256((finished / "results.jsonl").read_bytes()).hexdigest()
    assert json.loads((run / "run.json").read_text())["adopted_unverified"] == adopted
    assert main(base) == EXIT_OK  # verified from now on: the adoption stays recorded
    assert json.loads((run / "manifest.json").read_text())["adopted_unverified"] == adopted
    capsys.readouterr()
    assert main(["verify", str(run)]) == EXIT_OK
    assert "adopted unverified" in capsys.readouterr().out
    assert main(["report", str(run), "--quiet"]) == EXIT_OK
    assert "--adopt-unverified" in (run / "report.html").read_text()


def test_an_interrupted_run_writes_the_manifest_of_what_it_wrote(world, tmp_path, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM, or a full disk) after the first records: the run still leaves a manifest of them, so a
    plain --resume can check them (only a run killed outright needs --adopt-unverified). Until then the part is
    never taken for a finished run: verify notes it, the report says it, calibrate refuses it."""
    from camid_gpu.errors import CamidError
    from camid_gpu.evidence.pairs import checked_results

    run = tmp_path / "run"
    _interrupt_after_first_write(monkeypatch)
    config = RunConfig(backend="numpy", progress=False, chunk=1)
    with pytest.raises(KeyboardInterrupt):
        identify_run(str(world / "fp"), [str(world / "data" / "disputed")], str(run), ("pce",), _params(), config)
    monkeypatch.undo()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["interrupted"] == "KeyboardInterrupt" and len(read_results(run / "results.jsonl")) == 1
    capsys.readouterr()
    assert main(["verify", str(run)]) == EXIT_OK
    assert "NOTE     the run was interrupted (KeyboardInterrupt)" in capsys.readouterr().out
    assert main(["report", str(run), "-o", str(tmp_path / "part.html"), "--quiet"]) == EXIT_OK
    assert "the run was interrupted (KeyboardInterrupt)" in (tmp_path / "part.html").read_text()
    with pytest.raises(CamidError, match="interrupted"):
        checked_results(str(run))
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), "--resume",
                 *RUN_ARGS]) == EXIT_OK
    assert len(read_results(run / "results.jsonl")) == 4 and "interrupted" not in \
        json.loads((run / "manifest.json").read_text())


def test_a_refused_resume_writes_no_manifest(world, finished, tmp_path):
    """The manifest of an interrupted run is written only once the run's checks passed: a resume refused for an
    edited record must not bless it."""
    run = _copy(finished, tmp_path)
    (run / "results.jsonl").write_bytes((run / "results.jsonl").read_bytes().replace(b'"C0', b'"X0', 1))
    before = (run / "manifest.json").read_bytes()
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), "--resume",
                 *RUN_ARGS]) == EXIT_FAIL
    assert (run / "manifest.json").read_bytes() == before


# -- item 9: every file of a run folder is in its manifest or named as foreign --------------------------------
def test_a_file_dropped_into_a_run_folder_is_foreign(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    assert main(["verify", str(run)]) == EXIT_OK
    assert main(["report", str(run), "--quiet"]) == EXIT_OK  # report.html + .sha256 beside: the report's own
    assert main(["verify", str(run)]) == EXIT_OK
    (run / "sub").mkdir()
    (run / "sub" / "notes.txt").write_text("an examiner's note")
    capsys.readouterr()
    assert main(["verify", str(run)]) == EXIT_VERIFY_FAILED
    assert "FOREIGN  sub/notes.txt [run folder]" in capsys.readouterr().out
    assert main(["report", str(run), "-o", str(tmp_path / "r.html"), "--quiet"]) == EXIT_VERIFY_FAILED
    assert "sub/notes.txt is in the run folder but not in its manifest" in capsys.readouterr().err
    (run / "report.html").write_text("edited")  # a report whose checksum no longer agrees is foreign too
    assert main(["verify", str(run)]) == EXIT_VERIFY_FAILED
    assert "FOREIGN  report.html " in capsys.readouterr().out


def test_an_edited_evidence_file_turns_the_report_red(finished, tmp_path, capsys):
    """The report read evidence.json with its own weaker check and stayed green with exit 0."""
    run = _copy(finished, tmp_path)
    (run / "evidence.json").write_text(json.dumps({"format": "camid-evidence", "images": []}))
    _resign(run, _listed("evidence.json", run / "evidence.json"))  # as a --calibration run lists it
    assert main(["verify", str(run)]) == EXIT_OK
    (run / "evidence.json").write_text(json.dumps({"format": "camid-evidence", "images": [1]}))
    assert main(["report", str(run), "-o", str(tmp_path / "r.html"), "--quiet"]) == EXIT_VERIFY_FAILED
    assert "evidence.json differs from the manifest" in capsys.readouterr().err


def test_a_resume_without_calibration_says_the_old_evidence_file_is_foreign(world, finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    (run / "evidence.json").write_text(json.dumps({"format": "camid-evidence", "images": []}))
    _resign(run, _listed("evidence.json", run / "evidence.json"))
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), "--resume",
                 *RUN_ARGS]) == EXIT_OK
    assert "evidence.json is in the run folder but not in its manifest" in capsys.readouterr().err
    assert main(["verify", str(run)]) == EXIT_VERIFY_FAILED
    assert "FOREIGN  evidence.json" in capsys.readouterr().out


def test_a_cluster_run_lists_its_working_files(world, tmp_path, capsys):
    run = tmp_path / "cluster"
    assert main(["cluster", str(world / "data" / "disputed"), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    capsys.readouterr()
    assert main(["verify", str(run)]) == EXIT_OK, capsys.readouterr().out
    rows = next((run / "residuals").iterdir())
    rows.write_bytes(rows.read_bytes()[:-4] + b"\0\0\0\0")  # one residual sample of the last row
    assert main(["verify", str(run)]) == EXIT_VERIFY_FAILED
    assert main(["cluster", str(world / "data" / "disputed"), "-o", str(run), "--resume", *RUN_ARGS]) == EXIT_FAIL
    assert "differs from its SHA-256 in the manifest" in capsys.readouterr().err


def _params():
    from camid_gpu.config import Params

    return Params()


def test_a_cluster_resume_without_a_manifest_is_refused_unless_adopted(world, tmp_path, capsys):
    run = tmp_path / "cluster"
    args = ["cluster", str(world / "data" / "disputed"), "-o", str(run), *RUN_ARGS]
    assert main(args) == EXIT_OK
    (run / "manifest.json").unlink()
    assert main(args + ["--resume"]) == EXIT_FAIL
    assert "has results but no manifest.json" in capsys.readouterr().err
    assert main(args + ["--resume", "--adopt-unverified"]) == EXIT_OK
    adopted = json.loads((run / "manifest.json").read_text())["adopted_unverified"]
    assert len(adopted) == 1 and adopted[0]["results_bytes"] > 0
    assert main(args + ["--resume"]) == EXIT_OK  # verified again, the adoption kept in the record
    assert json.loads((run / "manifest.json").read_text())["adopted_unverified"] == adopted


def test_an_interrupted_cluster_run_writes_the_manifest_of_what_it_wrote(world, tmp_path, monkeypatch, capsys):
    """Ctrl-C after the residual step: the clustering run leaves a manifest of its records, parameters and working
    files, saying why it stopped, so that a plain --resume checks them and finishes the run."""
    from camid_gpu.cluster import run as cluster_run

    run = tmp_path / "cluster"
    args = ["cluster", str(world / "data" / "disputed"), "-o", str(run), *RUN_ARGS]

    def stopped(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster_run, "pair_stage", stopped)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.undo()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["interrupted"] == "KeyboardInterrupt"
    assert any(e["path"].endswith("images.jsonl") for e in manifest["outputs"])
    capsys.readouterr()
    assert main(["verify", str(run)]) == EXIT_OK
    assert main(args + ["--resume"]) == EXIT_OK


def test_an_interrupted_evaluate_run_writes_the_manifest_of_what_it_wrote(world, tmp_path, monkeypatch):
    from camid_gpu.config import Params
    from camid_gpu.engine.evaluation import evaluate_dataset

    run = tmp_path / "eval"
    _interrupt_after_first_write(monkeypatch)
    config = RunConfig(backend="numpy", progress=False, chunk=1)
    with pytest.raises(KeyboardInterrupt):
        evaluate_dataset(str(world / "data"), str(run), ("pce",), Params(pce_clip=(128, 128), mahalanobis_clip=(128, 128), refs=3),
                         config)
    monkeypatch.undo()
    assert json.loads((run / "manifest.json").read_text())["interrupted"] == "KeyboardInterrupt"
    assert main(["verify", str(run)]) == EXIT_OK
    assert main(["evaluate", str(world / "data"), "-o", str(run), "--resume", "--clip", "128", "--refs", "3",
                 "--method", "pce", *RUN_ARGS]) == EXIT_OK
    assert len(read_results(run / "results.jsonl")) == 4


def test_an_interrupted_cluster_run_writes_the_manifest_of_what_it_wrote(world, tmp_path, monkeypatch):
    from camid_gpu.cluster import stages

    run = tmp_path / "cluster"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "group_gram", interrupted)  # after every residual row is written
    args = ["cluster", str(world / "data" / "disputed"), "-o", str(run), *RUN_ARGS]
    assert main(args) == 130
    monkeypatch.undo()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["interrupted"] == "KeyboardInterrupt"
    assert any(e.get("relpath", "").startswith("residuals/") for e in manifest["outputs"])
    assert main(["verify", str(run)]) == EXIT_OK
    assert main(args + ["--resume"]) == EXIT_OK
    assert "interrupted" not in json.loads((run / "manifest.json").read_text())

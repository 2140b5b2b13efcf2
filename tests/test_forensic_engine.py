"""Issue 9, the engine side: no silent wrong answer, no evidence touched, no hang, no traceback.

One test (or more) per numbered item: 1 resume, 2 degenerate fingerprints, 3 camera identity, 4 evidence
overwrite, 7 parameters, 12 hangs, 14 tracebacks, 15 atomic writes, 16 messages, 17 verify; and the
acceptance run over a folder that mixes hostile files with good images.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, EXIT_VERIFY_FAILED, main
from camid_gpu.config import MIN_REFERENCES, Params, RunConfig, parse_bytes
from camid_gpu.engine import run_folder
from camid_gpu.engine.runner import identify_files
from camid_gpu.engine.scheduler import read_results
from camid_gpu.errors import FingerprintError, ImageContentError, RunFolderError, ScoreError
from camid_gpu.pipeline.prepare import content_problem, prepare_disputed
from camid_gpu.pipeline.records import error_entry, final_view, pce_record
from camid_gpu.store import load_fingerprint, load_store

FP_ARGS = ["--clip", "128", "--refs", "3", "--method", "pce", "--quiet", "--backend", "numpy"]
RUN_ARGS = ["--quiet", "--backend", "numpy"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, two_camera_store):
    """Two synthetic cameras (3 references each, 160x192), their PCE fingerprints, and disputed images."""
    root = tmp_path_factory.mktemp("forensic")
    shutil.copytree(two_camera_store(seed=11, disputed_flat=2, backend="numpy"), root, dirs_exist_ok=True)
    return root


def evidence(world, tmp_path, name="ev"):
    """A private copy of the disputed images (tests may change it)."""
    folder = tmp_path / name
    shutil.copytree(world / "data" / "disputed", folder)
    return folder


def copy_store(world, tmp_path, name="fpcopy"):
    folder = tmp_path / name
    shutil.copytree(world / "fp", folder)
    return folder


def rehash(json_path):
    """Recompute the arrays hash recorded in a fingerprint JSON (a tamperer would)."""
    meta = json.loads(json_path.read_text())
    npz = json_path.parent / meta["arrays_file"]
    meta["arrays_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    json_path.write_text(json.dumps(meta))
    return meta


def write_npz(path, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def snapshot(folder):
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


# ------------------------------------------------------------------------------------------------
# 1. resume
# ------------------------------------------------------------------------------------------------
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
    meta["references"] = meta["references"][:2] + meta["references"][:1]  # another store (other metadata)
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
    (run / "manifest.json").unlink()  # as if interrupted before its end (an edited finished run is refused)
    before = (run / "results.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--resume", *RUN_ARGS,
                 "--precision", "float64"]) == EXIT_FAIL
    assert "computed_by.precision: recorded 'float32', now 'float64'" in capsys.readouterr().err
    pytest.importorskip("torch")
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--resume", "--quiet",
                 "--backend", "torch"]) == EXIT_FAIL
    assert "computed_by.backend: recorded 'numpy', now 'torch'" in capsys.readouterr().err
    assert (run / "results.jsonl").read_bytes() == before
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--resume", *RUN_ARGS]) == EXIT_OK


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


# ------------------------------------------------------------------------------------------------
# 2. degenerate references and fingerprints, NaN never decides
# ------------------------------------------------------------------------------------------------
def test_unusable_references_are_rejected_with_reasons():
    rng = np.random.default_rng(0)
    noise = rng.normal(128, 10, (64, 64)).clip(0, 255).astype(np.uint8)
    assert content_problem(noise, 8, reference=True) is None
    assert "constant" in content_problem(np.full((64, 64), 255, np.uint8), 8, reference=True)
    assert "constant" in content_problem(np.zeros((64, 64, 3), np.uint8), 8, reference=True)
    blown = noise.copy()
    blown[:40] = 255
    assert "saturated" in content_problem(blown, 8, reference=True)
    dark = rng.normal(2, 1.5, (64, 64)).clip(0, 255).astype(np.uint8)
    assert "too dark" in content_problem(dark, 8, reference=True)
    assert content_problem(dark, 8, reference=False) is None  # a dark disputed image is still analysed
    assert "saturated" in content_problem((blown.astype(np.uint16) * 257), 16, reference=True)


def test_black_and_white_references_build_no_fingerprint(tmp_path, capsys):
    refs = tmp_path / "refs" / "capon"
    refs.mkdir(parents=True)
    for k in range(3):
        Image.new("RGB", (192, 160), (0, 0, 0) if k < 2 else (255, 255, 255)).save(refs / f"r{k}.png")
    assert main(["fingerprint", str(tmp_path / "refs"), "-o", str(tmp_path / "fp"), *FP_ARGS]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert err.count("constant image") == 3 and "usable reference" in err
    assert not (tmp_path / "fp" / "capon.npz").exists()


@pytest.mark.parametrize("poison", ["nan", "inf", "zeros", "missing_k", "huge_header", "wrong_shape"])
def test_tampered_arrays_are_refused_at_load(world, tmp_path, poison):
    store = copy_store(world, tmp_path)
    good = load_fingerprint(store / "C01.json").k.copy()
    if poison == "nan":
        good[3, 4] = np.nan
        write_npz(store / "C01.npz", {"k": good})
    elif poison == "inf":
        good[0, 0] = np.inf
        write_npz(store / "C01.npz", {"k": good})
    elif poison == "zeros":
        write_npz(store / "C01.npz", {"k": np.zeros_like(good)})
    elif poison == "missing_k":
        write_npz(store / "C01.npz", {"other": good})
    elif poison == "wrong_shape":
        write_npz(store / "C01.npz", {"k": good[:64]})
    else:  # a .npy header declaring 40000 x 40000 float32 (6.4 GB) over 16 bytes of data
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (40000, 40000)})
        with zipfile.ZipFile(store / "C01.npz", "w") as archive:
            archive.writestr("k.npy", header.getvalue() + b"\0" * 16)
    rehash(store / "C01.json")
    with pytest.raises(FingerprintError) as info:
        load_store(store)
    message = str(info.value)
    expected = {"nan": "non-finite", "inf": "non-finite", "zeros": "degenerate", "missing_k": "not declared",
                "huge_header": "[40000, 40000]", "wrong_shape": "declares float32 [128, 128]"}[poison]
    assert expected in message and "C01.npz" in message


def test_too_few_references_refused_at_load(world, tmp_path):
    store = copy_store(world, tmp_path)
    meta = json.loads((store / "C02.json").read_text())
    meta["params"]["refs"] = MIN_REFERENCES - 1
    (store / "C02.json").write_text(json.dumps(meta))
    with pytest.raises(FingerprintError, match="at least 2 are needed"):
        load_store(store)


def test_nan_score_never_decides():
    from camid_gpu.pipeline.records import camera_score

    def found(value):
        return {"pce": value, "ncc": 0.1, "log10_p_fa": -5.0, "peak_shift": [0, 0], "match": "full-frame"}

    scores = {"A": camera_score(found(np.nan), 0, 1), "B": camera_score(found(75.0), 0, 1),
              "C": camera_score(found(np.inf), 0, 1)}
    rec = pce_record(scores, {}, 60.0, "x.jpg")
    assert rec["best"] == "B" and rec["decision"] == "B" and rec["above_threshold"] == ["B"]
    assert "non-finite" in rec["scores"]["A"]["error"] and rec["scores"]["A"]["pce"] is None
    assert "error" not in rec["scores"]["B"]
    with pytest.raises(ScoreError, match="every PCE came out non-finite"):
        pce_record({"A": scores["A"]}, {}, 60.0, "x.jpg")


def test_constant_disputed_image_gets_a_per_file_error(world, tmp_path):
    flat = tmp_path / "grey.png"
    Image.new("RGB", (192, 160), (128, 128, 128)).save(flat)
    with pytest.raises(ImageContentError, match="constant image"):
        prepare_disputed(str(flat), Params(clip=(128, 128)), (160, 192))
    run = tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(flat), "-o", str(run), *RUN_ARGS]) == EXIT_PARTIAL
    (record,) = read_results(run / "results.jsonl")
    assert record["error"]["kind"] == "no-usable-content" and "pce" not in record


# ------------------------------------------------------------------------------------------------
# 3. camera identity
# ------------------------------------------------------------------------------------------------
def test_camera_field_must_equal_the_file_name(world, tmp_path):
    store = copy_store(world, tmp_path)
    meta = json.loads((store / "C01.json").read_text())
    meta["camera"] = "C02"
    (store / "C01.json").write_text(json.dumps(meta))
    with pytest.raises(FingerprintError, match=r"'camera' field is 'C02' but the file is named 'C01'"):
        load_store(store)


def test_duplicate_camera_names_are_refused(world, tmp_path):
    store = copy_store(world, tmp_path)
    meta = json.loads((store / "C01.json").read_text())
    meta.update(camera="c01", arrays_file="c01.npz")  # a camera keeps its arrays in <camera>.npz
    shutil.copy(store / "C01.npz", store / "c01.npz")
    (store / "c01.json").write_text(json.dumps(meta))  # the same camera under a second name
    with pytest.raises(FingerprintError, match="appears twice"):
        load_store(store)


def test_a_camera_never_scores_another_cameras_arrays(world, tmp_path, capsys):
    """C01.json naming C02.npz as its arrays file (with C02's recorded hash, no rehash needed) loaded C02's K as
    C01's: C02's image was attributed to C01, exit 0. A copy of one camera's arrays under a second name tied
    the two cameras, the first name winning."""
    store = copy_store(world, tmp_path)
    c01, c02 = (json.loads((store / f"{c}.json").read_text()) for c in ("C01", "C02"))
    c01.update(arrays_file=c02["arrays_file"], arrays_sha256=c02["arrays_sha256"])
    (store / "C01.json").write_text(json.dumps(c01))
    with pytest.raises(FingerprintError, match="camera 'C01' keeps its arrays in C01.npz"):
        load_store(store)
    store = copy_store(world, tmp_path, "twice")
    shutil.copy(store / "C01.npz", store / "C03.npz")
    meta = json.loads((store / "C01.json").read_text())
    meta.update(camera="C03", arrays_file="C03.npz")
    (store / "C03.json").write_text(json.dumps(meta))
    assert main(["identify", str(store), str(evidence(world, tmp_path)), "-o", str(tmp_path / "run"),
                 *RUN_ARGS]) == EXIT_FAIL
    assert "'C01' and 'C03' have byte-identical fingerprint arrays" in capsys.readouterr().err


def test_a_fingerprint_declaring_more_samples_than_any_image_is_not_read(world, tmp_path):
    """Metadata and .npy header agreeing on 40000 x 40000 passed the shape check, and the array was read with
    read(6.4 GB): a deflated bomb of that size would have been inflated whole."""
    store = copy_store(world, tmp_path)
    meta = json.loads((store / "C01.json").read_text())
    meta["source_shape"] = [40000, 40000]
    meta["geometry"]["pce"].update(clip=None, shape=[40000, 40000])
    meta["arrays"]["k"]["shape"] = [40000, 40000]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (40000, 40000)})
    with zipfile.ZipFile(store / "C01.npz", "w") as archive:
        archive.writestr("k.npy", header.getvalue() + b"\0" * 16)
    (store / "C01.json").write_text(json.dumps(meta))
    rehash(store / "C01.json")
    with pytest.raises(FingerprintError, match="over the 250000000-pixel limit"):
        load_fingerprint(store / "C01.json")


# ------------------------------------------------------------------------------------------------
# 4. evidence is never overwritten
# ------------------------------------------------------------------------------------------------
def test_outputs_never_touch_evidence(world, tmp_path, capsys):
    ev = evidence(world, tmp_path)
    before = snapshot(ev)
    victim = str(sorted(ev.rglob("*.jpg"))[0])
    for extra in (["--csv", victim], ["--json", victim], ["-o", str(ev / "C01" / "run")], ["-o", victim]):
        out = [] if extra[0] == "-o" else ["-o", str(tmp_path / "run")]
        assert main(["identify", str(world / "fp"), str(ev), *out, *extra, "--overwrite", *RUN_ARGS]) == EXIT_FAIL
        assert "never writes over or into evidence" in capsys.readouterr().err
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(world / "fp" / "run"), *RUN_ARGS]) == EXIT_FAIL
    assert snapshot(ev) == before and not (tmp_path / "run").exists()
    assert main(["evaluate", str(world / "data"), "-o", str(world / "data" / "refs" / "x"), *FP_ARGS]) == EXIT_FAIL


def test_existing_outputs_need_overwrite(world, tmp_path, capsys):
    ev, table = evidence(world, tmp_path), tmp_path / "table.csv"
    table.write_text("someone's earlier table\n")
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(tmp_path / "r1"), "--csv", str(table),
                 *RUN_ARGS]) == EXIT_FAIL
    assert "exists; pass --overwrite" in capsys.readouterr().err and table.read_text() == "someone's earlier table\n"
    assert not (tmp_path / "r1" / "results.jsonl").exists()  # refused before the work
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(tmp_path / "r2"), "--csv", str(table),
                 "--overwrite", *RUN_ARGS]) == EXIT_OK
    assert table.read_text().startswith("path,sha256,camera")
    assert main(["fingerprint", str(world / "data" / "refs"), "-o", str(world / "fp"), *FP_ARGS]) == EXIT_FAIL
    assert "already holds fingerprint files" in capsys.readouterr().err


def test_outputs_never_replace_each_other_or_the_run_folders_own_files(world, tmp_path, capsys):
    """--csv RUN/results.jsonl replaced the results with the CSV (and the manifest hashed the CSV as the
    results); --json RUN/manifest.json was replaced by the manifest; --csv X --json X kept only one."""
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    for extra in (["--csv", str(run / "results.jsonl")], ["--json", str(run / "manifest.json")],
                  ["--csv", str(run / "run.json")], ["--csv", str(tmp_path / "t"), "--json", str(tmp_path / "t")]):
        assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *extra, "--overwrite",
                     *RUN_ARGS]) == EXIT_FAIL
        err = capsys.readouterr().err
        assert "run folder's own" in err or "are the same file" in err, err
        assert not (run / "results.jsonl").exists()
    assert main(["evaluate", str(world / "data"), "-o", str(tmp_path / "ev"), "--json",
                 str(tmp_path / "ev" / "manifest.json"), *FP_ARGS]) == EXIT_FAIL
    assert "run folder's own 'manifest.json'" in capsys.readouterr().err
    # a file of the user's own inside the run folder is fine
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), "--csv", str(run / "t.csv"),
                 *RUN_ARGS]) == EXIT_OK


def test_camera_folders_that_would_collide_in_the_store_are_refused_before_work(world, tmp_path, capsys):
    """A camera folder named 'manifest' had its manifest.json replaced by the run manifest (exit 0, the camera
    gone); 'Cam' and 'cam' were both built, into a store that every later load refuses (and that a
    case-insensitive disk holds only one of)."""
    refs = world / "data" / "refs"
    for names, expected in ((("manifest", "C02"), "is reserved"), (("Cam", "cam"), "differ only in case")):
        folder = tmp_path / "-".join(names)
        for name, source in zip(names, sorted(refs.iterdir())):
            shutil.copytree(source, folder / name)
        out = tmp_path / f"fp-{names[0]}"
        assert main(["fingerprint", str(folder), "-o", str(out), *FP_ARGS]) == EXIT_FAIL
        assert expected in capsys.readouterr().err
        assert not out.exists() or not list(out.glob("*.npz"))


def test_fingerprint_overwrite_never_leaves_another_runs_cameras_in_the_store(world, tmp_path, capsys):
    """--overwrite into a store with cameras this run does not build left them beside the new ones (not in the
    new manifest, yet scored by every identify); a camera that failed this time kept its old fingerprint."""
    store = copy_store(world, tmp_path)
    refs = tmp_path / "refs"
    shutil.copytree(world / "data" / "refs" / "C01", refs / "C03")
    assert main(["fingerprint", str(refs), "-o", str(store), *FP_ARGS, "--overwrite"]) == EXIT_FAIL
    assert "cameras this run does not build (C01, C02)" in capsys.readouterr().err
    assert not (store / "C03.json").exists()
    refs = tmp_path / "refs2"
    shutil.copytree(world / "data" / "refs", refs)
    for extra in sorted((refs / "C02").iterdir())[1:]:
        extra.unlink()  # C02 now has one reference: no fingerprint this time
    assert main(["fingerprint", str(refs), "-o", str(store), *FP_ARGS, "--overwrite"]) == EXIT_PARTIAL
    assert "C02.npz" in capsys.readouterr().err
    assert sorted(p.name for p in store.glob("*.npz")) == ["C01.npz"]
    assert [fp.camera for fp in load_store(store)] == ["C01"]


def test_report_is_never_written_into_a_folder_of_evidence(world, tmp_path, capsys):
    """camid report RUN -o EVIDENCE/C01/report.html (or into the fingerprint folder) wrote there: only the
    input files themselves were protected, not the folders the run read them from."""
    pytest.importorskip("matplotlib")
    ev, store, run = evidence(world, tmp_path), copy_store(world, tmp_path), tmp_path / "run"
    assert main(["identify", str(store), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    before, store_before = snapshot(ev), snapshot(store)
    for target in (ev / "C01" / "report.html", store / "report.html"):
        assert main(["report", str(run), "-o", str(target)]) == EXIT_FAIL
        assert "never writes over or into evidence" in capsys.readouterr().err
    assert snapshot(ev) == before and snapshot(store) == store_before
    assert main(["report", str(run)]) == EXIT_OK and (run / "report.html").exists()


def test_a_run_folder_holds_one_commands_run(world, tmp_path, capsys):
    """identify -o INTO a fingerprint store replaced the store's manifest with its own; residual -o into an
    identify run folder replaced that run's manifest; a second residual run appended to the first one's
    residuals.jsonl (two sigmas in one index) and replaced the TIFFs the first one listed."""
    ev, store = evidence(world, tmp_path), copy_store(world, tmp_path)
    before = snapshot(store)
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(store), *RUN_ARGS]) == EXIT_FAIL
    assert "holds the manifest of a 'camid fingerprint' run" in capsys.readouterr().err
    assert snapshot(store) == before
    run = tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    manifest = (run / "manifest.json").read_bytes()
    for command in (["residual", str(ev)], ["cluster", str(ev)]):
        assert main([*command, "-o", str(run), *RUN_ARGS]) == EXIT_FAIL
        assert "holds the manifest of a 'camid identify' run" in capsys.readouterr().err
    assert (run / "manifest.json").read_bytes() == manifest
    res = tmp_path / "res"
    assert main(["residual", str(ev), "-o", str(res), *RUN_ARGS]) == EXIT_OK
    index = (res / "residuals.jsonl").read_bytes()
    assert main(["residual", str(ev), "-o", str(res), "--sigma", "5", *RUN_ARGS]) == EXIT_FAIL
    assert "already holds residuals" in capsys.readouterr().err
    assert (res / "residuals.jsonl").read_bytes() == index


def test_residual_refuses_an_image_too_small_for_a_residual(tmp_path, capsys):
    """camid residual on a 1x160 or 128x1 PNG wrote an all-zero residual TIFF (std 0) as a clean result, after
    numpy's 'Mean of empty slice' warnings that named no file (identify and cluster refused such images)."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, shape in (("row.png", (1, 160)), ("col.png", (128, 1)), ("ok.png", (64, 80))):
        Image.fromarray((rng.random(shape) * 200 + 20).astype(np.uint8)).save(folder / name)
    assert main(["residual", str(folder), "-o", str(tmp_path / "res"), *RUN_ARGS]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "row.png: image is 1x160" in err and "col.png: image is 128x1" in err
    lines = (tmp_path / "res" / "residuals.jsonl").read_text().splitlines()
    assert [os.path.basename(json.loads(line)["path"]) for line in lines] == ["ok.png"]


# ------------------------------------------------------------------------------------------------
# 7. parameters
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option,value", [("--sigma-query", "inf"), ("--sigma-query", "nan"), ("--sigma-query", "0"),
                                          ("--pce-threshold", "nan"), ("--pce-threshold", "inf"),
                                          ("--pce-threshold", "-1000"), ("--shift-range", "-3"),
                                          ("--max-host-memory", "inf"), ("--max-host-memory", "1e400"),
                                          ("--max-gpu-memory", "-1G"), ("--workers", "0"),
                                          ("--dask", "local:0"), ("--dask", "local:x"),
                                          ("--device", "banana"), ("--device", "cuda:7")])
def test_bad_parameters_are_one_clear_line(world, tmp_path, capsys, option, value):
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(tmp_path / "r"),
                 f"{option}={value}", *RUN_ARGS[:1]]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert err.startswith("camid: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert option.lstrip("-").split("-")[0] in err.replace("_", "-")
    assert not (tmp_path / "r").exists()


def test_refs_and_numbers_name_the_option(capsys):
    with pytest.raises(ValueError, match="--refs must be a whole number"):
        from camid_gpu.config import parse_refs

        parse_refs("ten")
    with pytest.raises(ValueError, match="finite, positive"):
        parse_bytes("inf")
    with pytest.raises(ValueError, match="workers"):
        RunConfig(workers=0)


def test_manifest_records_the_store_parameters_actually_used(world, tmp_path, capsys):
    fp = tmp_path / "fp25"
    assert main(["fingerprint", str(world / "data" / "refs"), "-o", str(fp), "--sigma-fingerprint", "2.5",
                 *FP_ARGS]) == EXIT_OK
    ev = evidence(world, tmp_path)
    assert main(["identify", str(fp), str(ev), "-o", str(tmp_path / "r"), "--sigma-fingerprint", "3",
                 *RUN_ARGS]) == EXIT_FAIL
    assert "built with 2.5" in capsys.readouterr().err
    assert main(["identify", str(fp), str(ev), "-o", str(tmp_path / "r"), *RUN_ARGS]) == EXIT_OK
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["params"]["sigma_fingerprint"] == 2.5


# ------------------------------------------------------------------------------------------------
# 12. hangs
# ------------------------------------------------------------------------------------------------
def _in_subprocess(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


def test_fifo_fingerprint_arrays_and_manifest_entries_do_not_hang(world, tmp_path):
    store = copy_store(world, tmp_path)
    os.remove(store / "C01.npz")
    os.mkfifo(store / "C01.npz")
    done = _in_subprocess(f"from camid_gpu.store import load_store\ntry:\n load_store({str(store)!r})\n"
                          f"except Exception as e: print(type(e).__name__, e)", timeout=60)
    assert "FingerprintError" in done.stdout and "FIFO" in done.stdout
    manifest = tmp_path / "manifest.json"
    os.mkfifo(tmp_path / "pipe.jpg")
    manifest.write_text(json.dumps({"format": "camid-manifest", "version": 1, "outputs": [], "inputs": [
        {"path": str(tmp_path / "pipe.jpg"), "role": "disputed", "sha256": "0" * 64}]}))
    done = _in_subprocess(f"from camid_gpu.cli import main\nraise SystemExit(main(['verify', {str(manifest)!r}]))")
    assert done.returncode == EXIT_VERIFY_FAILED and "MISSING" in done.stdout and "FIFO" in done.stdout


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


# ------------------------------------------------------------------------------------------------
# 14. no tracebacks
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["missing_camera", "methods_string", "shape_text", "not_object", "no_arrays_file"])
def test_damaged_fingerprint_metadata_is_a_clear_error(world, tmp_path, capsys, damage):
    store = copy_store(world, tmp_path)
    meta = json.loads((store / "C01.json").read_text())
    if damage == "missing_camera":
        del meta["camera"]
    elif damage == "methods_string":
        meta["methods"] = "pce"
    elif damage == "shape_text":
        meta["source_shape"] = ["a", "b"]
    elif damage == "no_arrays_file":
        del meta["arrays_file"]
    else:
        meta = [meta]
    (store / "C01.json").write_text(json.dumps(meta))
    assert main(["identify", str(store), str(world / "data" / "disputed"), "-o", str(tmp_path / "r"),
                 *RUN_ARGS]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert err.startswith("camid: error:") and "C01.json" in err and "Traceback" not in err


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


# ------------------------------------------------------------------------------------------------
# 15. atomic writes, outputs checked before the work
# ------------------------------------------------------------------------------------------------
def test_atomic_write_leaves_old_file_and_no_temporary(tmp_path):
    from camid_gpu._shared.files import atomic_write

    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(OSError):
        with atomic_write(target, "w") as handle:
            handle.write("half")
            raise OSError(28, "No space left on device")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_unwritable_csv_is_refused_before_the_work(world, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(tmp_path / "r"),
                 "--csv", str(blocker / "t.csv"), *RUN_ARGS]) == EXIT_FAIL
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------------
# 16. messages
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# 17. verify
# ------------------------------------------------------------------------------------------------
def test_every_run_records_and_prints_the_manifest_hash(world, tmp_path, capsys):
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    out = capsys.readouterr().out
    digest = hashlib.sha256((run / "manifest.json").read_bytes()).hexdigest()
    assert (run / "manifest.sha256").read_text() == f"{digest}  manifest.json\n" and digest in out
    assert main(["verify", str(run), "--expect-sha256", digest]) == EXIT_OK
    assert main(["verify", str(run), "--expect-sha256", "0" * 64]) == EXIT_VERIFY_FAILED
    assert "expected 0000" in capsys.readouterr().out
    fp_manifest = json.loads((world / "fp" / "manifest.json").read_text())
    assert fp_manifest["command"] == "fingerprint" and (world / "fp" / "manifest.sha256").exists()


@pytest.mark.parametrize("edit", ["null_hashes", "empty_lists", "missing_fields", "mistyped", "bad_hash"])
def test_verify_fails_when_nothing_is_checked(world, tmp_path, capsys, edit):
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    manifest = json.loads((run / "manifest.json").read_text())
    if edit == "null_hashes":
        for key in ("inputs", "outputs", "fingerprints"):
            for entry in manifest[key]:
                entry["sha256"] = None
                for ref in entry.get("references", []):
                    ref["sha256"] = None
    elif edit == "empty_lists":
        manifest.update(inputs=[], outputs=[], fingerprints=[])
    elif edit == "missing_fields":
        del manifest["inputs"], manifest["outputs"]
    elif edit == "mistyped":
        manifest["inputs"] = "everything"
        manifest["outputs"] = [3, {"path": 4}]
    else:
        manifest["inputs"][0]["sha256"] = "abc"
    (run / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["verify", str(run / "manifest.json")]) == EXIT_VERIFY_FAILED
    out = capsys.readouterr().out
    assert "FAILED" in out and "all unchanged" not in out


def test_verify_prints_a_hostile_manifests_fields_escaped(world, tmp_path, capsys):
    """verify printed a manifest's 'role' and recorded hash raw: a terminal escape or a newline in them faked
    lines of the verdict (the recorded hash was checked for its length only, not for hex digits)."""
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["inputs"][0]["role"] = "x\x1b[2J\nall unchanged"
    manifest["inputs"][0]["sha256"] = "0" * 64  # reported as changed, with its role
    manifest["inputs"][1]["sha256"] = "\x1b[31m" + "a" * 59
    (run / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["verify", str(run)]) == EXIT_VERIFY_FAILED
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\nall unchanged" not in out
    assert "CHANGED  x\\x1b[2J\\nall unchanged" in out and "is not a SHA-256" in out


def test_verify_usage_error_is_not_the_changed_code(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["verify"])
    assert info.value.code == EXIT_FAIL != EXIT_VERIFY_FAILED
    with pytest.raises(SystemExit) as info:
        main(["verify", "x", "--no-such-option"])
    assert info.value.code == EXIT_FAIL
    assert main(["verify", str(tmp_path / "absent.json")]) == EXIT_FAIL
    assert main(["verify", str(tmp_path), "--expect-sha256", "xyz"]) == EXIT_FAIL


# ------------------------------------------------------------------------------------------------
# Leftovers of issue 8: one manifest writer for every command
# ------------------------------------------------------------------------------------------------
def test_residual_and_evaluate_write_their_manifest_through_the_run_folder(world, tmp_path):
    image = sorted((world / "data" / "disputed").rglob("*.jpg"))[0]
    assert main(["residual", str(image), "-o", str(tmp_path / "res"), "--clip", "64", *RUN_ARGS]) == EXIT_OK
    manifest = json.loads((tmp_path / "res" / "manifest.json").read_text())
    assert manifest["command"] == "residual" and manifest["inputs"][0]["path"] == str(image)
    assert main(["verify", str(tmp_path / "res")]) == EXIT_OK
    digest = (tmp_path / "res" / "manifest.sha256").read_text().split()[0]
    assert digest == hashlib.sha256((tmp_path / "res" / "manifest.json").read_bytes()).hexdigest()


def test_identify_files_refuses_existing_results_without_resume(world, tmp_path):
    ev = evidence(world, tmp_path)
    results = tmp_path / "run" / "results.jsonl"
    cfg = RunConfig(backend="numpy", progress=False)
    identify_files(str(world / "fp"), [str(ev)], str(results), ("pce",), Params(clip=(128, 128)), cfg)
    with pytest.raises(Exception, match="pass --resume"):
        identify_files(str(world / "fp"), [str(ev)], str(results), ("pce",), Params(clip=(128, 128)), cfg)


# ------------------------------------------------------------------------------------------------
# Acceptance: hostile files mixed with good images
# ------------------------------------------------------------------------------------------------
def test_acceptance_hostile_folder(world, tmp_path, capsys):
    """Hostile files (tests/hostile_inputs.py and a few more) mixed with good images: exit 3, every file reported
    with a reason (a record, or a skipped entry in the manifest), good images as in a clean run, no traceback,
    nothing written outside the run folder, inputs byte-identical."""
    from hostile_inputs import eps_bytes, gif_bytes, jpeg_bytes, jpeg_cut_with_eoi, jpeg_declaring, png_bytes, \
        png_with_flipped_bit

    from conftest import natural_image

    clean_dir = tmp_path / "clean_in"
    clean_dir.mkdir()
    good = sorted((world / "data" / "disputed").rglob("*.jpg"))[:3]
    for k, src in enumerate(good):
        shutil.copy(src, clean_dir / f"good_{k}.jpg")
    assert main(["identify", str(world / "fp"), str(clean_dir), "-o", str(tmp_path / "clean"), *RUN_ARGS]) == EXIT_OK
    clean = {os.path.basename(r["path"]): r for r in read_results(tmp_path / "clean" / "results.jsonl")}

    hostile = tmp_path / "hostile"
    shutil.copytree(clean_dir, hostile)
    rgb = natural_image(160, 192, seed=4, channels=3)
    (hostile / "empty.jpg").write_bytes(b"")
    (hostile / "note.jpg").write_text("not a photograph")
    (hostile / "cut.jpg").write_bytes(good[0].read_bytes()[:600])
    (hostile / "cut_eoi.jpg").write_bytes(jpeg_cut_with_eoi(jpeg_bytes(rgb)))
    (hostile / "declares_12000.jpg").write_bytes(jpeg_declaring(jpeg_bytes(rgb[:64, :64]), 12000, 12000))
    (hostile / "crc.png").write_bytes(png_with_flipped_bit(png_bytes(rgb[:40, :40], filters=(1,)), 3))
    (hostile / "eps.jpg").write_bytes(eps_bytes())
    (hostile / "anim.gif").write_bytes(gif_bytes())
    (hostile / ".hidden.jpg").write_bytes(good[0].read_bytes())
    Image.new("RGB", (192, 160), (90, 90, 90)).save(hostile / "constant.png")
    Image.new("RGB", (40, 30), (90, 20, 90)).save(hostile / "tiny.png")
    os.mkfifo(hostile / "pipe.jpg")
    os.mkdir(hostile / "folder.jpg")
    os.symlink(hostile / "loop_b.jpg", hostile / "loop_a.jpg")
    os.symlink(hostile / "loop_a.jpg", hostile / "loop_b.jpg")
    os.symlink(hostile / "gone.jpg", hostile / "dangling.jpg")
    before = snapshot(hostile)
    outside_before = sorted(str(p) for p in tmp_path.rglob("*") if "run" not in p.parts)
    out = tmp_path / "run"
    rc = main(["identify", str(world / "fp"), str(hostile), "-o", str(out), "--workers", "2", "--csv",
               str(out / "t.csv"), *RUN_ARGS])
    captured = capsys.readouterr()
    assert rc == EXIT_PARTIAL and "Traceback" not in captured.err + captured.out
    records = {os.path.basename(r["path"]): r for r in read_results(out / "results.jsonl")}
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = {os.path.basename(s["path"]): s["reason"] for s in manifest["skipped_inputs"]}
    everything = {p.name for p in hostile.iterdir()}
    assert set(records) | set(skipped) >= everything - {"folder.jpg"}, everything - set(records) - set(skipped)
    assert all(reason for reason in skipped.values())
    for name, record in records.items():
        if name.startswith("good_"):
            assert record["error"] is None
            assert record["pce"]["decision"] == clean[name]["pce"]["decision"]
            assert record["pce"]["scores"] == clean[name]["pce"]["scores"]
        else:
            assert record["error"]["reason"], name
    assert records["constant.png"]["error"]["kind"] == "no-usable-content"
    assert "FIFO" in records["pipe.jpg"]["error"]["reason"]
    assert snapshot(hostile) == before  # inputs byte-identical
    assert sorted(str(p) for p in tmp_path.rglob("*") if "run" not in p.parts) == outside_before
    assert main(["verify", str(out)]) == EXIT_OK


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

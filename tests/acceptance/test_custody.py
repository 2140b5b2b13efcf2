"""Chain of custody: the manifest is the one source of truth.

``verify`` checks a run folder or store where it lies now (a copy as itself, a moved folder intact; old
absolute-path manifests too); ``identify --resume`` refuses a run folder whose files differ from its
manifest; loading a store checks it against its manifest (``--unverified-store`` for one without, recorded);
``report`` checks every file it reads, with a banner, and is written with its SHA-256 beside it;
a store JSON with a missing or mistyped field is refused by name. Then the tamper suite: copy, move,
edit one byte of each output kind, and verify, resume, identify and report.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_VERIFY_FAILED, main
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.engine.scheduler import read_results
from camid_gpu.errors import FingerprintError
from camid_gpu.provenance import verify_manifest
from camid_gpu.store import load_fingerprint, load_store

FP_ARGS = ["--clip", "128", "--refs", "3", "--method", "pce", "--quiet", "--backend", "numpy", "--workers", "1"]
RUN_ARGS = ["--quiet", "--backend", "numpy", "--workers", "1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two cameras (3 references each, 160x192), their store ``fp``, an identify run ``run`` of 4 flat images,
    an evaluate run ``eval`` (its own fingerprints/ and evaluation.json) and a cluster run ``cluster``."""
    root = tmp_path_factory.mktemp("custody")
    make_dataset(root / "data", cameras=2, per_model=1, refs=3, disputed_flat=2, disputed_natural=0,
                 height=160, width=192, seed=11)
    assert main(["fingerprint", str(root / "data" / "refs"), "-o", str(root / "fp"), *FP_ARGS]) == EXIT_OK
    assert main(["identify", str(root / "fp"), str(root / "data" / "disputed"), "-o", str(root / "run"),
                 *RUN_ARGS]) == EXIT_OK
    assert main(["evaluate", str(root / "data"), "-o", str(root / "eval"), *FP_ARGS]) == EXIT_OK
    assert main(["cluster", str(root / "data" / "disputed"), "-o", str(root / "cluster"), *RUN_ARGS]) == EXIT_OK
    return root


@pytest.fixture(scope="module")
def moved(world, tmp_path_factory):
    """A store, an identify run (with ``world/fp``) and an evaluate run made in one folder that is then moved: the
    paths their manifests recorded no longer exist (the inputs, ``world/data`` and ``world/fp``, stay put)."""
    root = tmp_path_factory.mktemp("custody-moved")
    made = root / "made"
    assert main(["fingerprint", str(world / "data" / "refs"), "-o", str(made / "fp"), *FP_ARGS]) == EXIT_OK
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(made / "run"),
                 *RUN_ARGS]) == EXIT_OK
    assert main(["evaluate", str(world / "data"), "-o", str(made / "eval"), *FP_ARGS]) == EXIT_OK
    assert main(["cluster", str(world / "data" / "disputed"), "-o", str(made / "cluster"), *RUN_ARGS]) == EXIT_OK
    os.rename(made, root / "moved")
    return root / "moved"


def copy(world, tmp_path, name, as_name=None):
    """A private copy of ``world/name`` (run folders and stores are copied whole, as a user would)."""
    target = tmp_path / (as_name or name)
    shutil.copytree(world / name, target, symlinks=True)
    return target


def edit_one_byte(path):
    """Change one byte: the first digit after the middle of a text file (the edit keeps JSON valid, a
    plausible forgery), or one bit in the middle of a binary file."""
    data = bytearray(path.read_bytes())
    if path.suffix in (".npz",):
        data[len(data) // 2] ^= 1
    else:
        at = next(i for i in range(len(data) // 2, len(data)) if chr(data[i]).isdigit())
        data[at] = ord(str((int(chr(data[at])) + 1) % 10))
    path.write_bytes(bytes(data))


def manifest_sha(folder):
    return (folder / "manifest.sha256").read_text().split()[0]


# ------------------------------------------------------------------------------------------------
# verify where the folder lies now
# ------------------------------------------------------------------------------------------------
def test_verify_checks_an_edited_copy_not_the_original(world, tmp_path, capsys):
    """An edited copy of a run folder verified "all unchanged" against the expected hash: verify hashed the
    original's files (the manifest's absolute paths)."""
    run = copy(world, tmp_path, "run")
    assert main(["verify", str(run), "--expect-sha256", manifest_sha(world / "run")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "a copy or a moved folder, checked where it lies now" in out and "in the run folder" in out
    edit_one_byte(run / "results.jsonl")
    assert main(["verify", str(run), "--expect-sha256", manifest_sha(world / "run")]) == EXIT_VERIFY_FAILED
    out = capsys.readouterr().out
    assert "CHANGED  output      results.jsonl [run folder]" in out and "FAILED" in out
    assert main(["verify", str(world / "run")]) == EXIT_OK  # the original is untouched


def test_verify_a_moved_run_folder_and_says_which_files_are_where(moved, capsys):
    """A moved run folder reported its intact results.jsonl MISSING."""
    run = moved / "run"
    assert main(["verify", str(run)]) == EXIT_OK
    out = capsys.readouterr().out
    # results.jsonl and run.json inside; the 4 disputed images, 2+2 fingerprint files and 6 references outside
    assert "(2 in the run folder, by their path relative to it; 14 outside it, at their recorded path)" in out
    result = verify_manifest(str(run / "manifest.json"))
    assert result["ok"] and result["recorded_dir"] == str(moved.parent / "made" / "run")
    assert result["run_folder"] == str(run)


@pytest.mark.parametrize("how", ["copy", "move"])
def test_verify_a_copied_or_moved_store(world, moved, tmp_path, capsys, how):
    store = copy(world if how == "copy" else moved, tmp_path, "fp")
    assert main(["verify", str(store)]) == EXIT_OK
    edit_one_byte(store / "C02.npz")
    assert main(["verify", str(store)]) == EXIT_VERIFY_FAILED
    assert "CHANGED  output      C02.npz [run folder]" in capsys.readouterr().out


def _as_version_1(folder):
    """Rewrite a manifest as camid wrote it before relative paths: every file by its absolute path where the run
    wrote it (``run_dir`` not recorded), and its checksum beside it."""
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    home = m.pop("run_dir")
    for key in ("inputs", "outputs", "fingerprints"):
        for e in m[key]:
            if "relpath" in e:
                e["path"] = e["abspath"] = os.path.join(home, e.pop("relpath"))
    if m.get("fingerprints_dir") and not os.path.isabs(m["fingerprints_dir"]):
        m["fingerprints_dir"] = os.path.join(home, m["fingerprints_dir"])
    m["version"] = 1
    path.write_text(json.dumps(m, indent=1))
    import hashlib

    (folder / "manifest.sha256").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  manifest.json\n")


@pytest.mark.parametrize("name", ["run", "fp", "eval"])
def test_an_old_absolute_path_manifest_is_verified_where_the_folder_lies(world, tmp_path, name):
    """Version-1 manifests hold absolute paths only: those under the folder the run wrote (inferred from its
    outputs) are resolved under the folder's new place; a copy still checks itself."""
    original = copy(world, tmp_path, name, "v1-" + name)
    _as_version_1(original)
    moved = copy(tmp_path, tmp_path, "v1-" + name, "copy-" + name)
    result = verify_manifest(str(moved / "manifest.json"))
    assert result["ok"] and result["recorded_dir"] == str(world / name), result
    assert result["in_run"] >= 2
    target = {"run": "results.jsonl", "fp": "C01.json", "eval": "evaluation.json"}[name]
    edit_one_byte(moved / target)
    result = verify_manifest(str(moved / "manifest.json"))
    assert not result["ok"] and [c["path"].endswith(target) for c in result["changed"]] == [True]
    assert verify_manifest(str(original / "manifest.json"))["ok"]


def test_a_manifest_edited_without_its_checksum_fails_verify(world, tmp_path, capsys):
    run = copy(world, tmp_path, "run")
    m = json.loads((run / "manifest.json").read_text())
    m["params"]["pce_threshold"] = 40.0  # every file hash still true: only manifest.sha256 can tell
    (run / "manifest.json").write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")
    assert main(["verify", str(run)]) == EXIT_VERIFY_FAILED
    assert "the manifest was edited after it was written" in capsys.readouterr().out


def test_verify_a_cluster_stores_folder_finds_the_runs_manifest(world, tmp_path, capsys):
    """``camid verify RUN/fingerprints`` of an evaluate run (no manifest of its own) verifies the run."""
    run = copy(world, tmp_path, "eval")
    assert main(["verify", str(run / "fingerprints")]) == EXIT_OK
    assert str(run / "manifest.json") in verify_manifest(str(run / "manifest.json"))["manifest"]


# ------------------------------------------------------------------------------------------------
# resume never launders an edit
# ------------------------------------------------------------------------------------------------
def test_resume_refuses_a_run_folder_whose_records_were_edited(world, tmp_path, capsys):
    """--resume kept an edited record and hashed it into a new manifest: verify passed again."""
    run = copy(world, tmp_path, "run")
    lines = (run / "results.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["pce"]["decision"] = "C02" if record["pce"]["decision"] == "C01" else "C01"
    lines[0] = json.dumps(record, sort_keys=True)
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    edited = (run / "results.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), "--resume",
                 *RUN_ARGS]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert "--resume refused" in err and f"{run / 'results.jsonl'} differs from its SHA-256 in the manifest" in err
    assert (run / "results.jsonl").read_bytes() == edited
    assert main(["verify", str(run)]) == EXIT_VERIFY_FAILED  # still caught: nothing was re-hashed


def test_resume_accepts_records_appended_after_the_manifest(world, tmp_path):
    """A resume interrupted after the manifest of an earlier, finished run leaves records appended after it:
    the recorded bytes are intact, so the next resume goes on (and its manifest covers the whole file)."""
    run = copy(world, tmp_path, "run")
    last = (run / "results.jsonl").read_text().splitlines()[-1]
    with open(run / "results.jsonl", "a") as handle:
        handle.write(last + "\n")
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), "--resume",
                 *RUN_ARGS]) == EXIT_OK
    assert verify_manifest(str(run / "manifest.json"))["ok"]


def test_resume_refuses_an_edited_run_spec(world, tmp_path, capsys):
    run = copy(world, tmp_path, "run")
    spec = json.loads((run / "run.json").read_text())
    spec["params"]["pce_threshold"] = 40.0
    (run / "run.json").write_text(json.dumps(spec))
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), "--resume",
                 *RUN_ARGS, "--pce-threshold", "40"]) == EXIT_FAIL
    assert "run.json differs from its SHA-256 in the manifest" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# a store is checked against its own manifest when loaded
# ------------------------------------------------------------------------------------------------
def _swap_cameras(store):
    """Swap C01 and C02 consistently: file names, 'camera' and 'arrays_file' fields, arrays hashes all agree."""
    metas = {c: json.loads((store / f"{c}.json").read_text()) for c in ("C01", "C02")}
    os.rename(store / "C01.npz", store / "tmp.npz")
    os.rename(store / "C02.npz", store / "C01.npz")
    os.rename(store / "tmp.npz", store / "C02.npz")
    for mine, other in (("C01", "C02"), ("C02", "C01")):
        meta = dict(metas[other], camera=mine, arrays_file=f"{mine}.npz")
        (store / f"{mine}.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def test_a_store_with_two_cameras_swapped_is_refused(world, tmp_path, capsys):
    """Each file is self-consistent, so only the store's manifest can tell: identify named the wrong camera."""
    store = copy(world, tmp_path, "fp")
    _swap_cameras(store)
    for c in ("C01", "C02"):
        load_fingerprint(store / f"{c}.json")  # each file on its own still loads
    with pytest.raises(FingerprintError, match=r"C01.json differs from the manifest.*C01.npz differs"):
        load_store(store)
    capsys.readouterr()
    assert main(["identify", str(store), str(world / "data" / "disputed"), "-o", str(tmp_path / "r"),
                 *RUN_ARGS]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert "does not match its manifest" in err and "internal error" not in err
    assert not (tmp_path / "r" / "results.jsonl").exists()


def test_a_store_without_a_manifest_needs_the_unverified_flag_and_the_run_records_it(world, tmp_path, capsys):
    store = copy(world, tmp_path, "fp")
    (store / "manifest.json").unlink()
    with pytest.raises(FingerprintError, match="has no manifest.json"):
        load_store(store)
    ev = world / "data" / "disputed"
    assert main(["identify", str(store), str(ev), "-o", str(tmp_path / "r"), *RUN_ARGS]) == EXIT_FAIL
    assert "--unverified-store" in capsys.readouterr().err
    assert main(["identify", str(store), str(ev), "-o", str(tmp_path / "r"), "--unverified-store", *RUN_ARGS]) == EXIT_OK
    spec = json.loads((tmp_path / "r" / "run.json").read_text())
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert "unverified" in spec["fingerprint_store"]
    assert manifest["fingerprint_store"]["verified"] is False and "unverified" in manifest["fingerprint_store"]["note"]
    # a verified run records the manifest it checked the store against
    verified = json.loads((world / "run" / "manifest.json").read_text())["fingerprint_store"]
    assert verified["verified"] is True and verified["manifest"] == str(world / "fp" / "manifest.json")
    assert verified["manifest_sha256"] == manifest_sha(world / "fp")
    assert main(["report", str(tmp_path / "r")]) == EXIT_OK  # said in the report, not a difference
    assert "had no manifest (--unverified-store)" in (tmp_path / "r" / "report.html").read_text()
    # the flag never excuses a store whose manifest disagrees
    store2 = copy(world, tmp_path, "fp", "fp2")
    _swap_cameras(store2)
    assert main(["identify", str(store2), str(ev), "-o", str(tmp_path / "r2"), "--unverified-store",
                 *RUN_ARGS]) == EXIT_FAIL


def test_a_store_with_a_camera_added_or_removed_is_refused(world, tmp_path):
    store = copy(world, tmp_path, "fp")
    for suffix in (".json", ".npz"):
        (store / f"C02{suffix}").unlink()  # C02 would silently never be a candidate
    with pytest.raises(FingerprintError, match="C02.json is listed in the manifest but is not in the folder"):
        load_store(store)


def test_copied_and_moved_stores_load_and_say_what_they_were_checked_against(world, moved, tmp_path):
    store = copy(moved, tmp_path, "fp")
    loaded = load_store(store)
    assert [fp.camera for fp in loaded] == ["C01", "C02"]
    assert loaded.custody["verified"] and loaded.custody["manifest"] == str(store / "manifest.json")
    # a store inside a run folder (evaluate's fingerprints/) is checked against the run's manifest
    run = copy(moved, tmp_path, "eval")
    assert load_store(run / "fingerprints").custody["manifest"] == str(run / "manifest.json")
    edit_one_byte(run / "fingerprints" / "C01.json")
    with pytest.raises(FingerprintError):
        load_store(run / "fingerprints")


# ------------------------------------------------------------------------------------------------
# the report checks what it reads, says so at the top, and is written with its hash
# ------------------------------------------------------------------------------------------------
def test_report_of_an_edited_run_has_a_banner_and_exits_2(world, tmp_path, capsys):
    """The report rendered a results.jsonl that no longer matched the manifest without a word."""
    run = copy(world, tmp_path, "run")
    edit_one_byte(run / "results.jsonl")
    out = tmp_path / "report.html"
    capsys.readouterr()
    assert main(["report", str(run), "-o", str(out)]) == EXIT_VERIFY_FAILED
    assert "chain of custody: results.jsonl differs from the manifest" in capsys.readouterr().err
    page = out.read_text()
    top = page[:page.index('id="run"')]
    assert "CHAIN OF CUSTODY" in top and "results.jsonl differs from the manifest" in top
    assert manifest_sha(world / "run") in top
    import hashlib

    assert (tmp_path / "report.html.sha256").read_text().split() == [hashlib.sha256(out.read_bytes()).hexdigest(),
                                                                    "report.html"]


def test_report_of_a_clean_copy_names_the_manifest_and_exits_0(moved, tmp_path):
    run = copy(moved, tmp_path, "eval")
    assert main(["report", str(run)]) == EXIT_OK
    page = (run / "report.html").read_text()
    assert "custody-ok" in page and "CHAIN OF CUSTODY" not in page and manifest_sha(run) in page
    assert "results.jsonl, evaluation.json" in page
    assert os.path.isfile(run / "report.html.sha256")
    # the moved evaluate run draws its own fingerprints, not the original folder's
    assert f"{run / 'fingerprints'}<" in page or str(run / "fingerprints") in page


def test_report_sidecar_may_not_replace_a_run_folder_file(world, tmp_path, capsys):
    run = copy(world, tmp_path, "run")
    assert main(["report", str(run), "-o", str(run / "manifest")]) == EXIT_FAIL
    assert "manifest.sha256" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# a store JSON's missing or mistyped field is named with its file
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("arrays_sha256", None), ("methods", None), ("source_shape", None),
                                          ("params", None), ("geometry", None), ("camera", None),
                                          ("arrays_file", None), ("arrays", None),
                                          ("arrays_sha256", 7), ("methods", "pce"), ("source_shape", [160]),
                                          ("params", []), ("geometry", {"pce": 3}), ("references", "x"),
                                          ("software", [1]), ("arrays", [1])])
def test_a_missing_or_mistyped_store_field_is_named(world, tmp_path, capsys, field, value):
    store = copy(world, tmp_path, "fp")
    meta = json.loads((store / "C01.json").read_text())
    if value is None:
        del meta[field]
    else:
        meta[field] = value
    (store / "C01.json").write_text(json.dumps(meta))
    with pytest.raises(FingerprintError, match=rf"C01.json: fingerprint metadata field '{field}' is"):
        load_fingerprint(store / "C01.json")
    assert main(["identify", str(store), str(world / "data" / "disputed"), "-o", str(tmp_path / "r"),
                 *RUN_ARGS]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert f"field '{field}'" in err and "C01.json" in err and "internal error" not in err


# ------------------------------------------------------------------------------------------------
# The tamper suite: one byte of each output kind, then verify, resume, identify and report
# ------------------------------------------------------------------------------------------------
#: (kind, folder, file): the folder is copied, then one byte of the file is changed
TAMPERED = [("results", "run", "results.jsonl"), ("manifest", "run", "manifest.json"), ("run spec", "run", "run.json"),
            ("store JSON", "fp", "C01.json"), ("store arrays", "fp", "C02.npz"),
            ("evaluation", "eval", "evaluation.json"), ("evaluate results", "eval", "results.jsonl"),
            ("run's store JSON", "eval", "fingerprints/C02.json"), ("run's store arrays", "eval", "fingerprints/C01.npz"),
            ("cluster records", "cluster", "images.jsonl"), ("cluster result", "cluster", "clusters.json")]
#: files a resume computes again rather than keeps (an edit is replaced, never re-hashed as the run's)
RECOMPUTED = {("cluster", "clusters.json")}
#: files the report of their folder does not read (verify and resume check them)
NOT_READ_BY_REPORT = {("run", "run.json"), ("cluster", "images.jsonl")}


def resume_command(world, folder, target):
    ev = str(world / "data" / "disputed")
    return {"run": ["identify", str(world / "fp"), ev, "-o", str(target), "--resume", *RUN_ARGS],
            "eval": ["evaluate", str(world / "data"), "-o", str(target), "--resume", *FP_ARGS],
            "cluster": ["cluster", ev, "-o", str(target), "--resume", *RUN_ARGS]}[folder]


@pytest.mark.parametrize("kind, folder, name", TAMPERED, ids=[t[0] for t in TAMPERED])
def test_every_one_byte_edit_is_detected(world, tmp_path, capsys, kind, folder, name):
    target = copy(world, tmp_path, folder)
    edit_one_byte(target / name)
    ev = world / "data" / "disputed"
    assert main(["verify", str(target)]) == EXIT_VERIFY_FAILED, kind
    if folder == "fp":  # identify with the store; the report of a run drawing on it
        assert main(["identify", str(target), str(ev), "-o", str(tmp_path / "r"), *RUN_ARGS]) == EXIT_FAIL
        assert main(["report", str(copy(world, tmp_path, "run")), "--fingerprints", str(target), "-o",
                     str(tmp_path / "x.html")]) == EXIT_VERIFY_FAILED
        assert name in (tmp_path / "x.html").read_text().split('id="run"')[0]
        return
    if (folder, name) not in NOT_READ_BY_REPORT:  # the report first: a refused resume leaves the folder as it was
        assert main(["report", str(target), "-o", str(tmp_path / "x.html")]) == EXIT_VERIFY_FAILED, kind
        top = (tmp_path / "x.html").read_text().split("<h2")[0]
        assert "CHAIN OF CUSTODY" in top and (os.path.basename(name) in top or "manifest.sha256" in top), kind
    if (folder, name) in RECOMPUTED:
        return
    before = (target / name).read_bytes()
    assert main(resume_command(world, folder, target)) == EXIT_FAIL, kind
    err = capsys.readouterr().err.split("camid: error: ")[-1]  # (after the report's warnings)
    assert os.path.basename(name) in err or "manifest.sha256" in err, (kind, err)
    assert (target / name).read_bytes() == before


@pytest.mark.parametrize("folder", ["run", "fp", "eval", "cluster"])
@pytest.mark.parametrize("how", ["copy", "move"])
def test_every_clean_copy_or_move_is_accepted(world, moved, tmp_path, capsys, folder, how):
    origin = world if how == "copy" else moved  # moved: the folder its manifest names no longer exists
    target = copy(origin, tmp_path, folder)
    ev = world / "data" / "disputed"
    assert main(["verify", str(target), "--expect-sha256", manifest_sha(origin / folder)]) == EXIT_OK
    if folder == "fp":
        assert main(["identify", str(target), str(ev), "-o", str(tmp_path / "r"), *RUN_ARGS]) == EXIT_OK
        assert [r.get("pce", {}).get("decision") for r in read_results(tmp_path / "r" / "results.jsonl")] == \
            [r.get("pce", {}).get("decision") for r in read_results(world / "run" / "results.jsonl")]
        return
    assert main(resume_command(world, folder, target)) == EXIT_OK
    assert main(["verify", str(target)]) == EXIT_OK
    assert main(["report", str(target), "-o", str(tmp_path / "x.html")]) == EXIT_OK

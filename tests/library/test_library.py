"""The fingerprint library: catalogue, atomic add, verify, two-stage search against exhaustive identify, link."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, EXIT_VERIFY_FAILED, main
from camid_gpu.config import LIBRARY_SCHEMA_VERSION, Params, RunConfig
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.engine.runner import fingerprint_folder, identify_files
from camid_gpu.engine.scheduler import read_results
from camid_gpu.errors import FingerprintError, LibraryError, RunFolderError
from camid_gpu.library import add_stores, init_library, library_info, retire_camera, search_library, verify_library
from camid_gpu.library import catalogue as cat
from camid_gpu.library.screen import screen_threshold
from camid_gpu.store import CameraFingerprint, load_store, load_stores, save_fingerprint
from library_stores import decoy_store as _decoy_store
from library_stores import write_store_manifest as _write_store_manifest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = RunConfig(backend="numpy", progress=False)
DECOYS = 40


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("libdata")
    make_dataset(root, cameras=3, per_model=2, refs=6, disputed_flat=2, disputed_natural=1, height=128, width=160,
                 jpeg_quality=92, portrait=1, seed=11)
    return root


@pytest.fixture(scope="module")
def store(dataset, tmp_path_factory):
    """Two stores: the dataset's three cameras (``camid fingerprint``) and the decoys beside them."""
    root = tmp_path_factory.mktemp("store")
    out = str(root / "fp")
    fingerprint_folder(str(dataset / "refs"), out, ("pce",), Params(refs=6), CONFIG)
    return [out, _decoy_store(out, str(root / "decoys"), DECOYS)]


@pytest.fixture(scope="module")
def library(store, tmp_path_factory):
    lib = str(tmp_path_factory.mktemp("lib") / "LIB")
    init_library(lib)
    add_stores(lib, store, case="K1", label="test set")
    return lib


@pytest.fixture(scope="module")
def searched(library, dataset, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("search") / "RUN")
    run, records = search_library(library, [str(dataset / "disputed")], run_dir, Params(), CONFIG)
    return run_dir, run, records


def test_true_camera_shortlisted_and_decisions_equal_exhaustive_identify(searched, store, dataset, tmp_path):
    _, _, records = searched
    n = 3 + DECOYS
    threshold = screen_threshold(n, 60.0).decision_pce
    assert threshold > 60.0  # Sidak over 43 cameras asks for more than one comparison's 60
    exhaustive = str(tmp_path / "id" / "results.jsonl")
    identify_files(store, [str(dataset / "disputed")], exhaustive, ("pce",), Params(pce_threshold=threshold), CONFIG)
    by_path = {r["path"]: r for r in read_results(exhaustive)}
    decided = 0
    for r in records:
        full = by_path[r["path"]]
        assert r["library"]["compared"] == n and r["library"]["not_comparable"] == 0
        assert r["pce"]["decision"] == full["pce"]["decision"], r["path"]
        truth = os.path.basename(os.path.dirname(r["path"]))
        if full["pce"]["scores"][truth]["pce"] > threshold:
            decided += 1
            assert truth in [s["camera"] for s in r["library"]["shortlist"]], r["path"]
            assert r["pce"]["scores"][truth] == {k: v for k, v in full["pce"]["scores"][truth].items()} | {
                "log10_p_fa_library": r["pce"]["scores"][truth]["log10_p_fa_library"]}
        assert len(r["library"]["shortlist"]) <= 2  # decoys are screened out, not confirmed
    assert decided >= 6  # every flat (two per camera), portrait ones turned included


def test_records_carry_version_threshold_and_counts(searched, library):
    run_dir, run, records = searched
    version = library_info(library)["version"]
    spec = json.loads(_read(os.path.join(run_dir, "run.json")))
    assert spec["library"]["version"] == version == run["library"]["version"]
    for r in records:
        lib = r["library"]
        assert lib["version"] == version and lib["cameras"] == 3 + DECOYS
        assert lib["threshold"]["miss"] == 1e-3 and lib["threshold"]["z"] < np.sqrt(lib["threshold"]["decision_pce"])
        assert lib["screened"] == lib["compared"]


def test_resume_refused_after_the_library_changed(searched, library, dataset, tmp_path):
    lib = str(tmp_path / "copy")
    shutil.copytree(library, lib)
    run_dir = str(tmp_path / "RUN")
    shutil.copytree(searched[0], run_dir)
    retire_camera(lib, "D000", "test")
    with pytest.raises(RunFolderError, match="library"):
        search_library(lib, [str(dataset / "disputed")], run_dir, Params(), CONFIG, resume=True)


def test_add_twice_is_a_no_op_and_a_taken_name_is_refused(library, store, tmp_path):
    before = library_info(library)["version"]
    again = add_stores(library, store, case="K1")
    assert again["added"] == [] and len(again["unchanged"]) == 3 + DECOYS and again["version"] == before
    other = str(tmp_path / "other")
    os.makedirs(other)
    real = load_store(store[0])[0]
    save_fingerprint(CameraFingerprint(camera="D000", methods=("pce",), arrays={"k": np.ones((128, 160), np.float32)
                                       + np.eye(128, 160, dtype=np.float32)}, clips={"pce": None},
                                       source_shape=(128, 160), params=real.params,
                                       references=real.references), other)
    _write_store_manifest(other)
    with pytest.raises(LibraryError, match="taken in the library by another fingerprint"):
        add_stores(library, [other])
    assert library_info(library)["version"] == before


def test_kill_during_add_leaves_a_library_verify_accepts(store, tmp_path):
    lib = str(tmp_path / "LIB")
    init_library(lib)
    before = library_info(lib)["version"]
    script = textwrap.dedent("""
        import os, signal, sys
        from camid_gpu.library import manage
        manage.ADD_HOOK = lambda stage: os.kill(os.getpid(), signal.SIGKILL)
        manage.add_stores(sys.argv[1], sys.argv[2:])
    """)
    proc = subprocess.run([sys.executable, "-c", script, lib, *store], env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    checked = verify_library(lib)
    assert checked["ok"] and checked["cameras"] == 0 and checked["orphans"]  # arrays written, never catalogued
    assert library_info(lib)["version"] == before
    added = add_stores(lib, store)  # the next add reuses the orphans and rewrites the screening rows
    assert len(added["added"]) == 3 + DECOYS
    assert verify_library(lib) == dict(verify_library(lib), ok=True, orphans=[])


def test_verify_finds_a_damaged_array_and_screening_row(library, tmp_path):
    lib = str(tmp_path / "LIB")
    shutil.copytree(library, lib)
    assert main(["library", "verify", lib]) == EXIT_OK
    row = library_info(lib)["rows"][0]
    blob = os.path.join(lib, "arrays", row["arrays_sha256"][:2], row["arrays_sha256"] + ".npz")
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as handle:
        handle.seek(-20, os.SEEK_END)
        handle.write(b"\0" * 4)
    screen = os.path.join(lib, "screen", row["screen_file"] + ".f16")
    with open(screen, "r+b") as handle:
        handle.seek(library_info(lib)["rows"][1]["screen_row"] * 128 * 160 * 2 + 10)
        handle.write(b"\x12\x34")
    result = verify_library(lib)
    assert not result["ok"] and len(result["problems"]) == 2
    assert "SHA-256 differs" in result["problems"][0] and "screening row" in result["problems"][1]
    assert main(["library", "verify", lib]) == EXIT_VERIFY_FAILED


def test_schema_migrates_from_version_1_and_refuses_a_newer_one(tmp_path):
    lib = str(tmp_path / "LIB")
    os.makedirs(lib)
    con = sqlite3.connect(cat.catalogue_path(lib), isolation_level=None)
    for statement in cat.MIGRATIONS[0]:
        con.execute(statement)
    con.execute("PRAGMA user_version = 1")
    con.close()
    con = cat.connect(lib)
    assert cat.schema_version(con) == LIBRARY_SCHEMA_VERSION
    assert con.execute("SELECT count(*) FROM history").fetchone()[0] == 0  # the table schema 2 added
    con.execute(f"PRAGMA user_version = {LIBRARY_SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(LibraryError, match="schema version 3"):
        cat.connect(lib)


def test_retired_camera_is_kept_but_no_longer_searched(library, dataset, tmp_path):
    lib = str(tmp_path / "LIB")
    shutil.copytree(library, lib)
    retire_camera(lib, "C01", "returned to its owner")
    info = library_info(lib)
    assert info["cameras"] == 2 + DECOYS and info["retired"] == 1
    assert [e["action"] for e in info["history"]][-1] == "retire"
    files = sorted(str(p) for p in (dataset / "disputed" / "C01").glob("flat_*.jpg"))
    _, records = search_library(lib, files, str(tmp_path / "RUN"), Params(), CONFIG)
    assert all(r["pce"]["decision"] is None and "C01" not in r["pce"]["scores"] for r in records)


def test_screen_threshold_grows_with_the_library():
    one, many = screen_threshold(1, 60.0), screen_threshold(100_000, 60.0)
    assert one.decision_pce == 60.0 and one.z == pytest.approx(0.999 * np.sqrt(60.0) - 3.0902, abs=1e-3)
    assert many.decision_pce > 80.0 and many.z > one.z and many.expected_false_shortlists < 1.0


def test_search_with_dask_local_equals_local(searched, library, dataset, tmp_path):
    pytest.importorskip("dask.distributed")
    files = sorted(str(p) for p in (dataset / "disputed" / "C02").glob("*.jpg"))
    one = str(tmp_path / "one")
    two = str(tmp_path / "two")
    search_library(library, files, one, Params(), CONFIG)
    search_library(library, files, two, Params(), RunConfig(backend="numpy", progress=False, dask="local:2"))
    assert _read(os.path.join(one, "results.jsonl")) == _read(os.path.join(two, "results.jsonl"))


def test_report_of_a_library_search(searched, tmp_path):
    run_dir, _, records = searched
    out = str(tmp_path / "report.html")
    assert main(["report", run_dir, "-o", out]) == EXIT_OK
    text = _read(out)
    assert "Shortlists and confirmation" in text and records[0]["library"]["version"] in text


def test_link_finds_two_cluster_fingerprints_of_one_camera(dataset, tmp_path):
    from camid_gpu.cluster import ClusterParams, cluster_images
    from camid_gpu.library.link import link_library

    refs = {c: sorted((dataset / "refs" / c).glob("*.jpg")) for c in ("C01", "C02", "C03")}
    cases = {"A": refs["C01"][:3] + refs["C02"][:3], "B": refs["C01"][3:] + refs["C03"][:3]}
    lib = str(tmp_path / "LIB")
    init_library(lib)
    for case, files in cases.items():
        folder = tmp_path / f"images{case}"
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / f"{f.parent.name}_{f.name}")
        cluster_images([str(folder)], str(tmp_path / f"run{case}"), ClusterParams(region=None), CONFIG)
        assert main(["library", "add", lib, str(tmp_path / f"run{case}"), "--case", case]) == EXIT_OK
    rows = library_info(lib)["rows"]
    assert len(rows) == 4 and all(r["kind"] == "unknown" for r in rows)
    members = {r["name"]: json.loads(r["metadata_json"])["references"][0]["path"] for r in rows}
    out = link_library(lib)
    assert len(out["links"]) == 1
    link = out["links"][0]
    assert {link["a"][0], link["b"][0]} == {"A", "B"}
    assert all(os.path.basename(members[link[k]]).startswith("C01") for k in ("a", "b"))
    assert link["pce"] >= out["thresholds"][link["geometry"]]["pce"]


def test_identify_takes_several_stores_at_once(store, dataset, tmp_path):
    first, second = tmp_path / "A", tmp_path / "B"
    shutil.copytree(store[0], first)
    shutil.copytree(store[1], second)
    both = tmp_path / "both"  # one store of every camera, what the two stores together must equal
    both.mkdir()
    for folder in store:
        for name in os.listdir(folder):
            if name.endswith((".json", ".npz")) and name != "manifest.json":
                shutil.copy(os.path.join(folder, name), both / name)
    _write_store_manifest(str(both))
    files = sorted(str(p) for p in (dataset / "disputed" / "C03").glob("*.jpg"))
    assert main(["identify", str(first), *files, "--store", str(second), "-o", str(tmp_path / "two"), "--quiet",
                 "--backend", "numpy"]) == EXIT_OK
    identify_files(str(both), files, str(tmp_path / "one" / "results.jsonl"), ("pce",), Params(), CONFIG)
    two, one = read_results(str(tmp_path / "two" / "results.jsonl")), read_results(str(tmp_path / "one" / "results.jsonl"))
    assert [r["pce"] for r in two] == [r["pce"] for r in one] and len(two[0]["pce"]["scores"]) == 3 + DECOYS
    manifest = json.loads(_read(str(tmp_path / "two" / "manifest.json")))
    assert len(manifest["fingerprints_dir"]) == 2 and len(manifest["fingerprints"]) == 2 * (3 + DECOYS)
    assert main(["verify", str(tmp_path / "two")]) == EXIT_OK
    shutil.copy(first / "C01.json", second / "C01.json")
    shutil.copy(first / "C01.npz", second / "C01.npz")
    assert main(["identify", str(first), *files, "--store", str(second), "-o", str(tmp_path / "three"),
                 "--quiet", "--backend", "numpy"]) == 1  # B no longer matches its manifest
    _write_store_manifest(str(second))  # B's manifest lists C01 now: refused for holding a camera A holds
    with pytest.raises(FingerprintError, match="stores searched together hold each camera once"):
        load_stores([str(first), str(second)])
    assert main(["identify", str(first), *files, "--store", str(second), "-o", str(tmp_path / "four"),
                 "--quiet", "--backend", "numpy"]) == 1


def test_search_while_an_add_runs_sees_the_library_before_it(library, store, dataset, tmp_path):
    lib = str(tmp_path / "LIB")
    shutil.copytree(library, lib)
    more = str(tmp_path / "more")
    os.makedirs(more)
    shutil.copy(os.path.join(store[0], "C01.json"), more)
    shutil.copy(os.path.join(store[0], "C01.npz"), more)
    _decoy_store(store[0], more, 3, seed=99, prefix="E")  # three new cameras (C01 itself is a no-op)
    marker = tmp_path / "arrays-written"
    script = textwrap.dedent("""
        import os, sys, time
        from camid_gpu.library import manage
        def hold(stage):
            open(sys.argv[3], "w").close()
            time.sleep(2.0)
        manage.ADD_HOOK = hold
        manage.add_stores(sys.argv[1], [sys.argv[2]], case="K2")
    """)
    before = library_info(lib)["version"]
    proc = subprocess.Popen([sys.executable, "-c", script, lib, more, str(marker)], env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        for _ in range(600):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert marker.exists()
        image = str(sorted((dataset / "disputed" / "C02").glob("flat_*.jpg"))[0])
        _, records = search_library(lib, [image], str(tmp_path / "RUN"), Params(), CONFIG)
        assert records[0]["library"]["version"] == before and records[0]["library"]["cameras"] == 3 + DECOYS
        assert records[0]["pce"]["decision"] == "C02"
    finally:
        assert proc.wait(timeout=120) == 0
    after = library_info(lib)
    assert after["version"] != before and after["cameras"] == 3 + DECOYS + 3 and verify_library(lib)["ok"]


def test_eight_and_sixteen_bit_images_in_one_chunk_screen_alike(library, dataset, tmp_path):
    """Views of another pixel layout are screened in their own batch (a stack would upcast 8-bit to 16-bit)."""
    import tifffile
    from PIL import Image

    from camid_gpu.io.decode import read_image

    pixels, _ = read_image(sorted((dataset / "disputed" / "C03").glob("flat_*.jpg"))[0])
    folder = tmp_path / "mixed"
    folder.mkdir()
    tifffile.imwrite(folder / "a16.tif", pixels.astype(np.uint16) * 257)
    Image.fromarray(pixels).save(folder / "b8.png")
    _, (r16, r8) = search_library(library, [str(folder)], str(tmp_path / "RUN"), Params(), CONFIG)
    assert r16["bit_depth"] == 16 and r8["bit_depth"] == 8
    assert r16["pce"]["decision"] == r8["pce"]["decision"] == "C03"
    assert r16["library"]["shortlist"][0]["z"] == pytest.approx(r8["library"]["shortlist"][0]["z"], rel=1e-4)


def test_link_needs_a_finite_pce_over_the_threshold(store, tmp_path, monkeypatch):
    """A link is confirmed by prnu.decision.exceeds: a NaN PCE (which `value < threshold` let through) is none."""
    from camid_gpu.library import link as lk

    real = load_store(store[0])[0]
    k = (np.random.default_rng(5).standard_normal(real.k.shape) * 0.01).astype(np.float32)
    twin = str(tmp_path / "twin")
    os.makedirs(twin)
    for name, noise in (("T1", 0.0), ("T2", 1e-4)):
        jitter = (np.random.default_rng(6).standard_normal(k.shape) * noise).astype(np.float32)
        save_fingerprint(CameraFingerprint(camera=name, methods=("pce",), arrays={"k": k + jitter}, clips={"pce": None},
                                           source_shape=real.source_shape, params=dict(real.params),
                                           references=real.references), twin)
    _write_store_manifest(twin)
    lib = str(tmp_path / "LIB")
    init_library(lib)
    add_stores(lib, [twin])
    assert [(link["a"], link["b"]) for link in lk.link_library(lib)["links"]] == [("T1", "T2")]
    monkeypatch.setattr(lk, "pair_pce", lambda *args, **kwargs: np.array([np.nan]))
    assert lk.link_library(lib)["links"] == []


def test_link_finds_a_fingerprint_stored_turned_by_a_quarter_turn(store, tmp_path):
    """One camera's fingerprint stored upright (T1, rows x columns) and turned by 90 degrees (T2, columns x rows,
    as a cluster of portrait images keeps it): link compares the two geometries turned and names the turn that
    brings T2 onto T1; an unrelated turned fingerprint (T3) is no link."""
    real = load_store(store[0])[0]
    rng = np.random.default_rng(8)
    k = (rng.standard_normal(real.k.shape) * 0.01).astype(np.float32)
    turned_shape = (real.source_shape[1], real.source_shape[0])
    folder = str(tmp_path / "turned")
    os.makedirs(folder)
    for name, arr, shape in (("T1", k, real.source_shape),
                             ("T2", np.ascontiguousarray(np.rot90(k, 1)) + 1e-4 * rng.standard_normal(
                                 k.shape[::-1]).astype(np.float32), turned_shape),
                             ("T3", (rng.standard_normal(k.shape[::-1]) * 0.01).astype(np.float32), turned_shape)):
        save_fingerprint(CameraFingerprint(camera=name, methods=("pce",), arrays={"k": arr}, clips={"pce": None},
                                           source_shape=shape, params=dict(real.params),
                                           references=real.references), folder)
    _write_store_manifest(folder)
    lib = str(tmp_path / "LIB")
    init_library(lib)
    add_stores(lib, [folder])
    from camid_gpu.library.link import link_library

    links = link_library(lib)["links"]
    assert [sorted((link["a"], link["b"])) for link in links] == [["T1", "T2"]]
    # np.rot90(T2, turn / 90) is T1 when T1 is the first of the pair, and np.rot90(T1, turn / 90) is T2 otherwise
    assert links[0]["rotation"] == (270 if links[0]["a"] == "T1" else 90)
    assert links[0]["pce"] > 1000, links


def test_library_add_refuses_a_store_changed_after_its_manifest(library, store, tmp_path, capsys):
    before = library_info(library)["version"]
    real = load_store(store[0])[0]
    for edit in ("added", "swapped"):
        edited = str(tmp_path / edit)
        shutil.copytree(store[1], edited)
        stranger = _decoy_store(store[0], str(tmp_path / f"{edit}-src"), 2, seed=77, prefix="D")
        name = "D001" if edit == "swapped" else "X999"  # a valid fingerprint, unknown to the store's manifest
        fp = load_store(stranger, unverified=True)[1]
        save_fingerprint(CameraFingerprint(camera=name, methods=("pce",), arrays={"k": fp.k}, clips={"pce": None},
                                           source_shape=real.source_shape, params=dict(real.params),
                                           references=real.references), edited)
        assert main(["library", "add", library, edited]) == EXIT_FAIL
        err = capsys.readouterr().err
        assert "does not match its manifest" in err and name in err, err
        with pytest.raises(FingerprintError, match="does not match its manifest"):
            add_stores(library, [edited])
    assert library_info(library)["version"] == before


def test_search_cli_records_the_casework_and_refuses_a_bad_calibration_before_any_work(library, dataset, tmp_path,
                                                                                        capsys):
    image = str(sorted((dataset / "disputed" / "C02").glob("flat_*.jpg"))[0])
    run = tmp_path / "RUN"
    assert main(["library", "search", library, image, "-o", str(run), "--backend", "numpy", "--quiet",
                 "--case", "K-17", "--examiner", "E. Xaminer"]) == EXIT_OK
    manifest = json.loads(_read(str(run / "manifest.json")))
    assert manifest["casework"]["case"] == "K-17" and manifest["casework"]["examiner"] == "E. Xaminer"
    assert "C02" in capsys.readouterr().out
    bad = tmp_path / "not-a-calibration"
    bad.mkdir()
    assert main(["library", "search", library, image, "-o", str(tmp_path / "RUN2"), "--backend", "numpy",
                 "--quiet", "--calibration", str(bad)]) == EXIT_FAIL
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "RUN2" / "results.jsonl").exists()


def test_verify_and_report_of_a_library_search_refuse_an_edited_results_file(searched, tmp_path):
    run_dir = str(tmp_path / "RUN")
    shutil.copytree(searched[0], run_dir)
    assert main(["verify", run_dir]) == EXIT_OK
    assert main(["report", run_dir, "-o", str(tmp_path / "ok.html")]) == EXIT_OK
    results = os.path.join(run_dir, "results.jsonl")
    text = _read(results)
    assert '"decision": "C01"' in text
    os.chmod(results, 0o644)
    with open(results, "w", encoding="utf-8") as handle:
        handle.write(text.replace('"decision": "C01"', '"decision": "C03"', 1))
    assert main(["verify", run_dir]) == EXIT_VERIFY_FAILED
    assert main(["report", run_dir, "-o", str(tmp_path / "edited.html")]) == EXIT_VERIFY_FAILED
    page = _read(str(tmp_path / "edited.html"))
    top = page[:page.index("Shortlists and confirmation")]
    assert "CHAIN OF CUSTODY" in top and "results.jsonl differs from the manifest" in top


def test_search_cli_with_a_calibration_writes_the_evidence_beside_unchanged_decisions(library, dataset, tmp_path,
                                                                                     capsys):
    pytest.importorskip("lir")
    from camid_gpu.config import methods_of
    from camid_gpu.engine.runner import evaluate_dataset

    data, fitted, cal = str(tmp_path / "caldata"), str(tmp_path / "calrun"), str(tmp_path / "cal")
    make_dataset(data, cameras=6, per_model=2, refs=5, disputed_flat=4, disputed_natural=0, height=128, width=160,
                 jpeg_quality=92, seed=3)  # other cameras than the library's (the images' quality: within it)
    evaluate_dataset(data, fitted, methods_of("pce"), Params(refs=None), CONFIG)
    assert main(["calibrate", fitted, "-o", cal, "--kind", "flat"]) == EXIT_OK
    files = sorted(str(p) for p in (dataset / "disputed" / "C01").glob("flat_*.jpg"))
    plain, run = tmp_path / "plain", tmp_path / "RUN"
    assert main(["library", "search", library, *files, "-o", str(plain), "--backend", "numpy", "--quiet"]) == EXIT_OK
    capsys.readouterr()
    assert main(["library", "search", library, *files, "-o", str(run), "--backend", "numpy", "--quiet",
                 "--calibration", cal]) == EXIT_OK
    assert "log10 LR" in capsys.readouterr().out
    evidence = json.loads(_read(str(run / "evidence.json")))
    manifest = json.loads(_read(str(run / "manifest.json")))
    assert any(e["path"].endswith("evidence.json") for e in manifest["outputs"])
    assert [i["decision"] for i in evidence["images"]] == [r["pce"]["decision"] for r in
                                                            read_results(str(plain / "results.jsonl"))] == ["C01"] * 2
    assert all(i["cameras"]["C01"]["log10_lr"] > 0 for i in evidence["images"])
    assert main(["verify", str(run)]) == EXIT_OK


def test_search_cli_shows_each_answer_as_it_is_done_and_lists_errors_and_skipped_files(library, dataset, tmp_path,
                                                                                      capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for f in sorted((dataset / "disputed" / "C03").glob("flat_*.jpg")):
        shutil.copy(f, folder / f.name)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert main(["library", "search", library, str(folder), "-o", str(tmp_path / "RUN"),
                 "--backend", "numpy"]) == EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert "[1/3]" in out and "[3/3]" in out and "C03 (best C03 PCE" in out  # identify's live lines
    assert "zz_broken.jpg" in err and "camid: error:" in err and "camid: skipped:" in err and "notes.txt" in err
    assert main(["library", "search", library, str(folder), "-o", str(tmp_path / "QUIET"), "--backend", "numpy",
                 "--quiet"]) == EXIT_PARTIAL
    assert "[1/3]" not in capsys.readouterr().out

"""Run folders and outputs: evidence is never written to, outputs never replace each other or need
--overwrite, unwritable outputs are refused before the work, every command writes its manifest."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, main
from camid_gpu.store import load_store

from conftest import evidence, copy_store, snapshot, FP_ARGS, RUN_ARGS


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


def test_unwritable_csv_is_refused_before_the_work(world, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(tmp_path / "r"),
                 "--csv", str(blocker / "t.csv"), *RUN_ARGS]) == EXIT_FAIL
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_residual_and_evaluate_write_their_manifest_through_the_run_folder(world, tmp_path):
    image = sorted((world / "data" / "disputed").rglob("*.jpg"))[0]
    assert main(["residual", str(image), "-o", str(tmp_path / "res"), "--clip", "64", *RUN_ARGS]) == EXIT_OK
    manifest = json.loads((tmp_path / "res" / "manifest.json").read_text())
    assert manifest["command"] == "residual" and manifest["inputs"][0]["path"] == str(image)
    assert main(["verify", str(tmp_path / "res")]) == EXIT_OK
    digest = (tmp_path / "res" / "manifest.sha256").read_text().split()[0]
    assert digest == hashlib.sha256((tmp_path / "res" / "manifest.json").read_bytes()).hexdigest()

"""The command line: whole runs, run folders, manifests and verify, determinism, kill -9 and resume."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from camid_gpu.backend import get_backend
from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, EXIT_VERIFY_FAILED, main
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.io.decode import read_image
from camid_gpu.prnu.residual import extract_residual

CLIP = ["--clip", "192", "--refs", "4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_dataset(root / "data", cameras=2, per_model=2, refs=4, disputed_flat=3, disputed_natural=1,
                 height=224, width=256, seed=3)
    assert main(["fingerprint", str(root / "data" / "refs"), "-o", str(root / "fp"), "--quiet", *CLIP]) == EXIT_OK
    return root


def test_fingerprint_writes_store_and_manifest(data):
    names = sorted(os.listdir(data / "fp"))
    assert names == [".camid.lock", "C01.json", "C01.npz", "C02.json", "C02.npz", "manifest.json", "manifest.sha256"]
    manifest = json.loads((data / "fp" / "manifest.json").read_text())
    assert manifest["command"] == "fingerprint"
    assert manifest["params"]["pce_clip"] == manifest["params"]["mahalanobis_clip"] == [192, 192]  # --clip: both
    assert len([e for e in manifest["inputs"] if e["role"] == "reference"]) == 8
    assert {os.path.basename(o["path"]) for o in manifest["outputs"]} == {"C01.json", "C01.npz", "C02.json", "C02.npz"}
    assert manifest["kernels"] == "not used"  # no CUDA here; on a GPU: "verified" or "fallback (reason)"


def test_identify_run_folder_outputs_and_verify(data, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["identify", str(data / "fp"), str(data / "data" / "disputed"), "-o", str(run), "--quiet",
               "--json", str(tmp_path / "all.json"), "--csv", str(tmp_path / "all.csv")])
    assert rc == EXIT_OK
    out = capsys.readouterr().out
    # PCE only by default (the store was built with the default --method): no Mahalanobis column
    assert "PCE decision" in out and "runner-up" in out and "Mahalanobis (beside PCE)" not in out
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert len(records) == 8
    flats = [r for r in records if r["kind"] == "flat"]
    assert all(r["pce"]["decision"] == r["path"].split(os.sep)[-2] for r in flats)
    assert json.loads((tmp_path / "all.json").read_text())["images"] == records
    csv_lines = (tmp_path / "all.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 8 * 2  # one row per image and camera
    manifest = json.loads((run / "manifest.json").read_text())
    assert {e["sha256"] for e in manifest["inputs"]} == {r["sha256"] for r in records}
    assert manifest["params"]["pce_clip"] == [192, 192]  # taken from the fingerprints
    assert manifest["kernels"] == "not used"
    assert main(["verify", str(run)]) == EXIT_OK


def test_verify_detects_changed_and_missing_files(data, tmp_path, capsys):
    evidence = tmp_path / "evidence"
    shutil.copytree(data / "data" / "disputed" / "C01", evidence)
    run = tmp_path / "run"
    assert main(["identify", str(data / "fp"), str(evidence), "-o", str(run), "--quiet"]) == EXIT_OK
    files = sorted(evidence.iterdir())
    with open(files[0], "ab") as handle:
        handle.write(b"\0")
    files[1].unlink()
    capsys.readouterr()
    assert main(["verify", str(run / "manifest.json")]) == EXIT_VERIFY_FAILED
    out = capsys.readouterr().out
    assert f"CHANGED  disputed    {files[0]}" in out and f"MISSING  disputed    {files[1]}" in out


def test_two_runs_give_byte_identical_results(data, tmp_path):
    for name in ("a", "b"):
        assert main(["identify", str(data / "fp"), str(data / "data" / "disputed"), "-o", str(tmp_path / name),
                     "--quiet", "--method", "pce"]) == EXIT_OK
    assert (tmp_path / "a" / "results.jsonl").read_bytes() == (tmp_path / "b" / "results.jsonl").read_bytes()
    ma, mb = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("a", "b"))
    for m in (ma, mb):
        del m["started"], m["finished"], m["argv"], m["run_dir"]
    # the run's own files are recorded relative to the run folder: the same entries in both
    assert ma == mb and ma["outputs"][0]["path"] == "results.jsonl" and "abspath" not in ma["outputs"][0]


def test_partial_failure_exit_code_and_messages(data, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(sorted((data / "data" / "disputed" / "C02").iterdir())[0], mixed / "ok.jpg")
    (mixed / "zero.jpg").write_bytes(b"")
    rc = main(["identify", str(data / "fp"), str(mixed), "-o", str(tmp_path / "run"), "--quiet"])
    assert rc == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert f"camid: error: {mixed / 'zero.jpg'}: empty file (0 bytes)" in err


def test_fatal_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["identify", str(tmp_path / "nofp"), str(tmp_path / "in"), "-o", str(tmp_path / "r")]) == 1
    assert "fingerprint folder does not exist" in capsys.readouterr().err
    (tmp_path / "refs").mkdir()
    assert main(["fingerprint", str(tmp_path / "refs"), "-o", str(tmp_path / "fp")]) == 1
    assert "no camera subfolders" in capsys.readouterr().err


def test_residual_command_writes_tiff_and_index(data, tmp_path):
    image = sorted((data / "data" / "disputed" / "C01").iterdir())[0]
    assert main(["residual", str(image), "-o", str(tmp_path / "f64"), "--backend", "numpy", "--precision", "float64",
                 "--quiet"]) == EXIT_OK
    index = [json.loads(line) for line in (tmp_path / "f64" / "residuals.jsonl").read_text().splitlines()]
    assert len(index) == 1 and index[0]["params"]["sigma"] == 3.0
    written = tifffile.imread(index[0]["output"])
    pixels, info = read_image(image)
    assert index[0]["sha256"] == info.sha256 and written.dtype == np.float32
    reference = extract_residual(pixels[None], backend=get_backend("numpy", dtype="float64"))[0]
    np.testing.assert_allclose(written, reference, atol=1e-6)
    # the default precision (float32) stays within the backends' parity tolerance of the float64 reference
    assert main(["residual", str(image), "-o", str(tmp_path / "f32"), "--backend", "numpy", "--quiet"]) == EXIT_OK
    index = [json.loads(line) for line in (tmp_path / "f32" / "residuals.jsonl").read_text().splitlines()]
    fast = tifffile.imread(index[0]["output"])
    assert 0 < np.max(np.abs(fast - reference)) < 1e-3


def test_synth_command(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--cameras", "2", "--refs", "1", "--flat", "1", "--natural", "1",
                 "--height", "64", "--width", "80"]) == EXIT_OK
    assert "wrote 6 images of 2 cameras" in capsys.readouterr().out


def _camid(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "camid_gpu.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **kwargs)


def test_kill_9_then_resume_loses_and_duplicates_nothing(data, tmp_path):
    """A real crash: SIGKILL a running `camid identify`, resume, compare with an uninterrupted run."""
    many = tmp_path / "many"
    many.mkdir()
    sources = sorted((data / "data" / "disputed").rglob("*.jpg"))
    for k in range(24):
        shutil.copy(sources[k % len(sources)], many / f"img_{k:02d}.jpg")
    args = [str(data / "fp"), str(many), "--method", "pce", "--quiet", "--max-host-memory", "20M"]
    reference = tmp_path / "reference"
    assert subprocess.run([sys.executable, "-m", "camid_gpu.cli", "identify", *args, "-o", str(reference)],
                          capture_output=True).returncode == EXIT_OK
    run = tmp_path / "run"
    proc = _camid("identify", *args, "-o", str(run))
    results = run / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and results.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = results.read_bytes().count(b"\n")
    assert 3 <= done_before < 24, "the kill should land mid-run"
    command = [sys.executable, "-m", "camid_gpu.cli", "identify", *args, "-o", str(run), "--resume"]
    # killed outright, the run wrote no manifest: nothing vouches for its records, so the resume must be told
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == EXIT_FAIL and "--adopt-unverified" in refused.stderr
    resumed = subprocess.run(command + ["--adopt-unverified"], capture_output=True, text=True)
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert results.read_bytes() == (reference / "results.jsonl").read_bytes()
    adopted = json.loads((run / "manifest.json").read_text())["adopted_unverified"]
    assert len(adopted) == 1 and adopted[0]["results_bytes"] > 0


def test_full_frame_fingerprints_and_scale_search_from_the_command_line(data, tmp_path, capsys):
    fp = tmp_path / "fp_full"
    assert main(["fingerprint", str(data / "data" / "refs"), "-o", str(fp), "--clip", "full", "--refs", "4",
                 "--method", "pce", "--quiet"]) == EXIT_OK
    run = tmp_path / "run"
    assert main(["identify", str(fp), str(data / "data" / "disputed" / "C01"), "-o", str(run), "--quiet"]) == EXIT_OK
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert all(r["error"] is None for r in records)  # full frame: no 1000x1000 default clip imposed
    assert json.loads((run / "manifest.json").read_text())["params"]["pce_clip"] is None
    search = tmp_path / "search"
    assert main(["identify", str(fp), str(data / "data" / "disputed" / "C01"), "-o", str(search), "--quiet",
                 "--search-scales", "0.9:1.0:0.1"]) == EXIT_OK
    records = [json.loads(line) for line in (search / "results.jsonl").read_text().splitlines()]
    flats = [r for r in records if r["kind"] == "flat"]
    assert flats and all(r["pce"]["decision"] == "C01" and r["pce"]["scores"]["C01"]["scale"] == 1.0 for r in flats)
    if importlib.util.find_spec("matplotlib") is not None:
        assert main(["report", str(search)]) == EXIT_OK
    else:  # the report extra is missing: a clear error naming it, not a traceback
        assert main(["report", str(search)]) == 1 and "matplotlib" in capsys.readouterr().err
    assert main(["identify", str(fp), str(data / "data"), "-o", str(tmp_path / "x"), "--search-scales", "0.5"]) == 1
    assert "--search-scales must be LO:HI:STEP" in capsys.readouterr().err

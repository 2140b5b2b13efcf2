"""Loading a fingerprint store refuses what it cannot trust: tampered or degenerate arrays, too few
references, a camera name that is not the file's, duplicate cameras, damaged metadata, FIFOs."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from camid_gpu.cli import EXIT_FAIL, EXIT_VERIFY_FAILED, main
from camid_gpu.config import MIN_REFERENCES
from camid_gpu.errors import FingerprintError
from camid_gpu.store import load_fingerprint, load_store

from conftest import evidence, copy_store, rehash, write_npz, RUN_ARGS


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

"""A hostile user of ``camid cluster``: input limits, skipped files, frames with no sensor noise, names that
are not UTF-8, and outputs written whole. Tiny images (64x80, region 32..64) keep it fast."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from camid_gpu.cli import main
from camid_gpu.cluster import ClusterParams, cluster_images
from camid_gpu.config import InputLimits, Params, RunConfig

PIL = pytest.importorskip("PIL.Image")
CONFIG = RunConfig(backend="numpy", progress=False)
PARAMS = ClusterParams(region=64)


def _png(path, array) -> None:
    PIL.fromarray(array).save(path)


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 200, (64, 80, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        _png(d / f"n{i}.png", _noise(i))
    (d / "notes.txt").write_text("not an image")
    return d


def test_input_limits_are_honoured(folder, tmp_path):
    config = RunConfig(backend="numpy", progress=False, limits=InputLimits(max_file_bytes=1000))
    result = cluster_images([str(folder)], str(tmp_path / "run"), PARAMS, config)
    assert len(result["errors"]) == 3 and not result["unclustered"]
    assert all("file-size limit" in e["error"]["reason"] for e in result["errors"])


def test_cli_max_file_size_reaches_cluster(folder, tmp_path, capsys):
    main(["cluster", str(folder), "-o", str(tmp_path / "run"), "--region", "64", "--backend", "numpy",
          "--max-file-size", "1000"])
    assert "file-size limit" in capsys.readouterr().err


def test_skipped_files_are_recorded_and_printed(folder, tmp_path, capsys):
    os.symlink(folder / "n0.png", folder / "z-link.png")  # the same file twice: analysed once, the other listed
    run = tmp_path / "run"
    main(["cluster", str(folder), "-o", str(run), "--region", "64", "--backend", "numpy"])
    err = capsys.readouterr().err
    assert "skipped:" in err and "notes.txt" in err and "z-link.png" in err
    result = json.loads((run / "clusters.json").read_text())
    assert {os.path.basename(s["path"]) for s in result["skipped"]} == {"notes.txt", "z-link.png"}
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(json.dumps(manifest).split("notes.txt")) > 1


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_constant_frames_are_refused_not_linked(tmp_path, precision):
    # two uniform frames (e.g. saturated skies from two cameras): their residuals are rounding error, the same
    # in both; normalised, they had NCC 1 and were linked as one camera
    d = tmp_path / "in"
    d.mkdir()
    _png(d / "gray-a.png", np.full((64, 80, 3), 37, np.uint8))
    _png(d / "gray-b.png", np.full((64, 80, 3), 37, np.uint8)[:, ::-1].copy())
    _png(d / "white.png", np.full((64, 80, 3), 255, np.uint8))
    _png(d / "black.png", np.zeros((64, 80, 3), np.uint8))
    _png(d / "n0.png", _noise(0))
    config = RunConfig(backend="numpy", progress=False, precision=precision)
    result = cluster_images([str(d)], str(tmp_path / "run"), PARAMS, config)
    assert not result["clusters"]
    kinds = {os.path.basename(e["path"]): e["error"]["kind"] for e in result["errors"]}
    assert kinds == {"gray-a.png": "no-signal", "gray-b.png": "no-signal", "white.png": "no-signal",
                     "black.png": "no-signal"}
    assert [os.path.basename(u["path"]) for u in result["unclustered"]] == ["n0.png"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX byte names")
def test_name_that_is_not_utf8(folder, tmp_path):
    raw = os.path.join(os.fsencode(str(folder)), b"bad\xff.png")
    _png(folder / "n7.png", _noise(7))
    with open(raw, "wb") as handle:  # its own content (a copy of another file would be compared once, as that one)
        handle.write((folder / "n7.png").read_bytes())
    os.remove(folder / "n7.png")
    run = tmp_path / "run"
    result = cluster_images([str(folder)], str(run), PARAMS, CONFIG)
    with open(run / "clusters.csv", encoding="utf-8") as handle:
        names = [r["path"] for r in csv.DictReader(handle)]
    assert any(n.endswith("bad\\xff.png") for n in names)
    assert len(result["groups"][0]["order"]) == 4
    assert not [f for f in os.listdir(run) if ".tmp" in f]  # nothing left half-written beside the outputs


def test_resume_refuses_another_working_precision(folder, tmp_path):
    run = str(tmp_path / "run")
    cluster_images([str(folder)], run, PARAMS, RunConfig(backend="numpy", progress=False, precision="float32"))
    _png(folder / "n9.png", _noise(9))
    with pytest.raises(Exception, match="residual_precision"):  # float64 rows would be mixed with float32 ones
        cluster_images([str(folder)], run, PARAMS, RunConfig(backend="numpy", progress=False, precision="float64"),
                       resume=True)
    result = cluster_images([str(folder)], run, PARAMS, RunConfig(backend="numpy", progress=False,
                                                                   precision="float32"), resume=True)
    assert len(result["groups"][0]["order"]) == 4


def test_byte_identical_copies_are_named(folder, tmp_path, capsys):
    # a copy (not a link: the listing cannot see it) links with NCC 1; the run says the two are one file's bytes
    (folder / "copy-of-n1.png").write_bytes((folder / "n1.png").read_bytes())
    run = tmp_path / "run"
    main(["cluster", str(folder), "-o", str(run), "--region", "64", "--backend", "numpy"])
    result = json.loads((run / "clusters.json").read_text())
    assert [sorted(os.path.basename(p) for p in g) for g in result["identical_files"]] == [["copy-of-n1.png",
                                                                                            "n1.png"]]
    assert "byte-identical" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["missing", "garbage", "list"])
def test_resume_without_readable_parameters_is_refused(folder, tmp_path, damage):
    run = tmp_path / "run"
    cluster_images([str(folder)], str(run), PARAMS, CONFIG)
    params = run / "cluster-params.json"
    if damage == "missing":  # it was written anew: a resume could then mix residuals of another region or sigma
        params.unlink()
    else:
        params.write_text("{not json" if damage == "garbage" else "[]")
    with pytest.raises(Exception, match="cluster-params.json") as info:
        cluster_images([str(folder)], str(run), ClusterParams(region=32), CONFIG, resume=True)
    assert "start a new run folder" in str(info.value)


def test_a_nan_residual_is_an_error_not_a_row(folder, tmp_path, monkeypatch):
    from camid_gpu.cluster import residuals as cluster_residuals

    original, calls = cluster_residuals.wiener_dft, []

    def second_is_nan(bk, x):
        out = original(bk, x)
        calls.append(1)
        if len(calls) == 2:
            out = out * np.nan
        return out

    monkeypatch.setattr(cluster_residuals, "wiener_dft", second_is_nan)
    config = RunConfig(backend="numpy", progress=False, chunk=1)
    result = cluster_images([str(folder)], str(tmp_path / "run"), PARAMS, config)
    assert [(os.path.basename(e["path"]), e["error"]["kind"]) for e in result["errors"]] == [("n1.png", "no-signal")]
    assert "not finite" in result["errors"][0]["error"]["reason"]
    assert len(result["unclustered"]) == 2


def test_report_lists_skipped_and_identical_files(folder, tmp_path):
    from camid_gpu.report import write_report

    (folder / "copy-of-n1.png").write_bytes((folder / "n1.png").read_bytes())
    run = tmp_path / "run"
    cluster_images([str(folder)], str(run), PARAMS, CONFIG)
    with open(write_report(str(run), str(tmp_path / "r.html")), encoding="utf-8") as handle:
        html = handle.read()
    assert "Files not analysed (1)" in html and "notes.txt" in html and "Byte-identical files" in html


def test_float16_gram_without_cuda_is_refused_before_any_work(folder, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="CUDA"):
        cluster_images([str(folder)], str(run), ClusterParams(region=64, precision="float16"), CONFIG)
    assert not run.exists()


@pytest.mark.parametrize("sigma", ["inf", "nan", "1e300", "0", "-1"])
def test_sigma_out_of_range_is_a_clear_error(folder, tmp_path, capsys, sigma):
    # inf made NaN residuals and a JSON error; 1e300 an OverflowError traceback; the same for identify's sigmas
    assert main(["cluster", str(folder), "-o", str(tmp_path / "run"), "--region", "64", "--backend", "numpy",
                 "--sigma", sigma]) != 0
    assert "sigma (--sigma) must be a finite number in (0, 255]" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"sigma_query \(--sigma-query\) must be a finite number"):
        Params(sigma_query=float(sigma))


def test_residual_command_refuses_an_infinite_sigma(folder, tmp_path, capsys):
    assert main(["residual", str(folder / "n0.png"), "-o", str(tmp_path / "res"), "--backend", "numpy",
                 "--sigma", "inf"]) != 0
    assert "sigma (--sigma) must be a finite number in (0, 255]" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -5.0])
def test_pce_threshold_must_be_positive_and_finite(value):
    # NaN or inf made every decision "none" (no PCE exceeds it); <= 0 names a camera for chance correlations
    with pytest.raises(ValueError, match="pce_threshold"):
        Params(pce_threshold=value)


@pytest.mark.parametrize("text, message", [("1", "at least 1M"), ("inf", "must look like"), ("1e400", "must look like"),
                                           ("-1", "finite, positive"), ("0", "finite, positive")])
def test_memory_budgets_are_checked(folder, tmp_path, capsys, text, message):
    # '1' crashed in chunk sizing ('min() arg is an empty sequence'); 'inf' was an OverflowError traceback
    assert main(["cluster", str(folder), "-o", str(tmp_path / "run"), "--region", "64", "--backend", "numpy",
                 "--max-host-memory", text]) != 0
    assert message in capsys.readouterr().err


def test_resume_with_another_spelling_of_a_file_already_in_the_run(folder, tmp_path):
    """A resumed run names the folder another way (here through a link): its files are the run's own, not new
    ones (a second record of one file links with the first at NCC 1, a "cluster" of one image)."""
    run = str(tmp_path / "run")
    cluster_images([str(folder)], run, PARAMS, CONFIG)
    _png(folder / "n9.png", _noise(9))
    os.symlink(folder, tmp_path / "link")
    result = cluster_images([str(tmp_path / "link")], run, PARAMS, CONFIG, resume=True)
    order = result["groups"][0]["order"]
    assert len(order) == 4 and sorted(os.path.basename(p) for p in order) == ["n0.png", "n1.png", "n2.png", "n9.png"]
    assert result["identical_files"] == [] and result["clusters"] == []
    again = [s for s in result["skipped"] if "already in the run" in s["reason"]]
    assert len(again) == 3


def _unlist(run, relpath):
    """Take ``relpath`` out of the run's manifest, and re-sign it (manifest.sha256)."""
    import hashlib

    manifest = json.loads((run / "manifest.json").read_text())
    manifest["outputs"] = [e for e in manifest["outputs"] if e.get("relpath") != relpath]
    data = json.dumps(manifest).encode()
    (run / "manifest.json").write_bytes(data)
    (run / "manifest.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  manifest.json\n")


@pytest.mark.parametrize("stored", ["float16", None])
def test_resume_never_tops_up_a_gram_of_another_precision(folder, tmp_path, stored):
    """A Gram made in float16 (CUDA) is not completed with float32 pairs (or the other way round) under one
    precision's name: a resumed run in another Gram precision, or of unknown precision, multiplies all pairs."""
    run = tmp_path / "run"
    first = cluster_images([str(folder)], str(run), PARAMS, CONFIG)
    name = first["groups"][0]["name"]
    info = run / "gram" / f"{name}.json"
    assert json.loads(info.read_text()) == {"precision": "float32", "rows": 3}
    if stored is None:
        info.unlink()  # a run folder from before the precision was recorded
    else:
        info.write_text(json.dumps({"precision": stored, "rows": 3}))
    _unlist(run, f"gram/{name}.json")  # as the manifest of a run made so (a changed working file is refused)
    _png(folder / "n9.png", _noise(9))
    grown = cluster_images([str(folder)], str(run), PARAMS, CONFIG, resume=True)
    assert grown["groups"][0]["gram"]["rows_reused"] == 0 and grown["groups"][0]["gram"]["precision"] == "float32"
    _png(folder / "n8.png", _noise(8))
    again = cluster_images([str(folder)], str(run), PARAMS, CONFIG, resume=True)
    assert again["groups"][0]["gram"]["rows_reused"] == 4  # the same precision: reused


def test_copies_of_one_image_are_not_a_cluster(folder, tmp_path):
    """Two files with the same bytes are one image: they are compared once, so they never make a "camera" of
    their own (nor a fingerprint said to have two references); the copy is listed beside its first file."""
    (folder / "copy-of-n1.png").write_bytes((folder / "n1.png").read_bytes())
    result = cluster_images([str(folder)], str(tmp_path / "run"), PARAMS, CONFIG)
    assert result["clusters"] == [] and result["groups"][0]["images"] == 3
    (copy,) = [u for u in result["unclustered"] if "identical_to" in u]  # the later of the two in the listing
    assert {os.path.basename(copy["path"]), os.path.basename(copy["identical_to"])} == {"copy-of-n1.png", "n1.png"}
    assert len(result["unclustered"]) == 4
    assert not os.path.exists(tmp_path / "run" / "fingerprints")

"""The examiner's first hour with the defaults, one behaviour per test: --refs, PCE only by default, quarter-turned
references, progress, the console table, hints, umask, fingerprint --add, help and --kind auto, versions."""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from importlib import metadata

import numpy as np
import pytest
from PIL import Image

from camid_gpu import config as cfg
from camid_gpu.cli import main
from camid_gpu.cli.answers import image_line, note, row
from camid_gpu.cli.defaults import chosen_methods
from camid_gpu.cli.hints import hints_for
from camid_gpu.cli.parser import build_parser
from camid_gpu.config import Params, RunConfig
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.engine.runner import fingerprint_folder
from camid_gpu.pipeline.prepare import kind_in_name
from camid_gpu.provenance import verify_manifest
from camid_gpu.report.wording import axis_label, human_size, identical_note, param_value, timings_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
NUMPY = RunConfig(backend="numpy", progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Two cameras, 6 lossless references each (fewer than recommended), one flat disputed image each."""
    root = tmp_path_factory.mktemp("first-hour-items")
    make_dataset(root / "data", cameras=2, per_model=2, refs=6, disputed_flat=1, disputed_natural=0,
                 height=128, width=160, fmt="png", seed=5)
    return root


# --refs ------------------------------------------------------------------------------------------
def test_refs_default_uses_every_reference_and_warns(small, tmp_path):
    summary = fingerprint_folder(str(small / "data" / "refs"), str(tmp_path / "fp"), ("pce",), Params(), NUMPY)
    assert [c["references"] for c in summary["cameras"]] == [6, 6]  # was refused: "6 usable, 15 required"
    assert summary["errors"] == []
    [warning] = summary["warnings"]
    assert "'C01' (6), 'C02' (6)" in warning and f"{cfg.RECOMMENDED_REFERENCES} recommended" in warning
    assert json.loads((tmp_path / "fp" / "manifest.json").read_text())["warnings"] == [warning]
    assert build_parser().parse_args(["fingerprint", "r", "-o", "o"]).refs == "all"


def test_refs_count_is_checked_before_decoding_and_names_the_fix(small, tmp_path):
    refs = tmp_path / "refs"
    shutil.copytree(small / "data" / "refs", refs)
    for p in (refs / "C02").iterdir():
        p.write_bytes(b"not an image")  # decoding any of them would give a per-file error
    summary = fingerprint_folder(str(refs), str(tmp_path / "fp"), ("pce",), Params(refs=10), NUMPY)
    assert summary["cameras"] == []
    assert [e["path"] for e in summary["errors"]] == ["C01", "C02"]  # the count only: nothing was decoded
    assert all("pass --refs all" in e["error"]["reason"] and "--refs 6" in e["error"]["reason"]
               for e in summary["errors"])


# PCE only by default -----------------------------------------------------------------------------
def test_pce_only_by_default_mahalanobis_on_request():
    parse = build_parser().parse_args
    assert chosen_methods(parse(["fingerprint", "r", "-o", "o"])) == ("pce",)
    assert chosen_methods(parse(["identify", "fp", "x"]), ("pce", "mahalanobis")) == ("pce",)
    assert chosen_methods(parse(["identify", "fp", "x"]), ("mahalanobis",)) == ("mahalanobis",)
    assert chosen_methods(parse(["identify", "fp", "x", "--method", "both"]), ("pce",)) == ("pce", "mahalanobis")
    assert chosen_methods(parse(["evaluate", "d"])) == ("pce",)
    paper = parse(["evaluate", "d", "--paper"])
    assert chosen_methods(paper) == ("pce", "mahalanobis") and paper.clip == "1000"
    with pytest.raises(ValueError, match="--paper compares both methods"):
        chosen_methods(parse(["evaluate", "d", "--paper", "--method", "pce"]))


def test_golden_run_names_its_method():
    """The golden run must not depend on the default method (its bytes stay those recorded)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
    try:
        import record
    finally:
        sys.path.pop(0)
    assert record.PARAM_ARGS[record.PARAM_ARGS.index("--method") + 1] == "both"


# references turned by a quarter turn -------------------------------------------------------------
def test_turned_references_are_turned_back_and_recorded(small, tmp_path):
    refs = tmp_path / "refs"
    shutil.copytree(small / "data" / "refs", refs)
    turned = sorted((refs / "C01").iterdir())[1:3]  # not the first: the majority decides the orientation
    for p in turned:
        with Image.open(p) as im:
            Image.fromarray(np.rot90(np.asarray(im), 1)).save(p)
    summary = fingerprint_folder(str(refs), str(tmp_path / "fp"), ("pce",), Params(), NUMPY)
    assert summary["errors"] == [] and [c["references"] for c in summary["cameras"]] == [6, 6]
    meta = json.loads((tmp_path / "fp" / "C01.json").read_text())
    back = {os.path.basename(r["path"]): r.get("turned_back_degrees") for r in meta["references"]}
    assert {n: d for n, d in back.items() if d} == {p.name: 270 for p in turned}
    assert meta["source_shape"] == [128, 160]
    plain = fingerprint_folder(str(small / "data" / "refs"), str(tmp_path / "fp0"), ("pce",), Params(), NUMPY)
    assert plain["cameras"]
    k0 = np.load(tmp_path / "fp0" / "C01.npz")["k"]
    k1 = np.load(tmp_path / "fp" / "C01.npz")["k"]
    assert np.corrcoef(k0.ravel(), k1.ravel())[0, 1] > 0.95  # the same fingerprint, turned references included


# progress ------------------------------------------------------------------------------------------
def test_progress_bar_counts_per_image_and_is_quiet_off_a_terminal(capsys):
    from camid_gpu._shared.progress import Progress

    bar = Progress(4, "identify", enabled=True)
    bar.started()  # one image decoded: the bar moves before its chunk is scored
    assert bar._bar.tasks[0].completed == 1
    bar.advance(4)
    bar.close()
    err = capsys.readouterr().err
    assert "4/4" in err and "img/s" in err and "left" in err
    silent = Progress(4, "identify")  # stderr is not a terminal under pytest
    silent.advance(4)
    silent.close()
    assert capsys.readouterr().err == ""


def test_rich_and_matplotlib_are_core_dependencies():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as handle:
        text = handle.read()
    core = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert '"rich>=' in core and '"matplotlib>=' in core


# the console table ---------------------------------------------------------------------------------
def _record(best=52.88, decision=None, **extra):
    scores = {"C03": {"pce": best, "log10_p_fa": -12.8}, "C01": {"pce": 3.1, "log10_p_fa": -0.4}}
    pce = {"scores": scores, "decision": decision, "best": "C03", "best_pce": best, "threshold": 60.0,
           "above_threshold": [decision] if decision else [], "not_comparable": {}}
    return {"path": "seized/IMG_1.jpg", "sha256": "ab", "error": None, "pce": pce, "size": [480, 640],
            "rotations_tried": [0], "exif": {}, **extra}


def test_table_names_best_camera_runner_up_and_near_miss():
    r = _record()
    assert row(r, ("pce",)) == ["seized/IMG_1.jpg", "none", "C03", 52.88, -12.8, 60.0, "C01 3.1",
                                "near miss: C03 under the threshold"]
    assert note(_record(best=20.0)) == ""
    line = image_line(r, 3, 16)
    assert line.startswith("[3/16] seized/IMG_1.jpg: none (best C03 PCE 52.9, log10 P_FA -12.8; threshold 60.0; "
                           "runner-up C01 3.1) near miss")


# hints ---------------------------------------------------------------------------------------------
def test_hints_for_exif_turn_and_resize_only_where_the_data_say_so():
    sensors = {"C03": (480, 640)}
    turned = _record(best=2.0, exif={"orientation": 3})
    assert any("--rotations all" in h for h in hints_for(turned, sensors, "auto", False))
    assert hints_for(turned, sensors, "all", False) == []
    resized = _record(best=2.0, size=[240, 320])
    assert any("--search-scales" in h for h in hints_for(resized, sensors, "auto", False))
    assert hints_for(resized, sensors, "auto", True) == []
    assert hints_for(_record(best=2.0, size=[240, 400]), sensors, "auto", False) == []  # another aspect ratio
    assert hints_for(_record(best=90.0, decision="C03", exif={"orientation": 3}), sensors, "auto", False) == []


# umask ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_outputs_respect_the_umask(tmp_path, mask, mode):
    from camid_gpu._shared.files import write_bytes_atomic

    old = os.umask(mask)
    try:
        path = write_bytes_atomic(tmp_path / "out.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode  # was 0600 whatever the umask


# fingerprint --add ----------------------------------------------------------------------------------
def test_fingerprint_add_joins_a_verified_store(small, tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    shutil.copytree(small / "data" / "refs" / "C01", first / "C01")
    shutil.copytree(small / "data" / "refs" / "C02", second / "C02")
    store = tmp_path / "fp"
    common = ["--backend", "numpy", "--quiet"]
    assert main(["fingerprint", str(first), "-o", str(store), *common]) == 0
    assert main(["fingerprint", str(second), "-o", str(store), *common]) == 1  # without --add: refused
    assert main(["fingerprint", str(second), "-o", str(store), "--add", *common]) == 0
    manifest = json.loads((store / "manifest.json").read_text())
    assert {os.path.basename(o["path"]) for o in manifest["outputs"]} == {"C01.json", "C01.npz", "C02.json",
                                                                          "C02.npz"}
    assert len([e for e in manifest["inputs"] if e["role"] == "reference"]) == 12
    assert manifest["added_to_store"]["cameras_kept"] == ["C01"]
    assert verify_manifest(str(store / "manifest.json"))["ok"]
    capsys.readouterr()
    assert main(["fingerprint", str(first), "-o", str(store), "--add", *common]) == 1
    assert "already in the store" in capsys.readouterr().err
    assert main(["fingerprint", str(first), "-o", str(tmp_path / "fp2"), "--add", "--sigma-fingerprint", "2",
                 *common]) == 0  # an empty folder: a plain build
    third = tmp_path / "c"
    shutil.copytree(small / "data" / "refs" / "C01", third / "C09")
    assert main(["fingerprint", str(third), "-o", str(store), "--add", "--sigma-fingerprint", "2", *common]) == 1
    assert "other parameters" in capsys.readouterr().err


# 12 and 16. README ------------------------------------------------------------------------------------
def test_readme_first_screen_says_what_to_do_and_what_pfa_does_not_cover():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    first_screen = "\n".join(text.splitlines()[:45])
    for step in ("camid fingerprint", "camid identify", "camid report", "flat"):
        assert step in first_screen
    assert "--cluster local:4  # defaults shown" not in text and "# defaults shown" not in text
    assert "only identify and cluster take `--dask" in " ".join(text.split())  # the others reject it
    for extra in ("[torch]", "[cuda]", "[dist]", "[gpu-decode]"):
        assert extra in text
    assert "white-noise model" in text and "same model" in text


# help and --kind auto -------------------------------------------------------------------------------
def test_fingerprint_help_lists_only_its_options_and_synth_shows_defaults():
    sub = build_parser()._subparsers._group_actions[0].choices
    fingerprint = sub["fingerprint"].format_help()
    for scoring in ("--rotations", "--pce-threshold", "--shift-range", "--sigma-query", "--natural-mode"):
        assert scoring not in fingerprint
    assert "--refs" in fingerprint and "--add" in fingerprint
    synth = sub["synth"].format_help()
    assert "(default: 4)" in synth and "(default: 15)" in synth and "(default: jpeg)" in synth


@pytest.mark.parametrize("path, expected", [
    ("seized/flatmate.jpg", None), ("seized/unnatural.jpg", None), ("seized/IMG_1.jpg", None),
    ("seized/flat_003.jpg", ("flat", "name")), ("x/IMG-natural2.png", ("natural", "name")),
    ("case/flats/IMG_1.jpg", ("flat", "folder")), ("case/naturals/IMG_1.jpg", ("natural", "folder")),
    ("case/flatmates/IMG_1.jpg", None), ("x/flat_natural.jpg", None)])
def test_kind_auto_matches_words_not_substrings(path, expected):
    assert kind_in_name(path) == expected


# 14 and 16. report wording ------------------------------------------------------------------------------
def test_report_wording():
    assert param_value("pce_clip", None) == "full frame" and param_value("refs", None) == "all usable references"
    assert param_value("mahalanobis_clip", [1000, 1000]) == "1000x1000"
    assert human_size(1072301) == "1.07 MB (1,072,301 bytes)" and human_size(512) == "512 bytes"
    table = timings_table({"residuals": 3.0, "gram": 1.0, "total": 4.0})
    assert "<table" in table and "75%" in table and "{" not in table
    assert axis_label(3, "/case/seized/IMG_0012.jpg") == "#3 IMG_0012.jpg"
    assert len(axis_label(1, "x" * 80 + ".jpg")) <= 32
    note_html = identical_note([{"path": "a.jpg", "sha256": "1"}, {"path": "b.jpg", "sha256": "1"},
                                {"path": "c.jpg", "sha256": "2"}])
    assert "Byte-identical" in note_html and "a.jpg" in note_html and "c.jpg" not in note_html


# versions -------------------------------------------------------------------------------------------
def test_versions_come_from_the_installed_distributions():
    from camid_gpu.store import software_versions

    versions = software_versions()
    assert versions["pywavelets"] == metadata.version("PyWavelets")  # the module attribute may lag it
    assert versions["numpy"] == metadata.version("numpy") and versions["scipy"] == metadata.version("scipy")

"""Evidence strength: calibrated likelihood ratios from synthetic evaluate runs (camid calibrate, --calibration),
their bounds and validation with cameras held out, out-of-range images, the casework record and the report."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("lir")

from camid_gpu.cli.commands import main
from camid_gpu.config import Params, RunConfig, methods_of
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.engine.runner import evaluate_dataset
from camid_gpu.errors import CamidError, MissingExtraError
from camid_gpu.evidence import fit
from camid_gpu.evidence.apply import apply_calibration, load_calibration, verbal
from camid_gpu.evidence.model import llr_of_model
from camid_gpu.pipeline.casework import casework_of
from camid_gpu.evidence.conditions import jpeg_quality
from camid_gpu.evidence.pairs import Pair, read_pairs

H, W = 128, 160


def _evaluate(root, seed: int, cameras: int = 6) -> str:
    data, run = os.path.join(root, f"data{seed}"), os.path.join(root, f"run{seed}")
    make_dataset(data, cameras=cameras, per_model=2, refs=5, disputed_flat=4, disputed_natural=4, height=H, width=W,
                 jpeg_quality=90, seed=seed)
    evaluate_dataset(data, run, methods_of("pce"), Params(refs=None), RunConfig(backend="numpy"))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two evaluate runs of different synthetic cameras (6 each: 3 models x twins), and a calibration of the first."""
    root = str(tmp_path_factory.mktemp("calibrate"))
    fitted, other = _evaluate(root, 1), _evaluate(root, 2)
    cal = os.path.join(root, "cal")
    assert main(["calibrate", fitted, "-o", cal, "--case", "C-19", "--examiner", "E. Xaminer"]) == 0
    return {"root": root, "fitted": fitted, "other": other, "cal": cal}


def _record(pce: float, size=(H, W), kind="flat", path="x.jpg", fmt="JPEG", match="full-frame", positions=None):
    from camid_gpu.prnu.pce import log10_false_alarm

    peak = np.sign(pce) * np.sqrt(abs(pce))  # a PCE of peak^2 / energy with energy 1
    score = {"pce": pce, "match": match, "log10_p_fa": float(log10_false_alarm(np.array(peak), np.array(1.0),
                                                                                positions or 1))}
    if positions:
        score["positions_searched"] = positions
    return {"path": path, "realpath": path, "sha256": "0" * 64, "error": None, "kind": kind, "size": list(size),
            "format": fmt, "rotations_tried": [0],
            "pce": {"scores": {"C01": score}, "decision": None, "best": "C01"}}


def test_lr_grows_with_pce_and_stays_within_elub_bounds(runs, tmp_path):
    cal = load_calibration(runs["cal"])
    for fitted in cal.models.values():
        kind = fitted["kind"]
        pces = [-5.0, 0.0, 1.0, 3.0, 10.0, 30.0, 60.0, 100.0, 300.0, 1e3, 1e4, 1e6]
        out = apply_calibration([_record(p, kind=kind, path=_jpeg(tmp_path, 90)) for p in pces], cal)
        llrs = np.array([o["cameras"]["C01"]["log10_lr"] for o in out])
        lo, hi = fitted["bounds"]["lower"], fitted["bounds"]["upper"]
        assert np.all(np.diff(llrs) >= 0), (kind, llrs)
        assert llrs[-1] > llrs[1], kind  # grows, not flat
        assert np.all((llrs >= lo - 1e-9) & (llrs <= hi + 1e-9)), (kind, llrs, lo, hi)
        assert out[-1]["cameras"]["C01"]["at_bound"] == "upper" and llrs[-1] == pytest.approx(hi, abs=1e-3)
        assert lo < 0 < hi
        unbounded = llr_of_model(fitted["model"], [0.0, 1.0, 2.0, 3.0])
        assert np.all(np.diff(unbounded) > 0)


def test_cllr_below_one_on_held_out_cameras(runs):
    cal = load_calibration(runs["cal"])
    for kind, fitted in cal.models.items():
        v = fitted["validation"]
        assert v["cllr"] < 1.0, kind
        assert 0.0 <= v["cllr_min"] <= v["cllr"] + 1e-9
        assert v["same_source"] == 24 and v["different_source"] == 120  # every pair scored once, held out
        assert {f["camera"].rpartition("::")[2] for f in v["folds"]} == {f"C0{i}" for i in range(1, 7)}
    assert cal.models["flat aligned"]["validation"]["cllr"] < 0.5
    assert cal.models["flat aligned"]["validation"]["rate_misleading_same_source"] == 0.0
    # and on other cameras entirely (never seen by the fit)
    other = fit.validate_on(cal, [runs["other"]])
    assert all(k["validation"]["cllr"] < 1.0 for k in other.values())


def test_validation_never_fits_on_the_held_out_camera(monkeypatch):
    seen = []
    real = fit.fit_bounded

    def spy(pairs, calibrator):
        seen.append({p.image_camera for p in pairs} | {p.camera for p in pairs})
        return real(pairs, calibrator)

    monkeypatch.setattr(fit, "fit_bounded", spy)
    rng = np.random.default_rng(0)
    cams = [f"d::C{i}" for i in range(5)]
    cond = {"search": "aligned", "geometry": "full-frame", "compared": [8, 8], "clip": None, "positions": 1,
            "rotations": 1}
    pairs = [Pair(f"{a}-{n}", f"{a}-{n}", a, b, "flat", 0.0, float(rng.normal(2.0 if a == b else 0.3, 0.3)),
                  "same-source" if a == b else "other-model", cond)
             for a in cams for n in range(4) for b in cams]
    cv = fit.cross_validate(pairs, "logistic")
    assert len(seen) == len(cams)
    for fold, used in zip(cv["folds"], seen):
        assert fold["camera"] not in used
    assert len(cv["llrs"]) == len(pairs)


def test_too_few_pairs_refused_saying_how_many(runs, tmp_path, capsys):
    data = read_pairs([runs["fitted"]])
    data.pairs = [p for p in data.pairs if p.image_camera.endswith(("C01", "C02", "C03"))
                  and p.camera.endswith(("C01", "C02", "C03"))]
    with pytest.raises(fit.CalibrationDataError) as err:
        fit.calibrate(data)
    text = str(err.value)
    assert "flat aligned: 12 same-source pairs, at least 20 needed" in text and "at least 100 needed" in text
    assert "3 cameras with images, at least 4 needed" in text
    # the command line: exit 1, the message on stderr, nothing written
    small = _evaluate(str(tmp_path), 3, cameras=2)
    assert main(["calibrate", small, "-o", str(tmp_path / "cal")]) == 1
    assert "too few pairs to calibrate" in capsys.readouterr().err
    assert not (tmp_path / "cal" / "calibration.json").exists()


def test_out_of_range_image_flagged_not_hidden(runs, tmp_path):
    cal = load_calibration(runs["cal"])
    big = tmp_path / "big.jpg"
    Image.fromarray(np.full((256, 320, 3), 128, np.uint8)).save(big, quality=60)
    inside, outside, png, no_kind = apply_calibration(
        [_record(200.0, path=_jpeg(tmp_path, 90)), _record(200.0, size=(256, 320), path=str(big)),
         _record(200.0, fmt="PNG"), _record(200.0, kind="odd")], cal)
    assert inside["within_calibration"] and inside["outside"] == []
    assert inside["calibration_sha256"] == cal.sha256
    assert not outside["within_calibration"]
    assert any("short side 256 px outside the calibrated 128..128" in r for r in outside["outside"])
    assert any("JPEG quality 60 outside the calibrated 90..90" in r for r in outside["outside"])
    # outside: no calibrated LR and no verbal equivalent, its own reasons instead
    lr = outside["cameras"]["C01"]
    assert lr["log10_lr"] is None and lr["verbal"] is None and lr["outside"] == outside["outside"]
    assert "log10_lr_outside_calibration" not in lr
    assert any("format PNG" in r for r in png["outside"])
    assert no_kind["cameras"]["C01"]["log10_lr"] is None and "no calibration for odd images" in no_kind["outside"][0]
    # --lr-outside-calibration: the number, under its own key, still without words
    shown = apply_calibration([_record(200.0, size=(256, 320), path=str(big))], cal, show_outside=True)[0]
    lr = shown["cameras"]["C01"]
    assert lr["log10_lr"] is None and lr["verbal"] is None and lr["log10_lr_outside_calibration"] > 0


def _jpeg(folder, quality: int) -> str:
    path = folder / f"q{quality}.jpg"
    Image.fromarray(np.random.default_rng(quality).integers(0, 255, (H, W, 3), np.uint8)).save(path, quality=quality)
    return str(path)


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 97])
def test_jpeg_quality_estimate(tmp_path, quality):
    assert jpeg_quality(_jpeg(tmp_path, quality)) == quality


def test_changed_calibration_refused(runs, tmp_path):
    import shutil

    copy = tmp_path / "cal"
    shutil.copytree(runs["cal"], copy)
    data = json.loads((copy / "calibration.json").read_text())
    data["models"]["flat aligned"]["bounds"]["upper"] = 9.0
    (copy / "calibration.json").write_text(json.dumps(data))
    with pytest.raises(CamidError, match="calibration.json differs from the manifest"):
        load_calibration(str(copy))


def test_verbal_scale_enfsi():
    assert verbal(0.5) == "weak support for Hp (this camera)"
    assert verbal(1.0) == "moderate support for Hp (this camera)"
    assert verbal(2.5) == "moderately strong support for Hp (this camera)"
    assert verbal(3.2) == "strong support for Hp (this camera)"
    assert verbal(5.0) == "very strong support for Hp (this camera)"
    assert verbal(6.5) == "extremely strong support for Hp (this camera)"
    assert verbal(-2.0) == "moderately strong support for Hd (another camera)"
    assert verbal(None) == "no LR"


def test_without_lir_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lir", None)
    with pytest.raises(MissingExtraError, match=r"camid_gpu\[evidence\]"):
        fit.fit_model(np.array([0.0, 1.0]), np.array([0, 1]), "logistic")


def test_casework_checks(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    with pytest.raises(ValueError, match="control characters"):
        casework_of("C\x1b[31m", None, None, None, [str(a)])
    with pytest.raises(ValueError, match="FOLDER=LABEL"):
        casework_of(None, None, ["EX-1"], None, [str(a), str(b)])
    with pytest.raises(ValueError, match="not one of the command's inputs"):
        casework_of(None, None, [f"{tmp_path}=EX-1"], None, [str(a)])
    cw = casework_of("C-1", "E", [f"{a}=EX-A", f"{b}=EX-B"], ["n1", "n2"], [str(a), str(b)])
    assert [e["label"] for e in cw["exhibits"]] == ["EX-A", "EX-B"] and cw["notes"] == ["n1", "n2"]
    assert casework_of(None, None, None, None, [str(a)]) is None


def test_identify_with_calibration_and_casework_report(runs, tmp_path, capsys):
    fitted_data = os.path.join(runs["root"], "data2")
    fp = os.path.join(runs["other"], "fingerprints")
    run = tmp_path / "run"
    code = main(["identify", fp, os.path.join(fitted_data, "disputed", "C01"), "-o", str(run), "--quiet",
                 "--calibration", runs["cal"], "--case", "CASE-19/2026", "--exhibit", "EXHIBIT-7",
                 "--examiner", "A. Examiner", "--note", "received sealed"])
    assert code == 0
    out = capsys.readouterr().out
    assert "log10 LR" in out and "support for Hp (this camera)" in out and "ENFSI" in out
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["casework"]["case"] == "CASE-19/2026"
    assert manifest["casework"]["exhibits"][0]["label"] == "EXHIBIT-7"
    evidence = json.loads((run / "evidence.json").read_text())
    assert evidence["calibration"]["sha256"] == load_calibration(runs["cal"]).sha256
    assert any(e["path"].endswith("evidence.json") for e in manifest["outputs"])
    flat = [i for i in evidence["images"] if i["conditions"]["kind"] == "flat"]
    assert flat and all(i["decision"] == "C01" and i["cameras"]["C01"]["log10_lr"] > 0 for i in flat)
    assert main(["verify", str(run)]) == 0
    report = tmp_path / "report.html"
    assert main(["report", str(run), "-o", str(report)]) == 0
    html = report.read_text()
    sha = (run / "manifest.sha256").read_text().split()[0]
    for text in ("Casework record", "CASE-19/2026", "EXHIBIT-7", "A. Examiner", "received sealed", sha,
                 'alt="Tippett plot"', 'alt="ECE plot"', 'alt="PAV plot"', "moderate", 'alt="image #1"'):
        assert text in html, text
    assert html.index("Casework record") < html.index("1. The run")
    # diagnostics: the correlation surface of each decision (its PCE recomputed) and the fingerprints' quality
    assert html.count('<img class="surface"') == sum(1 for i in evidence["images"] if i["decision"])
    assert "PCE recomputed" in html and "PCE against the others (leave one out)" in html
    assert "C01: 5 references used, 0 left out" in html


def test_evaluate_with_calibration_writes_hashed_evidence(runs, tmp_path):
    data = os.path.join(runs["root"], "data2")
    out = tmp_path / "eval"
    assert main(["evaluate", data, "-o", str(out), "--method", "pce", "--refs", "all", "--calibration", runs["cal"],
                 "--quiet", "--case", "VAL-1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["casework"]["case"] == "VAL-1"
    assert any(e["path"].endswith("evidence.json") for e in manifest["outputs"])
    assert len(json.loads((out / "evidence.json").read_text())["images"]) == 48


@pytest.mark.parametrize("command", ["fingerprint", "residual", "cluster"])
def test_every_run_command_records_the_casework(runs, tmp_path, command):
    data = os.path.join(runs["root"], "data1")
    c01, c02 = os.path.join(data, "refs", "C01"), os.path.join(data, "refs", "C02")
    out = tmp_path / "out"
    args = {"fingerprint": ["fingerprint", os.path.join(data, "refs"), "-o", str(out), "--method", "pce", "--refs", "all"],
            "residual": ["residual", c01, c02, "-o", str(out)],
            "cluster": ["cluster", c01, c02, "-o", str(out), "--region", "64"]}[command]
    if command != "fingerprint":
        args += ["--exhibit", f"{c01}=EX-A", "--exhibit", f"{c02}=EX-B"]
    assert main(args + ["--case", "K-1", "--examiner", "E", "--note", "n", "--quiet"]) == 0
    casework = json.loads((out / "manifest.json").read_text())["casework"]
    assert casework["case"] == "K-1" and casework["examiner"] == "E" and casework["notes"] == ["n"]
    if command != "fingerprint":
        assert [e["label"] for e in casework["exhibits"]] == ["EX-A", "EX-B"]


def test_casework_text_refused_before_any_work(runs, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["fingerprint", os.path.join(runs["root"], "data1", "refs"), "-o", str(out), "--case", "a\x07b"])
    assert code == 1 and "control characters" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()


def test_report_diagnostics_bounded_and_named(runs, monkeypatch):
    from camid_gpu.report import quality
    from camid_gpu.report.figures import RC, load_matplotlib
    from camid_gpu.report.load import load_run

    monkeypatch.setattr(quality, "MAX_QUALITY_REFERENCES", 5)
    monkeypatch.setattr(quality, "MAX_SURFACES", 2)
    with load_matplotlib().rc_context(RC):
        text = quality.section(load_run(runs["other"], None))
    assert text.count('<img class="surface"') == 2
    assert text.count("references used") == 1  # one camera of 5 references, the budget
    assert "Not recomputed" in text and "C06" in text

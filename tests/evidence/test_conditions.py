"""Evidence that cannot mislead (issue 24; 23.7, 23.8, 23.12): the search-corrected score, one model per search
condition, no verbal equivalent outside the calibration, models that cannot invert, every compared camera shown,
and a calibration checked (folder and model) by every command that reads it, before any image is read."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("lir")

from camid_gpu.cli.commands import main
from camid_gpu.config import Params, RunConfig, methods_of
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.engine.runner import evaluate_dataset
from camid_gpu.errors import CamidError
from camid_gpu.evidence import fit
from camid_gpu.evidence.apply import apply_calibration, load_calibration
from camid_gpu.evidence.model import check_calibration, monotone
from camid_gpu.evidence.pairs import read_pairs
from camid_gpu.evidence.score import score_of
from camid_gpu.prnu.pce import log10_false_alarm
from camid_gpu.provenance import MANIFEST_NAME

H, W = 128, 160


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A synthetic dataset and its evaluate run (6 cameras, 3 models x twins), a flat calibration of it, and a
    second dataset of other cameras for the questioned images."""
    root = tmp_path_factory.mktemp("conditions")
    data, other, run = root / "data", root / "other", root / "run"
    make_dataset(data, cameras=6, per_model=2, refs=5, disputed_flat=4, disputed_natural=0, height=H, width=W,
                 jpeg_quality=90, seed=11)
    make_dataset(other, cameras=3, per_model=1, refs=5, disputed_flat=2, disputed_natural=0, height=H, width=W,
                 jpeg_quality=90, seed=12)
    evaluate_dataset(str(data), str(run), methods_of("pce"), Params(refs=None), RunConfig(backend="numpy"))
    cal = root / "cal"
    assert main(["calibrate", str(run), "-o", str(cal), "--kind", "flat"]) == 0
    fp = root / "fp"
    assert main(["fingerprint", str(other / "refs"), "-o", str(fp), "--refs", "all", "--quiet"]) == 0
    return {"root": root, "data": data, "other": other, "run": run, "cal": cal, "fp": fp}


def _record(pce, positions=1, match="full-frame", size=(H, W), path="x.jpg", camera="C01"):
    peak = np.sign(pce) * np.sqrt(abs(pce))
    score = {"pce": pce, "match": match,
             "log10_p_fa": float(log10_false_alarm(np.array(peak), np.array(1.0), positions))}
    if match == "crop":
        score["positions_searched"] = positions
    return {"path": path, "sha256": "0" * 64, "error": None, "kind": "flat", "size": list(size), "format": "JPEG",
            "rotations_tried": [0], "pce": {"scores": {camera: score}, "decision": None, "best": camera}}


def _jpeg(folder, quality=90, size=(H, W)) -> str:
    path = os.path.join(str(folder), f"q{quality}_{size[0]}.jpg")
    Image.fromarray(np.random.default_rng(quality).integers(0, 255, (*size, 3), np.uint8)).save(path, quality=quality)
    return path


# ------------------------------------------------------------------------------------------------
# 24.1: one score under every search
# ------------------------------------------------------------------------------------------------
def test_crop_searched_different_camera_maximum_gets_no_lr_or_lr_below_one(case, tmp_path):
    """The issue's case: a 6 MP photo crop-searched in a 10 MP fingerprint reaches PCE 26 as a maximum over
    ~10^6 offsets. Scored as a PCE it read log10 LR +1.73; its search-corrected score is a wrong camera's."""
    cal = load_calibration(str(case["cal"]))
    path = _jpeg(tmp_path)
    crop = _record(26.0, positions=1_000_000, match="crop", path=path)
    plain, shown = (apply_calibration([crop], cal, show_outside=s)[0]["cameras"]["C01"] for s in (False, True))
    assert plain["log10_lr"] is None and plain["verbal"] is None  # no crop model: no calibrated LR
    assert any("no calibration for flat images compared by crop search" in r for r in plain["outside"])
    assert shown["log10_lr_outside_calibration"] < 0  # and the number the model gives is support for Hd
    assert plain["condition"] == {"search": "crop", "geometry": "crop", "compared": [H, W], "clip": None,
                                  "positions": 1_000_000, "rotations": 1}
    # the same PCE unsearched is a strong match: the search, not the PCE, makes the difference
    # the same PCE unsearched scores far higher: the search, not the PCE, makes the difference
    aligned = apply_calibration([_record(26.0, path=path)], cal)[0]["cameras"]["C01"]
    assert aligned["within_calibration"] and aligned["log10_lr"] > shown["log10_lr_outside_calibration"]
    assert score_of(crop["pce"]["scores"]["C01"]["log10_p_fa"]) < 0.5 < 0.8 < aligned["score"]


def test_a_crop_model_gives_a_crop_searched_wrong_camera_lr_below_one():
    """Fitted per search, the crop model's wrong-camera maxima sit where the aligned ones do."""
    rng = np.random.default_rng(3)
    pairs = []
    for search, positions in (("aligned", 1), ("crop", 10 ** 6)):
        cond = {"search": search, "geometry": "full-frame" if search == "aligned" else "crop", "compared": [H, W],
                "clip": None, "positions": positions, "rotations": 1}
        for cam in range(6):
            for n in range(30):
                same = n < 5
                pce = rng.uniform(80, 400) if same else float(np.max(rng.normal(0, 1, 1 if positions == 1 else 4000))) ** 2
                lp = float(log10_false_alarm(np.array(np.sqrt(pce)), np.array(1.0), positions))
                pairs.append(fit.Pair(f"{search}{cam}-{n}", f"{search}{cam}-{n}", f"d::C{cam}",
                                      f"d::C{cam}" if same else f"d::C{(cam + n) % 6 if (cam + n) % 6 != cam else cam + 1}",
                                      "flat", pce, score_of(lp), "same-source" if same else "other-model", cond))
    data = fit.RunPairs(pairs, {p.sha256: {"kind": "flat", "size": [H, W], "format": "JPEG", "jpeg_quality": 90}
                                for p in pairs}, [], [], 0)
    doc = fit.calibrate(data)
    assert set(doc["models"]) == {"flat aligned", "flat crop"}
    crop = doc["models"]["flat crop"]
    assert crop["conditions"]["positions"] == [10 ** 6, 10 ** 6] and crop["conditions"]["geometries"] == ["crop"]
    worst = max(p.score for p in pairs if p.search == "crop" and not p.same_source)
    from camid_gpu.evidence.model import llr_of_model

    assert float(llr_of_model(crop["model"], [worst])[0]) < 0


def test_runs_of_different_clips_are_not_merged_and_a_128_clip_calibration_is_refused_for_240(case, tmp_path):
    clipped = tmp_path / "clip64"
    evaluate_dataset(str(case["data"]), str(clipped), methods_of("pce"), Params(refs=None, pce_clip=(64, 64)),
                     RunConfig(backend="numpy"))
    with pytest.raises(CamidError, match="different PCE clips"):
        read_pairs([str(case["run"]), str(clipped)])
    cal = tmp_path / "cal64"
    assert main(["calibrate", str(clipped), "-o", str(cal), "--kind", "flat"]) == 0
    calibration = load_calibration(str(cal))
    assert calibration.models["flat aligned"]["conditions"]["clips"] == [[64, 64]]
    records = [json.loads(line) for line in (clipped / "results.jsonl").read_text().splitlines()]
    records = [r for r in records if r.get("kind") == "flat"][:3]
    same = apply_calibration(records, calibration, {"pce_clip": [64, 64], "shift_range": [0, 0]})
    other = apply_calibration(records, calibration, {"pce_clip": [96, 96], "shift_range": [0, 0]})
    assert all(i["within_calibration"] for i in same)
    for img in other:
        for lr in img["cameras"].values():
            assert lr["log10_lr"] is None and lr["verbal"] is None
            assert "96x96 clip not among the calibrated clips (64x64)" in lr["outside"]


# ------------------------------------------------------------------------------------------------
# 24.5 and 23.8: models that cannot invert, checked on load
# ------------------------------------------------------------------------------------------------
def test_kde_across_a_gap_is_stored_non_decreasing():
    rng = np.random.default_rng(0)
    different = np.concatenate([rng.normal(0.2, 0.05, 300), [1.6, 1.65]])  # two wrong-camera outliers in the gap
    same = np.concatenate([rng.normal(1.0, 0.05, 30), rng.normal(3.0, 0.05, 30)])
    scores = np.concatenate([different, same])
    labels = np.concatenate([np.zeros(different.size, int), np.ones(same.size, int)])
    import lir.algorithms.kde as kde

    raw = np.asarray(kde.KDECalibrator(bandwidth="silverman").fit(scores, labels).transform(np.linspace(0, 3.5, 200)))
    assert np.any(np.diff(raw[np.isfinite(raw)]) < -1e-6)  # lir's KDE falls somewhere across the gap
    model = fit.fit_model(scores, labels, "kde")
    assert np.all(np.diff(model["log10_lr"]) >= 0)
    assert "non-decreasing" in model["calibrator"]
    assert np.all(np.diff(monotone([3.0, 1.0, 2.0, 5.0, 4.0])) >= 0)


def _rewrite_consistently(folder, edit) -> None:
    """Edit calibration.json and record the edit in the manifest and manifest.sha256, as a forger would."""
    path = Path(folder) / "calibration.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    raw = json.dumps(data).encode("utf-8")
    path.write_bytes(raw)
    manifest_path = Path(folder) / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for entry in manifest["outputs"]:
        if entry["path"].endswith("calibration.json"):
            entry["sha256"], entry["size"] = hashlib.sha256(raw).hexdigest(), len(raw)
    text = json.dumps(manifest, indent=1).encode("utf-8")
    manifest_path.write_bytes(text)
    (Path(folder) / "manifest.sha256").write_text(f"{hashlib.sha256(text).hexdigest()}  manifest.json\n")


def _model(data):
    return data["models"]["flat aligned"]


EDITS = {
    "negative slope": (lambda d: _model(d)["model"].update(slope=-abs(_model(d)["model"]["slope"])), "slope"),
    "swapped bounds": (lambda d: _model(d)["bounds"].update(lower=_model(d)["bounds"]["upper"],
                                                            upper=_model(d)["bounds"]["lower"]), "bounds"),
    "1e308": (lambda d: _model(d)["model"].update(intercept=1e308), "intercept"),
    "infinity": (lambda d: _model(d)["bounds"].update(upper=float("inf")), "bounds.upper"),
    "NaN": (lambda d: _model(d)["model"].update(slope=float("nan")), "slope"),
    "a string": (lambda d: _model(d)["model"].update(intercept="0.5"), "intercept"),
    "no model": (lambda d: _model(d).pop("model"), "model"),
    "unsorted table": (lambda d: _model(d).update(model={"type": "table", "score": [0.0, 2.0, 1.0],
                                                         "log10_lr": [-1.0, 0.0, 1.0]}), "score"),
    "falling table": (lambda d: _model(d).update(model={"type": "table", "score": [0.0, 1.0, 2.0],
                                                        "log10_lr": [1.0, 0.0, -1.0]}), "log10_lr"),
    "no conditions": (lambda d: _model(d).pop("conditions"), "conditions"),
    "simulated flag": (lambda d: d["data"].pop("simulated"), "data.simulated"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_consistently_edited_model_is_refused_naming_the_field(case, tmp_path, edit):
    copy = tmp_path / "cal"
    shutil.copytree(case["cal"], copy)
    change, field = EDITS[edit]
    _rewrite_consistently(str(copy), change)
    assert main(["verify", str(copy)]) == 0  # the forgery is consistent: only the model check can see it
    with pytest.raises(CamidError, match=f"calibration.json: field .*{field}"):
        load_calibration(str(copy))


def test_check_calibration_accepts_what_calibrate_writes(case):
    data = json.loads((case["cal"] / "calibration.json").read_text())
    assert check_calibration(data, "c.json") is data


# ------------------------------------------------------------------------------------------------
# 23.7: every tamper of the model, the manifest or manifest.sha256 is detected by every command that reads it
# ------------------------------------------------------------------------------------------------
def _tamper(folder, how) -> None:
    cal, manifest, checksum = (Path(folder) / n for n in ("calibration.json", MANIFEST_NAME, "manifest.sha256"))
    if how == "model byte":
        raw = bytearray(cal.read_bytes())
        raw[raw.index(b'"slope": ') + 10] ^= 0x01  # one digit of the slope
        cal.write_bytes(bytes(raw))
    elif how == "manifest":
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["params"]["calibrator"] = "kde"
        manifest.write_text(json.dumps(data, indent=1), encoding="utf-8")
    elif how == "manifest.sha256 edited":
        text = checksum.read_text()
        checksum.write_text(("0" if text[0] != "0" else "1") + text[1:])
    elif how == "manifest.sha256 deleted":
        checksum.unlink()
    elif how == "validation.html":
        with open(Path(folder) / "validation.html", "a") as handle:
            handle.write("<!-- edited -->")


TAMPERS = ["model byte", "manifest", "manifest.sha256 edited", "manifest.sha256 deleted", "validation.html"]


@pytest.mark.parametrize("how", TAMPERS)
@pytest.mark.parametrize("command", ["identify", "evaluate", "validate"])
def test_every_tamper_refused_by_every_command_before_any_image_is_read(case, tmp_path, capsys, how, command):
    copy = tmp_path / "cal"
    shutil.copytree(case["cal"], copy)
    _tamper(str(copy), how)
    out = tmp_path / "run"
    args = {"identify": ["identify", str(case["fp"]), str(case["other"] / "disputed"), "-o", str(out)],
            "evaluate": ["evaluate", str(case["other"]), "-o", str(out), "--refs", "all"],
            "validate": ["calibrate", "--validate", str(copy)]}[command]
    if command != "validate":
        args += ["--calibration", str(copy), "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert str(copy) in err or "calibration.json" in err
    assert not (out / "results.jsonl").exists() and not (out / MANIFEST_NAME).exists()


def test_a_clean_copy_or_move_of_a_calibration_is_accepted(case, tmp_path):
    copy = tmp_path / "moved" / "cal"
    shutil.copytree(case["cal"], copy)
    assert load_calibration(str(copy)).sha256 == load_calibration(str(case["cal"])).sha256


# ------------------------------------------------------------------------------------------------
# 23.12, 24.4, 24.6: the console and the report
# ------------------------------------------------------------------------------------------------
def test_mahalanobis_with_a_calibration_refused_up_front(case, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["identify", str(case["fp"]), str(case["other"] / "disputed"), "-o", str(out), "--method",
                 "mahalanobis", "--clip", "64", "--calibration", str(case["cal"]), "--quiet"]) == 1
    assert "--method mahalanobis has no calibrated score" in capsys.readouterr().err
    assert not (out / "evidence.json").exists() and not (out / "results.jsonl").exists()
    assert main(["identify", str(case["fp"]), str(case["other"] / "disputed"), "-o", str(out),
                 "--lr-outside-calibration", "--quiet"]) == 1
    assert "--lr-outside-calibration needs --calibration" in capsys.readouterr().err


def test_outside_conditions_print_no_verbal_scale_and_every_camera_is_listed(case, tmp_path, capsys):
    seized = tmp_path / "seized"
    seized.mkdir()
    source = sorted((case["other"] / "disputed" / "C01").glob("flat_*.jpg"))[0]
    Image.open(source).save(seized / "requality.jpg", quality=60)  # a JPEG quality the calibration never saw
    shutil.copy(source, seized / "inside.jpg")
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["identify", str(case["fp"]), str(seized), "-o", str(out), "--quiet",
                 "--calibration", str(case["cal"])]) == 0
    console = capsys.readouterr().out
    lines = console[console.index("likelihood ratios"):].splitlines()
    requality = lines[next(i for i, t in enumerate(lines) if "requality.jpg" in t) + 1:][:2]
    inside = lines[next(i for i, t in enumerate(lines) if "inside.jpg" in t) + 1:][:2]
    assert requality[0].strip().startswith("best C01: no calibrated LR (JPEG quality 60 outside the calibrated")
    assert all("support" not in t and "log10 LR" not in t for t in requality)
    assert requality[1].strip().startswith("runner-up ")
    assert inside[0].strip().startswith("best C01: log10 LR +") and "support for Hp" in inside[0]
    assert "[full frame, 128x160 compared, 1 position, 1 rotation]" in inside[0]
    evidence = json.loads((out / "evidence.json").read_text())
    for img in evidence["images"]:
        assert img["ranking"][0] == "C01" and len(img["ranking"]) == 3
    report = tmp_path / "report.html"
    assert main(["report", str(out), "-o", str(report), "--quiet"]) == 0
    html = report.read_text()
    section = html[html.index('id="evidence"'):]
    assert section.count("1. C01") == 2 and section.count("2. C0") == 2 and section.count("3. C0") == 2
    assert "no calibrated LR</span>: JPEG quality 60 outside" in section
    # --lr-outside-calibration: the number, marked, never words
    shown = tmp_path / "shown"
    assert main(["identify", str(case["fp"]), str(seized), "-o", str(shown), "--quiet", "--calibration",
                 str(case["cal"]), "--lr-outside-calibration"]) == 0
    text = capsys.readouterr().out
    line = next(t for t in text.splitlines() if t.strip().startswith("best C01: no calibrated LR (JPEG quality 60"))
    assert "NOT a calibrated LR; no verbal equivalent" in line and "support" not in line


def test_validation_on_other_runs_leaves_out_pairs_outside_the_conditions(case, tmp_path):
    inside, clipped = tmp_path / "inside", tmp_path / "clipped"
    for run, clip in ((inside, None), (clipped, (64, 64))):
        evaluate_dataset(str(case["other"]), str(run), methods_of("pce"), Params(refs=None, pce_clip=clip),
                         RunConfig(backend="numpy"))
    cal = load_calibration(str(case["cal"]))
    out = fit.validate_on(cal, [str(inside)])
    assert out["flat aligned"]["outside_left_out"] == 0 and out["flat aligned"]["validation"]["pairs"] == 18
    with pytest.raises(fit.CalibrationDataError, match="no pair within"):
        fit.validate_on(cal, [str(clipped)])  # every pair a 64x64 clip: the calibration gives none an LR


def test_each_pair_has_its_own_reasons(case, tmp_path):
    """A full-frame true pair beside a crop-searched one is not "crop" (the issue's report showed it so)."""
    record = _record(400.0, path=_jpeg(tmp_path))
    record["pce"]["scores"]["C02"] = _record(26.0, positions=10 ** 6, match="crop")["pce"]["scores"]["C01"]
    record["pce"]["decision"] = "C01"
    img = apply_calibration([record], load_calibration(str(case["cal"])))[0]
    full, crop = img["cameras"]["C01"], img["cameras"]["C02"]
    assert full["within_calibration"] and full["outside"] == [] and full["log10_lr"] > 0
    assert not crop["within_calibration"] and any("crop search" in r for r in crop["outside"])
    assert img["within_calibration"] and img["ranking"] == ["C01", "C02"]

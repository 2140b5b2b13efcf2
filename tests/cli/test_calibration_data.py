"""camid calibrate --references REFS (the lab's own cameras, leave one image out) and --like SEIZED (simulated
cameras matched to a case, every LR saying so)."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("lir")

from camid_gpu.cli.calibration_data import _folder_models
from camid_gpu.cli.commands import main
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.evidence.apply import SIMULATED, load_calibration


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    make_dataset(root / "data", cameras=6, per_model=2, refs=4, disputed_flat=2, disputed_natural=2, height=96,
                 width=128, jpeg_quality=90, seed=21)
    return root


def test_references_leave_one_image_out(lab, tmp_path, capsys):
    cal = tmp_path / "cal"
    assert main(["calibrate", "--references", str(lab / "data" / "refs"), "-o", str(cal)]) == 0
    out = capsys.readouterr().out
    assert "4 leave-one-image-out folds" in out and "camid-synth ground truth" in out
    c = load_calibration(str(cal))
    model = c.models["flat aligned"]
    v = model["validation"]
    assert model["sizes"]["same-source"] == 24 and model["sizes"]["cameras"] == 6  # one name per camera, every fold
    assert v["same_source"] == 24 and v["rate_misleading_same_source"] == 0.0
    assert v["rate_misleading_different_source"] == 0.0
    assert not c.simulated and c.data["data"]["folds"] == 4
    manifest = json.loads((cal / "manifest.json").read_text())
    assert sum(e["role"] == "calibration-input" for e in manifest["inputs"]) == 24  # every reference hashed
    assert main(["verify", str(cal)]) == 0


def test_references_short_names_the_minimum(lab, tmp_path, capsys):
    refs = tmp_path / "refs"
    for cam in ("C01", "C02", "C03"):
        shutil.copytree(lab / "data" / "refs" / cam, refs / cam)
    assert main(["calibrate", "--references", str(refs), "-o", str(tmp_path / "cal")]) == 1
    assert "3 camera folders with images, at least 4 needed" in capsys.readouterr().err


def test_folder_names_give_the_models():
    assert _folder_models(["Nikon_D70_0", "Nikon_D70_1", "Canon_Ixus_0"]) == {
        "Nikon_D70_0": "Nikon_D70", "Nikon_D70_1": "Nikon_D70", "Canon_Ixus_0": "Canon_Ixus"}
    assert _folder_models(["alpha", "beta"]) is None


def test_like_is_simulated_and_every_lr_says_so(lab, tmp_path, capsys, monkeypatch):
    from camid_gpu import config

    monkeypatch.setattr(config, "CALIBRATION_LIKE_REFS", 4)  # small simulated cameras: a quick test
    monkeypatch.setattr(config, "CALIBRATION_LIKE_DISPUTED", 4)
    seized = tmp_path / "seized"
    seized.mkdir()
    for i, f in enumerate(sorted((lab / "data" / "disputed" / "C01").glob("*.jpg"))):
        shutil.copy(f, seized / f"{i}_{f.name}")
    from PIL import Image

    with Image.open(sorted(seized.glob("*flat*.jpg"))[0]) as image:
        image.save(seized / "z_flat.png")  # a seized PNG: simulated as PNG
    cal = tmp_path / "cal"
    assert main(["calibrate", "--like", str(seized), "-o", str(cal), "--like-max-side", "128", "--kind", "flat"]) == 0
    assert "CALIBRATED ON SIMULATED DATA" in capsys.readouterr().out
    c = load_calibration(str(cal))
    assert c.simulated and any("scaled down" in a for a in c.data["data"]["assumptions"])
    assert c.data["data"]["matched_sizes"] == [[96, 128]]
    assert c.models["flat aligned"]["conditions"]["formats"] == ["JPEG", "PNG"]
    run = tmp_path / "run"
    fp = tmp_path / "fp"
    assert main(["fingerprint", str(lab / "data" / "refs"), "-o", str(fp), "--refs", "all", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["identify", str(fp), str(seized), "-o", str(run), "--quiet", "--calibration", str(cal)]) == 0
    console = capsys.readouterr().out
    assert "CALIBRATED ON SIMULATED DATA" in console
    lines = [t for t in console.splitlines() if t.strip().startswith(("best ", "runner-up "))]
    assert lines and all(f"[{SIMULATED}]" in t for t in lines)
    evidence = json.loads((run / "evidence.json").read_text())
    assert evidence["calibration"]["calibrated_on"] == SIMULATED
    assert all(lr["calibrated_on"] == SIMULATED for img in evidence["images"] for lr in img["cameras"].values())
    report = tmp_path / "report.html"
    assert main(["report", str(run), "-o", str(report), "--quiet"]) == 0
    assert SIMULATED.upper() in report.read_text()


def test_references_with_crops_calibrate_the_crop_search(lab, tmp_path):
    cal = tmp_path / "cal"
    assert main(["calibrate", "--references", str(lab / "data" / "refs"), "-o", str(cal), "--crops", "0.75"]) == 0
    c = load_calibration(str(cal))
    crop = c.models["flat crop"]
    assert crop["conditions"]["geometries"] == ["crop"] and crop["conditions"]["positions"][0] > 1
    assert crop["sizes"]["same-source"] == 24
    v = crop["validation"]
    # crop-searched wrong cameras (maxima over every offset) never read as support for Hp
    assert v["rate_misleading_different_source"] == 0.0 and v["strongest_misleading"]["different_source"] < 0
    assert any("centre crops of 0.75" in a for a in c.data["data"]["assumptions"])


def test_crops_need_a_source_that_makes_images(lab, tmp_path, capsys):
    assert main(["calibrate", str(lab / "data"), "-o", str(tmp_path / "cal"), "--crops", "0.5"]) == 1
    assert "--crops needs --references, --library or --like" in capsys.readouterr().err
    assert main(["calibrate", "--references", str(lab / "data" / "refs"), "-o", str(tmp_path / "c2"),
                 "--crops", "1.5"]) == 1
    assert "--crops must be a fraction" in capsys.readouterr().err


def test_library_references_still_at_hand(lab, tmp_path, capsys):
    refs = tmp_path / "refs"
    shutil.copytree(lab / "data" / "refs", refs)
    fp, lib = tmp_path / "fp", tmp_path / "lib"
    assert main(["fingerprint", str(refs), "-o", str(fp), "--refs", "all", "--quiet"]) == 0
    assert main(["library", "init", str(lib)]) == 0
    assert main(["library", "add", str(lib), str(fp)]) == 0
    (refs / "C02" / sorted(p.name for p in (refs / "C02").iterdir())[0]).unlink()  # one reference gone
    capsys.readouterr()
    cal = tmp_path / "cal"
    assert main(["calibrate", "--library", str(lib), "-o", str(cal), "--kind", "flat"]) == 0
    assert "C02: 1 of 4 references no longer at hand" in capsys.readouterr().err
    c = load_calibration(str(cal))
    assert c.models["flat aligned"]["sizes"]["same-source"] == 23  # 6 cameras x 4 references, one gone
    assert "of the library" in c.data["data"]["from"]

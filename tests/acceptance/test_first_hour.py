"""Acceptance: an examiner's first hour, scripted, with the defaults only.

Synthetic photos of two cameras (each its own model), 10 flat references per camera (fewer than the
recommended 15: a warning, not a refusal), disputed flats and naturals, plus a natural resized to 3/4 and one
turned by 180 degrees with its EXIF orientation saying so. Then: fingerprint, identify, report, cluster, each
with no option but its folders. The fresh-venv README install is the ``slow`` test at the end.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from camid_gpu.cli import main
from camid_gpu.datasets.synthetic import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-hour")
    truth = make_dataset(root / "data", cameras=2, per_model=1, refs=10, disputed_flat=1, disputed_natural=2,
                         height=384, width=512, seed=18)
    seized = root / "data" / "disputed"
    source = seized / "C02" / "natural_000.jpg"
    with Image.open(source) as im:
        im.resize((384, 288), Image.LANCZOS).save(seized / "C02" / "natural_000_resized.jpg", quality=92)
        turned = im.rotate(180)
        exif = Image.Exif()
        exif[0x0112] = 3  # "shown turned by 180 degrees", as software that turned the pixels may leave it
        turned.save(seized / "C02" / "natural_000_turned.jpg", quality=92, exif=exif)
    return root, truth


def test_first_hour_with_the_defaults(case, capsys):
    root, truth = case
    fp, run, clusters = root / "fp", root / "run", root / "clusters"
    assert main(["fingerprint", str(root / "data" / "refs"), "-o", str(fp)]) == 0
    out, err = capsys.readouterr()
    assert out.count("10 references") == 2  # every usable reference, none refused
    assert "fewer than the 15 recommended references" in err and "'C01' (10)" in err
    assert {json.loads((fp / f"C0{i}.json").read_text())["methods"][0] for i in (1, 2)} == {"pce"}

    assert main(["identify", str(fp), str(root / "data" / "disputed"), "-o", str(run)]) == 0
    out, err = capsys.readouterr()
    records = {os.path.basename(r["path"]) + "@" + r["path"].split(os.sep)[-2]: r
               for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}
    assert len(records) == 8 and all("mahalanobis" not in r for r in records.values())  # PCE only
    for key, r in records.items():
        name, camera = key.split("@")
        if "_resized" in name or "_turned" in name:
            assert r["pce"]["decision"] is None, key
        else:  # the true camera scores best; under the threshold it is named a near miss, not just "none"
            assert r["pce"]["best"] == camera, key
            assert r["pce"]["decision"] == camera or f"{name}: none (best {camera} PCE" in out
    assert "near miss: C01 under the threshold" in out  # natural_001 of C01: PCE 41 with 10 references
    assert "[1/8]" in out and "[8/8]" in out  # each image's answer as it was done
    assert "best camera" in out and "runner-up" in out and "log10 P_FA" in out
    assert "natural_000_resized.jpg: it is 288x384" in err and "--search-scales" in err
    assert "natural_000_turned.jpg: its EXIF orientation is 3" in err and "--rotations all" in err

    # the hints lead to the answer
    turned, resized = (str(root / "data" / "disputed" / "C02" / f"natural_000_{k}.jpg") for k in ("turned", "resized"))
    assert main(["identify", str(fp), turned, "-o", str(root / "run-turned"), "--rotations", "all"]) == 0
    assert main(["identify", str(fp), resized, "-o", str(root / "run-resized"), "--search-scales", "0.7:0.8:0.05"]) == 0
    found = [json.loads((root / name / "results.jsonl").read_text())["pce"] for name in ("run-turned", "run-resized")]
    assert found[0]["decision"] == "C02"
    assert found[1]["best"] == "C02"  # at 288x384 and 10 references: PCE 47, a near miss (PCE 16 unsearched)
    capsys.readouterr()

    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "What P_FA does not cover" in html and "full frame" in html and " kB (" in html

    assert main(["cluster", str(root / "data" / "disputed" / "C01"), str(root / "data" / "disputed" / "C02"),
                 "-o", str(clusters)]) == 0
    result = json.loads((clusters / "clusters.json").read_text())
    for c in result["clusters"]:  # whatever links at this size, links only one camera's images
        assert len({m["path"].split(os.sep)[-2] for m in c["members"]}) == 1
    assert main(["report", str(clusters)]) == 0
    capsys.readouterr()


@pytest.mark.slow
def test_readme_install_in_a_fresh_venv(tmp_path):
    """The README's install line in a fresh venv (needs the package index): the commands of the walkthrough,
    the progress bar (rich) and the report (matplotlib) all import."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", ROOT], check=True, timeout=1800)
    probe = "import rich, matplotlib, camid_gpu.report, camid_gpu._shared.progress; print('ok')"
    assert subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "ok"
    for command in ("fingerprint", "identify", "report", "cluster"):
        subprocess.run([str(venv / "bin" / "camid"), command, "--help"], check=True, capture_output=True)
    assert np is not None

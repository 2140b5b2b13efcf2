"""Images with no usable content: references that build no fingerprint, constant or too small disputed
images get a per-file error, and a non-finite score never decides."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from camid_gpu.cli import EXIT_FAIL, EXIT_PARTIAL, main
from camid_gpu.config import Params
from camid_gpu.engine.scheduler import read_results
from camid_gpu.errors import ImageContentError, ScoreError
from camid_gpu.pipeline.prepare import content_problem, prepare_disputed
from camid_gpu.pipeline.records import pce_record

from conftest import FP_ARGS, RUN_ARGS


def test_unusable_references_are_rejected_with_reasons():
    rng = np.random.default_rng(0)
    noise = rng.normal(128, 10, (64, 64)).clip(0, 255).astype(np.uint8)
    assert content_problem(noise, 8, reference=True) is None
    assert "constant" in content_problem(np.full((64, 64), 255, np.uint8), 8, reference=True)
    assert "constant" in content_problem(np.zeros((64, 64, 3), np.uint8), 8, reference=True)
    blown = noise.copy()
    blown[:40] = 255
    assert "saturated" in content_problem(blown, 8, reference=True)
    dark = rng.normal(2, 1.5, (64, 64)).clip(0, 255).astype(np.uint8)
    assert "too dark" in content_problem(dark, 8, reference=True)
    assert content_problem(dark, 8, reference=False) is None  # a dark disputed image is still analysed
    assert "saturated" in content_problem((blown.astype(np.uint16) * 257), 16, reference=True)


def test_black_and_white_references_build_no_fingerprint(tmp_path, capsys):
    refs = tmp_path / "refs" / "capon"
    refs.mkdir(parents=True)
    for k in range(3):
        Image.new("RGB", (192, 160), (0, 0, 0) if k < 2 else (255, 255, 255)).save(refs / f"r{k}.png")
    assert main(["fingerprint", str(tmp_path / "refs"), "-o", str(tmp_path / "fp"), *FP_ARGS]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert err.count("constant image") == 3 and "usable reference" in err
    assert not (tmp_path / "fp" / "capon.npz").exists()


def test_nan_score_never_decides():
    from camid_gpu.pipeline.records import camera_score

    def found(value):
        return {"pce": value, "ncc": 0.1, "log10_p_fa": -5.0, "peak_shift": [0, 0], "match": "full-frame"}

    scores = {"A": camera_score(found(np.nan), 0, 1), "B": camera_score(found(75.0), 0, 1),
              "C": camera_score(found(np.inf), 0, 1)}
    rec = pce_record(scores, {}, 60.0, "x.jpg")
    assert rec["best"] == "B" and rec["decision"] == "B" and rec["above_threshold"] == ["B"]
    assert "non-finite" in rec["scores"]["A"]["error"] and rec["scores"]["A"]["pce"] is None
    assert "error" not in rec["scores"]["B"]
    with pytest.raises(ScoreError, match="every PCE came out non-finite"):
        pce_record({"A": scores["A"]}, {}, 60.0, "x.jpg")


def test_constant_disputed_image_gets_a_per_file_error(world, tmp_path):
    flat = tmp_path / "grey.png"
    Image.new("RGB", (192, 160), (128, 128, 128)).save(flat)
    with pytest.raises(ImageContentError, match="constant image"):
        prepare_disputed(str(flat), Params(clip=(128, 128)), (160, 192))
    run = tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(flat), "-o", str(run), *RUN_ARGS]) == EXIT_PARTIAL
    (record,) = read_results(run / "results.jsonl")
    assert record["error"]["kind"] == "no-usable-content" and "pce" not in record


def test_residual_refuses_an_image_too_small_for_a_residual(tmp_path, capsys):
    """camid residual on a 1x160 or 128x1 PNG wrote an all-zero residual TIFF (std 0) as a clean result, after
    numpy's 'Mean of empty slice' warnings that named no file (identify and cluster refused such images)."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, shape in (("row.png", (1, 160)), ("col.png", (128, 1)), ("ok.png", (64, 80))):
        Image.fromarray((rng.random(shape) * 200 + 20).astype(np.uint8)).save(folder / name)
    assert main(["residual", str(folder), "-o", str(tmp_path / "res"), *RUN_ARGS]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "row.png: image is 1x160" in err and "col.png: image is 128x1" in err
    lines = (tmp_path / "res" / "residuals.jsonl").read_text().splitlines()
    assert [os.path.basename(json.loads(line)["path"]) for line in lines] == ["ok.png"]

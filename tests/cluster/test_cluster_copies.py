"""One photo in several containers is one image (issue 23 item 4): files with the same decoded pixels (a JPEG and
its PNG, BMP and TIFF) are folded like byte-identical files, compared once, and said (clusters.json, console).
Before, the four files made a four-image "camera" cluster at NCC 1.0."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from camid_gpu.cli import EXIT_OK, main


def test_one_photo_in_four_containers_is_one_image(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    flat = np.clip(128 + rng.normal(0, 3, (96, 128)), 0, 255).astype(np.uint8)  # a flat: no scene to guard
    Image.fromarray(flat).save(folder / "a.jpg", quality=95)
    photo = Image.open(folder / "a.jpg")
    photo.load()
    for ext in ("png", "bmp", "tiff"):
        photo.save(folder / f"a.{ext}")
    for k in range(2):
        other = np.clip(128 + rng.normal(0, 3, (96, 128)), 0, 255).astype(np.uint8)
        Image.fromarray(other).save(folder / f"other{k}.jpg", quality=95)
    run = tmp_path / "run"
    assert main(["cluster", str(folder), "-o", str(run), "--region", "64", "--quiet", "--backend", "numpy"]) == EXIT_OK
    out = capsys.readouterr().out
    result = json.loads((run / "clusters.json").read_text())
    assert result["clusters"] == []  # no "camera" made of one photo
    assert result["groups"][0]["images"] == 3  # the photo once, and the two others
    (same,) = result["same_pixels_files"]
    assert sorted(p.rsplit("/", 1)[1] for p in same) == ["a.bmp", "a.jpg", "a.png", "a.tiff"]
    assert result["identical_files"] == []
    folded = [u for u in result["unclustered"] if "identical_to" in u]
    assert len(folded) == 3 and {u["identical_to"] for u in folded} == {same[0]}
    assert "files with the same decoded pixels" in out
    assert main(["verify", str(run)]) == EXIT_OK


def test_a_copy_with_a_few_samples_changed_is_not_a_camera(tmp_path, capsys):
    """Pixels that differ by a few samples escape the pixel hash; their residuals correlate at NCC near 1: the pair
    is one photo, never linked (it made a two-image "camera"), and listed."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    flat = np.clip(128 + rng.normal(0, 1.5, (96, 128)), 0, 255).astype(np.uint8)  # no scene for the guard to see
    Image.fromarray(flat).save(folder / "a.png")
    touched = flat.copy()
    touched.flat[rng.choice(touched.size, touched.size // 100, replace=False)] += 1
    Image.fromarray(touched).save(folder / "a-touched.png")
    for k in range(2):
        other = np.clip(128 + rng.normal(0, 3, (96, 128)), 0, 255).astype(np.uint8)
        Image.fromarray(other).save(folder / f"other{k}.png")
    run = tmp_path / "run"
    assert main(["cluster", str(folder), "-o", str(run), "--region", "64", "--quiet", "--backend", "numpy"]) == EXIT_OK
    result = json.loads((run / "clusters.json").read_text())
    assert result["clusters"] == [] and result["same_pixels_files"] == []
    assert result["groups"][0]["same_scene"]["pairs"] == []  # not a same-scene pair: the guard did not stop it
    (pair,) = result["groups"][0]["same_scene"]["near_duplicates"]
    assert {pair["a"].rsplit("/", 1)[1], pair["b"].rsplit("/", 1)[1]} == {"a.png", "a-touched.png"}
    assert pair["residual_ncc"] >= 0.9
    assert "one photo twice" in capsys.readouterr().out

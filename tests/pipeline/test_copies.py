"""References that are one photo (issue 23 items 4 and 5): a camera's references with the same decoded pixels are
used once and said; another camera's photo among a camera's references (the same pixels, or re-encoded so that
no hash sees it, its residual correlating with that camera's references far above its own folder's) refuses the
camera, naming both files; a stored fingerprint built from one photo twice is refused when loaded."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, main
from camid_gpu.errors import FingerprintError
from camid_gpu.store import load_fingerprint

ARGS = ["--clip", "128", "--method", "pce", "--quiet", "--backend", "numpy"]


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    from camid_gpu.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("copies")
    make_dataset(root / "data", cameras=3, per_model=1, refs=5, disputed_flat=0, disputed_natural=0, height=160,
                 width=192, seed=3)
    return root / "data" / "refs"


def _copy(refs, tmp_path):
    shutil.copytree(refs, tmp_path / "refs")
    return tmp_path / "refs"


def _photo(path):
    image = Image.open(path)
    image.load()
    return image


def test_pixels_sha256_sees_the_photo_not_the_file(refs, tmp_path):
    from camid_gpu.pipeline.copies import pixels_sha256

    jpeg = sorted((refs / "C01").iterdir())[0]
    _photo(jpeg).save(tmp_path / "a.png")
    png = np.asarray(Image.open(tmp_path / "a.png"))
    assert pixels_sha256(np.asarray(Image.open(jpeg))) == pixels_sha256(png)
    assert pixels_sha256(png) != pixels_sha256(png.astype(np.uint16))  # the sample type is part of the pixels


def test_a_cameras_copies_in_other_containers_are_used_once(refs, tmp_path, capsys):
    folder = _copy(refs, tmp_path)
    first = sorted((folder / "C01").iterdir())[0]
    for ext in ("png", "bmp", "tiff"):
        _photo(first).save(folder / "C01" / f"copy.{ext}")
    assert main(["fingerprint", str(folder), "-o", str(tmp_path / "fp"), *ARGS]) == EXIT_PARTIAL
    assert capsys.readouterr().err.count("(one photo in two files): used once") == 3
    meta = json.loads((tmp_path / "fp" / "C01.json").read_text())
    assert len(meta["references"]) == 5 and all(r["pixels_sha256"] for r in meta["references"])


def test_two_cameras_with_one_photo_are_both_refused(refs, tmp_path, capsys):
    folder = _copy(refs, tmp_path)
    intruder = sorted((folder / "C03").iterdir())[0]
    _photo(intruder).save(folder / "C02" / "from-c03.png")  # other bytes, the same pixels
    assert main(["fingerprint", str(folder), "-o", str(tmp_path / "fp"), *ARGS]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "cameras 'C02' and 'C03' have references with the same decoded pixels" in err
    assert str(intruder) in err and "from-c03.png" in err
    assert sorted(p.name for p in (tmp_path / "fp").glob("*.json") if p.name != "manifest.json") == ["C01.json"]


@pytest.mark.parametrize("camera", ["C01", "C02"])
def test_another_cameras_photo_re_encoded_is_refused_naming_both(refs, tmp_path, capsys, camera):
    """Before, only bytes were compared: with C03 absent from the store, its images were named as the camera
    whose folder held its re-encoded reference."""
    folder = _copy(refs, tmp_path)
    intruder = sorted((folder / "C03").iterdir())[0]
    _photo(intruder).save(folder / camera / "re-encoded.jpg", quality=85)  # other pixels: no hash sees it
    assert main(["fingerprint", str(folder), "-o", str(tmp_path / "fp"), *ARGS]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert f"re-encoded.jpg of camera '{camera}' looks like camera 'C03''s {intruder}" in err
    assert not (tmp_path / "fp" / f"{camera}.json").exists() and (tmp_path / "fp" / "C03.json").exists()
    assert main(["verify", str(tmp_path / "fp")]) == EXIT_OK  # the refused camera's files are gone, not foreign


def test_distinct_references_of_twin_cameras_pass(tmp_path):
    from camid_gpu.datasets.synthetic import make_dataset

    make_dataset(tmp_path / "data", cameras=4, per_model=2, refs=5, disputed_flat=0, disputed_natural=0, height=160,
                 width=192, seed=8)
    assert main(["fingerprint", str(tmp_path / "data" / "refs"), "-o", str(tmp_path / "fp"), *ARGS]) == EXIT_OK


def test_a_stored_fingerprint_of_one_photo_twice_is_refused(refs, tmp_path):
    assert main(["fingerprint", str(refs), "-o", str(tmp_path / "fp"), *ARGS]) == EXIT_OK
    path = tmp_path / "fp" / "C01.json"
    meta = json.loads(path.read_text())
    load_fingerprint(path)
    meta["references"][1]["pixels_sha256"] = meta["references"][0]["pixels_sha256"]
    path.write_text(json.dumps(meta))
    with pytest.raises(FingerprintError, match="same decoded pixels"):
        load_fingerprint(path)
    meta["references"][1]["sha256"] = meta["references"][0]["sha256"]
    path.write_text(json.dumps(meta))
    with pytest.raises(FingerprintError, match="same bytes"):
        load_fingerprint(path)


def test_a_camera_added_with_a_stored_cameras_photo_is_refused(refs, tmp_path, capsys):
    """fingerprint --add compares the new cameras' references with the pixels the store's cameras recorded."""
    first = tmp_path / "first"
    (first / "C01").mkdir(parents=True)
    for path in sorted((refs / "C01").iterdir()):
        shutil.copy(path, first / "C01" / path.name)
    assert main(["fingerprint", str(first), "-o", str(tmp_path / "fp"), *ARGS]) == EXIT_OK
    later = tmp_path / "later"
    shutil.copytree(refs / "C02", later / "C02")
    _photo(sorted((refs / "C01").iterdir())[0]).save(later / "C02" / "from-c01.png")
    assert main(["fingerprint", str(later), "-o", str(tmp_path / "fp"), "--add", *ARGS]) == EXIT_FAIL  # none built
    err = capsys.readouterr().err
    assert "cameras 'C01' and 'C02' have references with the same decoded pixels" in err
    assert "camera 'C02' is refused ('C01' is in the store already)" in err
    assert (tmp_path / "fp" / "C01.json").exists() and not (tmp_path / "fp" / "C02.json").exists()

"""Tests of the synthetic sensor model and dataset writer (camid_gpu.datasets.synthetic)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from camid_gpu.datasets.synthetic import (
    SensorModel,
    flat_scene,
    load_ground_truth,
    make_dataset,
    model_artefacts,
    natural_scene,
)

SMALL = {"height": 64, "width": 80}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "ds"
    truth = make_dataset(
        out, cameras=4, per_model=2, refs=2, disputed_flat=1, disputed_natural=2, portrait=1, seed=7,
        **SMALL,
    )
    return out, truth


def test_layout_and_ground_truth(small_dataset: tuple[Path, dict]) -> None:
    out, truth = small_dataset
    assert truth == load_ground_truth(out)
    assert truth == json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    assert truth["format"] == "camid-synth" and truth["version"] == 1 and truth["seed"] == 7
    params = truth["parameters"]
    assert params["refs"] == 2 and params["fmt"] == "jpeg" and params["portrait"] == 1
    assert params["sensor"]["prnu_std"] == SensorModel().prnu_std

    cams = {c["name"]: c for c in truth["cameras"]}
    assert list(cams) == ["C01", "C02", "C03", "C04"]
    assert [c["model"] for c in truth["cameras"]] == ["ModelA", "ModelA", "ModelB", "ModelB"]
    assert cams["C01"]["twins"] == ["C02"] and cams["C04"]["twins"] == ["C03"]
    assert [m["cameras"] for m in truth["models"]] == [["C01", "C02"], ["C03", "C04"]]

    images = truth["images"]
    assert len(images) == 4 * (2 + 1 + 2)
    listed = {img["path"] for img in images}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}
    assert listed == on_disk
    for name in cams:
        mine = [img for img in images if img["camera"] == name]
        assert [img["kind"] for img in mine] == ["ref", "ref", "flat", "natural", "natural"]
        assert [img["path"] for img in mine] == [
            f"refs/{name}/ref_000.jpg",
            f"refs/{name}/ref_001.jpg",
            f"disputed/{name}/flat_000.jpg",
            f"disputed/{name}/natural_000.jpg",
            f"disputed/{name}/natural_001.jpg",
        ]
        assert [img["rotation"] for img in mine] == [0, 0, 0, 90, 0]
        k = np.load(out / cams[name]["K"])
        assert cams[name]["K"] == f"truth/{name}_K.npy"
        assert k.dtype == np.float32 and k.shape == (64, 80)
    for img in images:
        assert not Path(img["path"]).is_absolute() and "\\" not in img["path"]
        with Image.open(out / img["path"]) as pil:
            stored = (pil.height, pil.width)
        expected = (80, 64) if img["rotation"] == 90 else (64, 80)
        assert stored == tuple(img["size"]) == expected


def test_determinism(tmp_path: Path) -> None:
    args = dict(cameras=2, refs=2, disputed_flat=1, disputed_natural=1, portrait=1, **SMALL)
    make_dataset(tmp_path / "a", seed=3, **args)
    make_dataset(tmp_path / "b", seed=3, workers=1, **args)
    make_dataset(tmp_path / "c", seed=4, **args)
    a, b, c = (_files(tmp_path / d) for d in "abc")
    assert a == b
    assert a.keys() == c.keys()
    differing = [k for k in a if k != "ground_truth.json" and a[k] == c[k]]
    assert differing == []


def test_images_do_not_depend_on_dataset_size(tmp_path: Path) -> None:
    make_dataset(tmp_path / "a", cameras=1, refs=1, disputed_flat=0, disputed_natural=0, **SMALL)
    make_dataset(tmp_path / "b", cameras=3, refs=2, disputed_flat=1, disputed_natural=0, **SMALL)
    for rel in ("refs/C01/ref_000.jpg", "truth/C01_K.npy"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_twins_share_model_artefacts_but_not_prnu(tmp_path: Path) -> None:
    truth = make_dataset(
        tmp_path / "ds", cameras=4, per_model=2, refs=1, disputed_flat=0, disputed_natural=0,
        height=128, width=160,
    )
    ks = {c["name"]: np.load(tmp_path / "ds" / c["K"]) for c in truth["cameras"]}
    limit = 5.0 / np.sqrt(128 * 160)  # ~5 sigma of the correlation of independent fields
    assert abs(_corr(ks["C01"], ks["C02"])) < limit
    assert abs(_corr(ks["C03"], ks["C04"])) < limit
    assert abs(_corr(ks["C01"], ks["C03"])) < limit
    for k in ks.values():
        assert k.std() == pytest.approx(0.008, rel=1e-3)

    a0 = model_artefacts(0, 128, 160, seed=0)
    a0_again = model_artefacts(0, 128, 160, seed=0)
    a1 = model_artefacts(1, 128, 160, seed=0)
    np.testing.assert_array_equal(a0.vignetting, a0_again.vignetting)
    np.testing.assert_array_equal(a0.fixed_pattern, a0_again.fixed_pattern)
    assert not np.array_equal(a0.fixed_pattern, a1.fixed_pattern)
    assert a0.vignetting.max() <= 1.0 and a0.vignetting.min() < 0.9
    # The written models agree with the artefacts the cameras were built from.
    assert truth["models"][0]["vignetting_strength"] == a0.vignetting_strength
    assert truth["models"][1]["fpn_period"] == a1.fpn_period


@pytest.mark.parametrize(
    ("fmt", "dtype", "suffix"),
    [("jpeg", np.uint8, ".jpg"), ("png", np.uint8, ".png"), ("tiff", np.uint16, ".tif")],
)
def test_formats_read_back(tmp_path: Path, fmt: str, dtype: type, suffix: str) -> None:
    truth = make_dataset(
        tmp_path / "ds", cameras=1, refs=1, disputed_flat=0, disputed_natural=1, portrait=1,
        fmt=fmt, **SMALL,
    )
    for img in truth["images"]:
        path = tmp_path / "ds" / img["path"]
        assert path.suffix == suffix
        if fmt == "tiff":
            data = tifffile.imread(path)
        else:
            with Image.open(path) as pil:
                assert pil.mode == "RGB"
                data = np.asarray(pil)
        assert data.dtype == dtype
        assert data.shape == (*img["size"], 3)
        assert data.max() > data.min()


def test_exif_make_model(small_dataset: tuple[Path, dict]) -> None:
    out, truth = small_dataset
    models = {c["name"]: c["model"] for c in truth["cameras"]}
    for img in truth["images"]:
        with Image.open(out / img["path"]) as pil:
            exif = pil.getexif()
        assert exif[0x010F] == "camid-synth"
        assert exif[0x0110] == models[img["camera"]]
        assert exif[0x0112] == 1


def _flat_fingerprint(paths: list[Path]) -> np.ndarray:
    """Mean of (image / heavily smoothed image - 1) over grey flat images: a crude PRNU estimate."""
    acc = None
    for path in paths:
        with Image.open(path) as pil:
            grey = np.asarray(pil, dtype=np.float64).mean(axis=2)
        ratio = grey / ndimage.gaussian_filter(grey, 4.0, mode="reflect") - 1.0
        acc = ratio if acc is None else acc + ratio
    assert acc is not None
    return acc / len(paths)


def test_prnu_is_in_the_images(tmp_path: Path) -> None:
    quiet = SensorModel(full_well=1e6, read_noise_dn=0.5)
    truth = make_dataset(
        tmp_path / "ds", cameras=2, per_model=2, refs=8, disputed_flat=0, disputed_natural=0,
        height=128, width=160, fmt="png", sensor=quiet,
    )
    out = tmp_path / "ds"
    refs = [out / i["path"] for i in truth["images"] if i["camera"] == "C01"]
    estimate = _flat_fingerprint(refs)
    own = _corr(estimate, np.load(out / "truth/C01_K.npy"))
    twin = _corr(estimate, np.load(out / "truth/C02_K.npy"))
    assert own > 0.3
    assert abs(twin) < 0.05


def test_prnu_survives_default_jpeg(tmp_path: Path) -> None:
    truth = make_dataset(
        tmp_path / "ds", cameras=2, per_model=1, refs=6, disputed_flat=0, disputed_natural=0,
        height=128, width=160,
    )
    out = tmp_path / "ds"
    refs = [out / i["path"] for i in truth["images"] if i["camera"] == "C02"]
    estimate = _flat_fingerprint(refs)
    assert _corr(estimate, np.load(out / "truth/C02_K.npy")) > 0.1
    assert abs(_corr(estimate, np.load(out / "truth/C01_K.npy"))) < 0.05


def test_scenes_look_like_scenes() -> None:
    rng = np.random.default_rng(0)
    flat = flat_scene(rng, 128, 160)
    assert flat.shape == (128, 160, 3) and flat.dtype == np.float32
    assert 0.4 < flat.mean() < 0.8 and flat.std() / flat.mean() < 0.1

    nat = natural_scene(np.random.default_rng(1), 256, 320)
    assert nat.shape == (256, 320, 3) and nat.dtype == np.float32 and nat.min() >= 0
    green = nat[:, :, 1]
    # Content, not noise: neighbouring pixels are strongly correlated ...
    assert _corr(green[:, 1:], green[:, :-1]) > 0.8
    # ... with a wide dynamic range: some deep shadows and some saturated highlights.
    assert np.quantile(green, 0.99) > 5 * np.quantile(green, 0.01)
    saturating = [
        (natural_scene(np.random.default_rng(s), 256, 320) > 1.2).any() for s in range(4)
    ]
    assert any(saturating)


def test_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    make_dataset(out, cameras=2, refs=3, disputed_flat=1, disputed_natural=0, **SMALL)
    with pytest.raises(FileExistsError):
        make_dataset(out, cameras=1, refs=1, disputed_flat=0, disputed_natural=0, **SMALL)
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    truth = make_dataset(
        out, cameras=1, refs=1, disputed_flat=0, disputed_natural=0, overwrite=True, **SMALL
    )
    images = {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}
    assert images == {i["path"] for i in truth["images"]} == {"refs/C01/ref_000.jpg"}
    assert not (out / "truth" / "C02_K.npy").exists()
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cameras": 0}, "cameras"),
        ({"cameras": 2.0}, "cameras"),
        ({"per_model": 0}, "per_model"),
        ({"refs": 0}, "refs"),
        ({"refs": True}, "refs"),
        ({"disputed_flat": -1}, "disputed_flat"),
        ({"disputed_natural": -2}, "disputed_natural"),
        ({"height": 8}, "height"),
        ({"width": "80"}, "width"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"jpeg_quality": 101}, "jpeg_quality"),
        ({"fmt": "bmp"}, "fmt"),
        ({"portrait": 4, "disputed_natural": 3}, "portrait"),
        ({"seed": -1}, "seed"),
        ({"sensor": {"prnu_std": 0.01}}, "sensor"),
        ({"workers": 0}, "workers"),
    ],
)
def test_argument_validation(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name) as info:
        make_dataset(tmp_path / "ds", **{**SMALL, **kwargs})
    assert repr(next(iter(kwargs.values()))) in str(info.value) or name == "portrait"
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prnu_std": -0.1},
        {"full_well": 0},
        {"adc_bits": 20},
        {"channel_sensitivity": (1.0, 1.0)},
        {"vignetting_range": (0.5, 0.2)},
        {"fpn_period_range": (0, 4)},
        {"gamma": float("nan")},
        {"exif_make": 5},
    ],
)
def test_sensor_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SensorModel(**kwargs)


def test_load_ground_truth_rejects_other_json(tmp_path: Path) -> None:
    (tmp_path / "ground_truth.json").write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(ValueError, match="camid-synth"):
        load_ground_truth(tmp_path)

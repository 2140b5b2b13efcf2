"""Search in proportion to the evidence (issue 25 item 2): an image of a compared camera's sensor size is compared
at full frame with the cameras of that size, not crop-searched inside larger sensors unless ``--search-crops``;
an image of no sensor's size is still crop-searched and found at its offset. The library search applies the same
rule over the whole library, and the console's runner-up and hints come from the same-geometry cameras."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from camid_gpu.cli.answers import image_line, row
from camid_gpu.cli.hints import hints_for
from camid_gpu.config import Params, RunConfig
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.engine.runner import fingerprint_folder, identify_files
from camid_gpu.engine.scheduler import read_results
from camid_gpu.library import add_stores, init_library, search_library
from camid_gpu.pipeline.crops import native_size
from camid_gpu.pipeline.records import CROPS_NO_NATIVE, CROPS_REQUESTED, CROPS_SKIPPED

CONFIG = RunConfig(backend="numpy", progress=False)
SMALL, LARGE = (256, 320), (384, 512)
CROP = (40, 56, 200, 240)  # top, left, rows, columns of a crop of a large camera's flat: no sensor's size


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """Two cameras of 256x320 (S01, S02) and two of 384x512 (L01, L02), one store each (full-frame PCE
    fingerprints), a flat of S01 as taken and a crop of a flat of L01."""
    root = tmp_path_factory.mktemp("two-sizes")
    stores = []
    for prefix, (h, w), seed in (("S", SMALL, 3), ("L", LARGE, 4)):
        make_dataset(root / prefix, cameras=2, per_model=1, refs=4, disputed_flat=1, disputed_natural=0, height=h,
                     width=w, jpeg_quality=92, seed=seed)
        refs = root / prefix / "refs"
        for cam in sorted(p.name for p in refs.iterdir()):  # camera names unique across the stores
            (refs / cam).rename(refs / f"{prefix}{cam[1:]}")
        stores.append(str(root / f"fp{prefix}"))
        fingerprint_folder(str(refs), stores[-1], ("pce",), Params(refs=4), CONFIG)
    native = next((root / "S" / "disputed" / "C01").glob("flat_*"))
    top, left, h, w = CROP
    large = np.asarray(Image.open(next((root / "L" / "disputed" / "C01").glob("flat_*"))))
    Image.fromarray(large[top:top + h, left:left + w]).save(root / "crop.png")
    return root, stores, str(native), str(root / "crop.png")


def _identify(two_sizes, tmp_path, image, **params):
    root, stores, _, _ = two_sizes
    out = tmp_path / "r.jsonl"
    identify_files(stores, [image], str(out), ("pce",), Params(**params), CONFIG)
    (record,) = read_results(str(out))
    return record["pce"]


def test_native_size_upright_or_turned():
    assert native_size((256, 320), [(384, 512), (256, 320)]) and native_size((320, 256), [(256, 320)])
    assert not native_size((200, 240), [(384, 512), (256, 320)])


def test_an_image_of_its_own_sensor_size_is_not_crop_searched_in_larger_sensors(two_sizes, tmp_path):
    pce = _identify(two_sizes, tmp_path, two_sizes[2])
    assert pce["decision"] == "S01"
    assert set(pce["scores"]) == {"S01", "S02"}  # the old code scored L01 and L02 as crops too
    assert all(s["match"] == "full-frame" for s in pce["scores"].values())
    for cam in ("L01", "L02"):
        assert "--search-crops" in pce["not_comparable"][cam]["reason"]
    assert pce["searched"] == {"crops": CROPS_SKIPPED, "full_frame": ["S01", "S02"], "crop": [],
                               "crop_skipped": ["L01", "L02"]}


def test_search_crops_searches_the_larger_sensors_too(two_sizes, tmp_path):
    pce = _identify(two_sizes, tmp_path, two_sizes[2], search_crops=True)
    assert pce["decision"] == "S01" and set(pce["scores"]) == {"S01", "S02", "L01", "L02"}
    assert pce["scores"]["L01"]["match"] == "crop" and pce["scores"]["L01"]["positions_searched"] == 129 * 193
    assert pce["searched"]["crops"] == CROPS_REQUESTED and pce["searched"]["crop"] == ["L01", "L02"]


def test_a_crop_of_the_large_camera_is_still_found_at_its_offset(two_sizes, tmp_path):
    pce = _identify(two_sizes, tmp_path, two_sizes[3])
    top, left, h, w = CROP
    own = pce["scores"]["L01"]
    assert pce["decision"] == "L01" and own["match"] == "crop" and own["offset"] == [top, left]
    assert pce["searched"]["crops"] == CROPS_NO_NATIVE and set(pce["searched"]["crop"]) == {"S01", "S02", "L01", "L02"}


def test_the_library_search_applies_the_rule_over_the_library(two_sizes, tmp_path):
    root, stores, native, cropped = two_sizes
    lib = str(tmp_path / "lib")
    init_library(lib)
    add_stores(lib, stores)
    _, records = search_library(lib, [native, cropped], str(tmp_path / "run"), Params(), CONFIG)
    by_path = {r["path"]: r for r in records}
    first, crop = by_path[native], by_path[cropped]
    assert first["pce"]["decision"] == "S01" and set(first["pce"]["scores"]) <= {"S01", "S02"}
    assert first["library"]["crops"] == CROPS_SKIPPED and first["library"]["crop_skipped"] == 2
    assert first["library"]["compared"] == 2 and first["library"]["unscreened"] == {}
    assert crop["pce"]["decision"] == "L01" and crop["pce"]["scores"]["L01"]["offset"] == list(CROP[:2])
    assert crop["library"]["crops"] == CROPS_NO_NATIVE and crop["library"]["compared"] == 4
    _, records = search_library(lib, [native], str(tmp_path / "run2"), Params(search_crops=True), CONFIG)
    assert records[0]["library"]["crops"] == CROPS_REQUESTED and records[0]["library"]["compared"] == 4
    assert records[0]["pce"]["decision"] == "S01"


def _record(scores, size=(192, 256), decision=None):
    best = max(scores, key=lambda c: scores[c]["pce"])
    return {"path": "x.jpg", "error": None, "size": list(size), "rotations_tried": [0],
            "pce": {"scores": scores, "best": best, "best_pce": scores[best]["pce"], "decision": decision,
                    "above_threshold": [], "threshold": 60.0}}


def test_the_runner_up_comes_from_the_same_geometry_cameras():
    record = _record({"S01": {"pce": 43.6, "match": "full-frame", "log10_p_fa": -10.0},
                      "S02": {"pce": 1.2, "match": "full-frame", "log10_p_fa": -0.3},
                      "L01": {"pce": 20.5, "match": "crop", "log10_p_fa": -1.0}})
    assert "runner-up S02 1.2" in image_line(record, 1, 1)  # not L01 at 20.5 from a crop search
    assert row(record, ("pce",))[6] == "S02 1.2"
    only_crops = _record({"L01": {"pce": 30.0, "match": "crop"}, "L02": {"pce": 20.0, "match": "crop"}})
    assert row(only_crops, ("pce",))[6] == "L02 20.0"


def test_no_resize_hint_for_an_image_of_a_sensor_size():
    sensors = {"S01": (192, 256), "L01": (384, 512)}
    native = _record({"S01": {"pce": 43.6, "match": "full-frame"}})
    assert hints_for(native, sensors, "auto", False) == []  # the old code said "resized? try --search-scales"
    turned = _record({"S01": {"pce": 3.0, "match": "full-frame"}}, size=(256, 192))
    assert hints_for(turned, sensors, "auto", False) == []
    resized = _record({"L01": {"pce": 3.0, "match": "crop"}}, size=(288, 384))
    assert any("--search-scales" in h for h in hints_for(resized, sensors, "auto", False))


def test_search_crops_on_the_command_line(two_sizes, tmp_path):
    from camid_gpu.cli import main

    root, stores, native, _ = two_sizes
    args = ["identify", stores[0], native, "--store", stores[1], "--quiet", "--backend", "numpy"]
    assert main(args + ["-o", str(tmp_path / "a")]) == 0
    assert main(args + ["-o", str(tmp_path / "b"), "--search-crops"]) == 0
    (a,), (b,) = (read_results(str(tmp_path / run / "results.jsonl")) for run in ("a", "b"))
    assert a["pce"]["searched"]["crops"] == CROPS_SKIPPED and b["pce"]["searched"]["crops"] == CROPS_REQUESTED

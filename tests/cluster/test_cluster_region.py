"""The region compared: by default (``auto``) whole frames when the run fits the budget, else
the largest centred square that does; a resumed run keeps its region; when little links, a line says what was
compared and what to try.

The real case: 16 natural 6 MP photos of six cameras, 0 clusters on the central 1024 x 1024, three pure
clusters on whole frames. Modelled small: wide 256 x 1024 frames, whose central square holds a quarter of the
pixels (same-camera z about half of the whole frame's, as z grows with the square root of the pixels)."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from camid_gpu.cli import main
from camid_gpu.cluster import ClusterParams, cluster_images
from camid_gpu.cluster.region import choose_region, frame_sizes, region_hint, resolve_region, run_cost
from camid_gpu.config import CLUSTER_REGION_FLOOR, RunConfig
from camid_gpu.datasets.scenes import natural_scene
from camid_gpu.datasets.sensor import SensorModel, develop, expose, make_camera, model_artefacts, rng_for

CONFIG = RunConfig(backend="numpy", progress=False)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Two cameras (2.5 % PRNU), four natural JPEGs each, 256 x 1024."""
    root = tmp_path_factory.mktemp("wide")
    folder = root / "in"
    folder.mkdir()
    h, w = 256, 1024
    sensor = SensorModel(prnu_std=0.025, natural_level_range=(0.3, 0.6))
    for index in range(2):
        camera = make_camera(index, f"c{index}", model_artefacts(index, h, w, 1, sensor), 1, sensor)
        for k in range(4):
            rng = rng_for(5, index, k)
            image = develop(expose(natural_scene(rng, h, w, sensor), camera, sensor, rng), camera, sensor, 8)
            out = io.BytesIO()
            Image.fromarray(image).save(out, format="JPEG", quality=90, subsampling=0)
            (folder / f"c{index}-{k}.jpg").write_bytes(out.getvalue())
    return root, folder


def _clustered(result) -> list[list[str]]:
    return sorted(sorted(m["path"].rsplit("/", 1)[1] for m in c["members"]) for c in result["clusters"])


def test_default_region_compares_whole_frames_and_finds_what_the_central_square_misses(wide, tmp_path):
    root, folder = wide
    assert ClusterParams().region == "auto"
    square = cluster_images([str(folder)], str(tmp_path / "square"), ClusterParams(region=1024), CONFIG)
    assert square["groups"][0]["region"] == [256, 256]  # the former default on these frames
    auto = cluster_images([str(folder)], str(tmp_path / "auto"), ClusterParams(), CONFIG)
    assert auto["groups"][0]["region"] == [256, 1024]
    assert auto["region_choice"]["region"] is None and auto["region_choice"]["reason"] == "full frames fit the budget"
    assert auto["params"]["region"] is None  # what was compared is recorded, not "auto"
    assert _clustered(auto) == [[f"c0-{k}.jpg" for k in range(4)], [f"c1-{k}.jpg" for k in range(4)]]
    assert sum(c["size"] for c in square["clusters"]) == 4  # the central quarter leaves half of them out
    assert json.loads((tmp_path / "auto" / "clusters.json").read_text())["region_choice"] == auto["region_choice"]


def test_a_line_says_what_was_compared_and_what_to_try_when_little_links(wide, tmp_path, capsys):
    _, folder = wide
    main(["cluster", str(folder / "c0-0.jpg"), str(folder / "c1-0.jpg"), str(folder / "c1-1.jpg"),
          "-o", str(tmp_path / "run"), "--region", "256", "--backend", "numpy", "--quiet"])
    out = capsys.readouterr().out
    assert "compared the central 256x256 of 256x1024 frames (25 % of the pixels)" in out
    assert "--region full would give same-camera pairs about 2 times the z" in out
    main(["cluster", str(folder / "c0-0.jpg"), str(folder / "c1-0.jpg"), "-o", str(tmp_path / "auto"),
          "--backend", "numpy", "--quiet"])
    out = capsys.readouterr().out
    assert "region auto: whole frames (full frames fit the budget: 2 residual rows" in out
    assert "compared whole 256x1024 frames" in out and "more images per camera" in out
    assert region_hint({"groups": [{"name": "256x1024", "images": 4, "region": [256, 256]}],
                        "clusters": [{"group": "256x1024", "size": 2}]}) == []  # half linked: no hint


def test_auto_chooses_the_largest_square_that_fits_the_budget():
    frames = [(4000, 6000)] * 10 + [(6000, 4000)] * 5  # five portrait frames: two rows each
    full = run_cost(frames, None)
    assert full["rows"] == 20 and full["store_bytes"] == 20 * 24e6 * 4
    assert full["gram_macs"] == 20 * 20 / 2 * 24e6
    assert choose_region(frames, int(full["store_bytes"]))["region"] is None
    # a store budget for 3000 x 3000 rows: the largest multiple of 256 under it
    choice = choose_region(frames, 20 * 3000 * 3000 * 4)
    assert choice["region"] == 2816 and choice["cost"]["store_bytes"] <= 20 * 3000 * 3000 * 4
    assert run_cost(frames, choice["region"] + 256)["store_bytes"] > 20 * 3000 * 3000 * 4
    # the Gram budget binds the same way; nothing fits: the floor, said so
    assert choose_region(frames, 1 << 40, gram_macs=full["gram_macs"] / 4)["region"] == 2304  # 6 MP: 2449 squared
    tight = choose_region(frames, 1000)
    assert tight["region"] == CLUSTER_REGION_FLOOR and "exceeds the budget" in tight["reason"]
    # a header that cannot be read counts as the largest frame
    assert choose_region([(500, 600), None], 10**12)["cost"]["rows"] == 2
    # the whole short side is tried before the multiples of 256: 1000 frames of 24 MP in 64 GiB
    assert choose_region([(4000, 6000)] * 1000, 64 << 30)["region"] == 4000
    assert run_cost([(500, 600), (500, 600)], None) == choose_region([(500, 600), None], 10**12)["cost"]


def test_frame_sizes_from_headers_and_resume_keeps_the_run_region(wide, tmp_path):
    _, folder = wide
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert frame_sizes([str(folder / "c0-0.jpg"), str(tmp_path / "junk.jpg")]) == [(256, 1024), None]
    run = tmp_path / "run"
    run.mkdir()
    (run / "cluster-params.json").write_text(json.dumps({"region": 512}))
    params, choice = resolve_region(ClusterParams(), [str(folder / "c0-0.jpg")], str(run), resume=True)
    assert params.region == 512 and choice["reason"] == "the region of the run resumed"
    params, choice = resolve_region(ClusterParams(), [str(folder / "c0-0.jpg")], str(run), resume=False)
    assert params.region is None
    assert resolve_region(ClusterParams(region=300), [], str(run), resume=False) == (ClusterParams(region=300), None)
    with pytest.raises(ValueError, match="auto"):
        ClusterParams(region="big")

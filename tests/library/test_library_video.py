"""A video as a library query: its pooled keyframes screened against the library's rows, the shortlist confirmed
by the video scoring of identify; the record is the video record with the library's facts."""
from __future__ import annotations

import json
import os

import pytest

from camid_gpu.config import Params, RunConfig
from camid_gpu.library.manage import add_stores, init_library
from camid_gpu.library.search import search_library

pytest.importorskip("av")

CONFIG = RunConfig(backend="numpy", progress=False)


@pytest.fixture(scope="module")
def video_search(video_world, tmp_path_factory):
    root, _ = video_world
    tmp = tmp_path_factory.mktemp("libvideo")
    lib = str(tmp / "LIB")
    init_library(lib)
    add_stores(lib, [str(root / "fpv")], case="K1", label="video fingerprints")
    disputed = root / "data" / "disputed"
    inputs = [str(disputed / cam / "plain-x264-crf23-g3-0.mp4") for cam in ("V01", "V02", "unknown")]
    run, records = search_library(lib, inputs, str(tmp / "RUN"), Params(), CONFIG)
    return run, {os.path.basename(os.path.dirname(r["path"])): r for r in records}


def test_a_video_of_a_library_camera_is_named_and_an_unknown_cameras_by_none(video_search):
    _, records = video_search
    for cam in ("V01", "V02"):
        r = records[cam]
        assert r["error"] is None and r["pce"]["decision"] == cam
        assert r["library"]["shortlist"][0]["camera"] == cam and r["library"]["screened"] == 2
        assert r["pce"]["scores"][cam]["match"] == "video-pooled"
        assert r["pce"]["threshold"] == r["library"]["threshold"]["decision_pce"]
    unknown = records["unknown"]
    assert unknown["error"] is None and unknown["pce"]["decision"] is None
    assert all(s["z"] < unknown["library"]["threshold"]["z"] for s in unknown["library"]["screen_top"])


def test_the_record_is_the_video_record(video_search):
    run, records = video_search
    r = records["V01"]
    assert r["pce"]["method"] == "pce-video" and r["video"]["selection"] == "i"
    assert r["video"]["frames_used"] and all(f["type"] == "I" for f in r["video"]["frames_used"])
    assert r["library"]["video_screen"]["frames_pooled"] == len(r["frames"])
    with open(run["manifest"], encoding="utf-8") as handle:
        inputs = json.load(handle)["inputs"]
    assert r["sha256"] == next(e["sha256"] for e in inputs if e["path"] == r["path"])



def test_a_stabilised_video_is_confirmed_unscreened_with_a_shift_range(video_world, tmp_path):
    """A zero-shift screen cannot see a stabilised video's PRNU (its frames sit at other shifts): with
    --shift-range the cameras of its frame size are confirmed unscreened, the frames aligned, and it is named."""
    root, _ = video_world
    lib = str(tmp_path / "LIB")
    init_library(lib)
    add_stores(lib, [str(root / "fpv")], case="K1", label="video fingerprints")
    video = str(root / "data" / "disputed" / "V01" / "stabilised-x264-crf23-g3-0.mp4")
    _, (plain,) = search_library(lib, [video], str(tmp_path / "A"), Params(), CONFIG)
    _, (shifted,) = search_library(lib, [video], str(tmp_path / "B"), Params(shift_range=(16, 16)), CONFIG)
    assert plain["pce"]["decision"] is None and not plain["library"]["shortlist"]
    assert shifted["pce"]["decision"] == "V01" and shifted["library"]["screened"] == 0
    assert sorted(shifted["library"]["unscreened"]) == ["V01", "V02"]
    assert shifted["pce"]["scores"]["V01"]["stabilisation_detected"]

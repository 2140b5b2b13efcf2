"""Videos against fingerprints (camid_gpu.pipeline.video): frames pooled, stabilised frames aligned, hybrid
matching against still fingerprints, an unknown camera named by none, memory bounded by the budget."""
from __future__ import annotations

import pytest

pytest.importorskip("av")

from camid_gpu.backend import get_backend  # noqa: E402
from camid_gpu.config import Params, RunConfig  # noqa: E402
from camid_gpu.engine.context import run_context  # noqa: E402
from camid_gpu.pipeline.video import HybridCache, VideoOptions, identify_video  # noqa: E402
from camid_gpu.store import load_store  # noqa: E402

BK = get_backend("numpy", dtype="float32")


def _identify(world, store_name, video, options=None, cache=None, held=None, batch=4):
    root, _ = world
    store = load_store(root / store_name)
    return identify_video(BK, store, str(root / "data" / "disputed" / video), Params(), options or VideoOptions(),
                          None, batch, cache, held)


def _truth(world, video):
    _, truth = world
    return next(v for v in truth["videos"] if v["path"].endswith(video))


def test_pooling_beats_the_best_single_frame_at_crf_30(video_world):
    record = _identify(video_world, "fpv", "V01/plain-x264-crf30-g3-0.mp4")
    score = record["pce"]["scores"]["V01"]
    frames = record["frames"]
    assert len(frames) == 8 and {f["type"] for f in frames} == {"I"}  # intra frames only, by default
    assert record["pce"]["best"] == "V01"
    assert score["pce"] > 1.5 * max(f["pce"] for f in frames), (score, [f["pce"] for f in frames])
    assert score["log10_p_fa"] < min(f["log10_p_fa"] for f in frames) - 3
    assert record["video"]["sha256"] and record["video"]["codec"] == "h264" and record["video"]["frames_used"]


def test_videos_of_fingerprinted_cameras_identified_and_an_unknown_camera_named_by_none(video_world):
    for camera in ("V01", "V02"):
        record = _identify(video_world, "fpv", f"{camera}/plain-x264-crf23-g3-0.mp4")
        assert record["pce"]["decision"] == camera and record["pce"]["best_pce"] > 100
    for variant in ("plain-x264-crf23", "stabilised-x264-crf23", "plain-x264-crf30", "hybrid-x264-crf23"):
        record = _identify(video_world, "fpv", f"unknown/{variant}-g3-0.mp4")
        assert record["pce"]["decision"] is None, record["pce"]
        assert all(s["pce"] < 20 for s in record["pce"]["scores"].values())


def test_stabilised_video_identified_after_alignment_and_missed_without(video_world):
    video = "V01/stabilised-x264-crf23-g3-0.mp4"
    aligned = _identify(video_world, "fpv", video)
    plain = _identify(video_world, "fpv", video, VideoOptions(align_range=0))
    assert plain["pce"]["decision"] is None and plain["pce"]["scores"]["V01"]["pce"] < 20
    score = aligned["pce"]["scores"]["V01"]
    assert aligned["pce"]["decision"] == "V01" and score["stabilisation_detected"], score
    assert aligned["video"]["stabilisation_detected"]
    # each frame aligned by the shift the simulator gave it (the PRNU window moved by the shake)
    offsets = _truth(video_world, video)["offsets"]
    found = {f["index"]: f["shift"] for f in aligned["frames"]}
    agree = sum(found[i] == offsets[i] for i in found)
    assert agree >= len(found) - 1, (found, offsets)


@pytest.fixture(scope="module")
def hybrid_videos(video_world, tmp_path_factory):
    """Longer (72 frames, 24 intra) hybrid videos of the same cameras (same seed and sizes: the same sensors as
    ``video_world``, whose still fingerprints ``fps`` they are matched against)."""
    from camid_gpu.datasets.video import make_video_dataset

    root = tmp_path_factory.mktemp("hybrid")
    truth = make_video_dataset(root, cameras=2, frame=(240, 320), frames=72, crfs=(23, 30), gops=(3,),
                               variants=("hybrid",), ref_frames=2, stills=0, seed=3)
    return root, truth


def test_hybrid_scale_and_offset_found_against_still_fingerprints_and_cached(video_world, hybrid_videos):
    root, truth = hybrid_videos
    store = load_store(video_world[0] / "fps")
    assert truth["sensor"] == video_world[1]["sensor"]
    cache = HybridCache()

    def run(name):
        return identify_video(BK, store, str(root / "disputed" / name), Params(), VideoOptions(), None, 4, cache)

    first = run("V01/hybrid-x264-crf23-g3-0.mp4")
    score = first["pce"]["scores"]["V01"]
    assert first["pce"]["decision"] == "V01", first["pce"]
    assert score["match"] == "video-hybrid" and abs(score["scale"] - truth["hybrid_scale"]) <= 0.003
    expected = truth["videos"][0]["offsets"][0]
    assert max(abs(a - b) for a, b in zip(score["offset"], expected)) <= 1, (score["offset"], expected)
    assert score["positions_searched"] > 1000 and score["log10_p_fa"] < -10
    assert ("V01", (240, 320)) in cache.found
    again = run("V01/hybrid-x264-crf30-g3-0.mp4")
    cached = again["pce"]["scores"]["V01"]
    assert cached.get("geometry_from_cache", "").endswith("crf23-g3-0.mp4"), cached  # the cached scale first
    assert cached["scales_searched"] == 1 and cached["positions_searched"] < score["positions_searched"]
    unknown = run("unknown/hybrid-x264-crf23-g3-0.mp4")
    assert unknown["pce"]["decision"] is None and "geometry_from_cache" not in unknown["pce"]["scores"]["V01"]


def test_frames_held_never_exceed_the_budget_cap(video_world):
    ctx = run_context(RunConfig(backend="numpy", max_host_memory=40 << 20))
    cap = ctx.fingerprint_batch(240 * 320)
    assert cap < 8  # the budget, not the video, sets it: fewer than the video's intra frames
    held = [0]
    record = _identify(video_world, "fpv", "V02/plain-x264-crf23-g3-0.mp4", VideoOptions(frames="all"),
                       held=held, batch=ctx.fingerprint_batch)
    assert len(record["frames"]) == 24 and 1 <= held[0] <= cap
    assert record["pce"]["decision"] == "V02"


@pytest.mark.slow
def test_a_4k_video_stays_within_the_memory_budget(tmp_path):
    """A 3840x2160 video: the frames held at once are the budget's (one here), and the traced peak stays under
    the budget whatever the number of frames (12 frames pooled, all of them decoded)."""
    import tracemalloc
    from types import SimpleNamespace

    import numpy as np

    from camid_gpu.datasets.video import encode_video

    rng = np.random.default_rng(0)
    shape = (2160, 3840)
    base = rng.integers(60, 190, shape, dtype=np.uint8)
    frames = [np.clip(base.astype(np.int16) + rng.integers(-3, 4, shape), 0, 255).astype(np.uint8) for _ in range(12)]
    path = tmp_path / "uhd.mp4"
    encode_video(path, frames, crf=30, gop=4)
    del frames
    budget = 1 << 30
    ctx = run_context(RunConfig(backend="numpy", max_host_memory=budget))
    cap = ctx.fingerprint_batch(shape[0] * shape[1])
    k = (rng.standard_normal(shape) * 0.01).astype(np.float32)
    store = [SimpleNamespace(camera="C", source_shape=shape, k=k, clip_of=lambda method: None)]
    held = [0]
    tracemalloc.start()
    try:
        record = identify_video(BK, store, str(path), Params(), VideoOptions(frames="all"), None,
                                ctx.fingerprint_batch, None, held)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(record["frames"]) == 12 and 1 <= held[0] <= cap < 12
    assert peak < budget, peak


def test_constant_frames_are_listed_not_pooled_and_an_all_constant_video_is_an_error(tmp_path):
    from types import SimpleNamespace

    import numpy as np

    from camid_gpu.datasets.video import encode_video
    from camid_gpu.errors import ImageContentError

    rng = np.random.default_rng(0)
    grey = np.full((96, 128), 128, np.uint8)
    encode_video(tmp_path / "mixed.mp4", [rng.integers(50, 200, (96, 128), dtype=np.uint8) if i % 2 else grey
                                          for i in range(6)], crf=10, gop=1, bframes=0)
    encode_video(tmp_path / "grey.mp4", [grey] * 3, crf=10, gop=1, bframes=0)
    k = (rng.standard_normal((96, 128)) * 0.01).astype(np.float32)
    store = [SimpleNamespace(camera="C", source_shape=(96, 128), k=k, clip_of=lambda method: None)]
    record = identify_video(BK, store, str(tmp_path / "mixed.mp4"), Params(), VideoOptions(), None, 4)
    assert [(f["index"], f["pooled"]) for f in record["video"]["frames_used"]] == [
        (0, False), (1, True), (2, False), (3, True), (4, False), (5, True)]
    assert [f["index"] for f in record["frames"]] == [1, 3, 5]
    with pytest.raises(ImageContentError, match="all 3 frames decoded are constant"):
        identify_video(BK, store, str(tmp_path / "grey.mp4"), Params(), VideoOptions(), None, 4)

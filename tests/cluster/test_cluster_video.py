"""Videos in a clustering run: a video's keyframes pooled into one row beside the stills' rows.

Small synthetic set: two cameras (PRNU 3 %, as the other clustering tests, 256x384 frames), each with two short
H.264 videos (12 frames, GOP 3: 4 keyframes, CRF 23) and three natural stills (PNG) of the same sensor size.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from camid_gpu.cluster import ClusterParams, cluster_images
from camid_gpu.config import RunConfig
from camid_gpu.datasets.sensor import camera_prnu, rng_for
from camid_gpu.datasets.synthetic import SensorModel

pytest.importorskip("av")

SENSOR = SensorModel(prnu_std=0.03, natural_level_range=(0.3, 0.6))
CONFIG = RunConfig(backend="numpy", progress=False)
FRAME = (256, 384)


def write_camera(folder, camera: int, videos: int = 2, stills: int = 3, seed: int = 21) -> None:
    from camid_gpu.datasets.video import _expose, _scene_field, encode_video, render_frames

    k = camera_prnu(camera, *FRAME, seed, SENSOR)
    folder.mkdir(parents=True)
    for v in range(videos):
        frames, _ = render_frames(k, FRAME, 12, "plain", rng_for(seed, 90, camera, v), SENSOR, shake=0)
        encode_video(folder / f"clip{v}.mp4", frames, crf=23, gop=3)
    rng = rng_for(seed, 91, camera)
    for s in range(stills):
        # colour stills: a cluster fingerprint then takes a video's luma frames beside colour references
        Image.fromarray(_expose(_scene_field("natural", rng, *FRAME, SENSOR), k, SENSOR, rng)).convert("RGB").save(
            folder / f"still{s}.png")


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster-video")
    for camera in (0, 1):
        write_camera(root / "in" / f"cam{camera}", camera)
    result = cluster_images([str(root / "in")], str(root / "run"), ClusterParams(region=None), CONFIG)
    return root, result


def test_videos_cluster_with_the_stills_of_their_camera(clustered):
    root, result = clustered
    members = sorted(sorted(os.path.relpath(m["path"], root / "in") for m in c["members"]) for c in result["clusters"])
    assert members == [[f"cam{c}/{n}" for n in ("clip0.mp4", "clip1.mp4", "still0.png", "still1.png", "still2.png")]
                       for c in (0, 1)]


def test_a_video_record_is_one_row_with_its_container_hash_and_frames(clustered):
    root, _ = clustered
    from camid_gpu._shared.jsonio import read_jsonl, sha256_file

    records = {os.path.relpath(r["path"], root / "in"): r for r in read_jsonl(str(root / "run" / "images.jsonl"))}
    video = records["cam0/clip0.mp4"]
    assert video["error"] is None and len(video["rows"]) == 1 and video["rotations"] == [0]
    assert video["sha256"] == sha256_file(str(root / "in" / "cam0" / "clip0.mp4"))
    assert video["group"] == records["cam0/still0.png"]["group"] == "256x384"
    assert video["video"]["selection"] == "i" and video["video"]["frames_pooled"] == 4
    assert [f["type"] for f in video["video"]["frames_used"] if f["pooled"]] == ["I"] * 4
    manifest = json.loads((root / "run" / "manifest.json").read_text())
    entry = next(e for e in manifest["inputs"] if e["path"].endswith("clip0.mp4"))
    assert entry["sha256"] == video["sha256"] and entry["role"] == "video"


def test_video_row_links_to_a_still_of_its_camera_only():
    """The pooled row's NCC with its camera's still rows is far above the other camera's (z = NCC * sqrt(n))."""
    import tempfile

    from camid_gpu.backend import get_backend
    from camid_gpu.cluster.residuals import residual_rows
    from camid_gpu.cluster.video import video_rows
    from camid_gpu.engine.context import run_context

    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "c")
        for camera in (0, 1):
            write_camera(__import__("pathlib").Path(folder) / str(camera), camera, videos=1, stills=2)
        ctx = run_context(CONFIG)
        _, row, _ = video_rows(os.path.join(folder, "0", "clip0.mp4"), ClusterParams(region=None), ctx, lambda s: None)
        z = {}
        for camera in (0, 1):
            stills = [np.asarray(Image.open(os.path.join(folder, str(camera), f"still{s}.png"))) for s in (0, 1)]
            rows, _ = residual_rows(get_backend("numpy"), stills, ClusterParams(region=None))
            z[camera] = (rows @ row[0]) * np.sqrt(row.shape[1])
    assert z[0].min() > 15 and np.abs(z[1]).max() < 5


def test_cluster_command_line_takes_videos_with_a_frame_choice(clustered, tmp_path):
    """``camid cluster --frames 2``: each video pooled from at most two frames; the videos are rows, not errors."""
    from camid_gpu._shared.jsonio import read_jsonl
    from camid_gpu.cli import main

    root, _ = clustered
    assert main(["cluster", str(root / "in" / "cam0"), "-o", str(tmp_path / "run"), "--region", "full",
                 "--backend", "numpy", "--quiet", "--frames", "2"]) == 0
    videos = [r for r in read_jsonl(str(tmp_path / "run" / "images.jsonl")) if r["path"].endswith(".mp4")]
    assert len(videos) == 2 and all(r["error"] is None for r in videos)
    assert all(r["video"]["selection"] == "2" and r["video"]["frames_pooled"] == 2 for r in videos)
    clusters = json.loads((tmp_path / "run" / "clusters.json").read_text())["clusters"]
    assert [len(c["members"]) for c in clusters] == [5]


def test_cluster_resume_with_other_frames_is_refused(clustered, tmp_path, capsys):
    """A video's row pools the frames ``--frames`` chooses: a resume with another choice would mix rows pooled
    two ways in one Gram, so it is refused (the choice is kept in cluster-params.json)."""
    from camid_gpu.cli import main

    root, _ = clustered
    run = tmp_path / "run"
    common = ["cluster", str(root / "in" / "cam0"), "-o", str(run), "--region", "full", "--backend", "numpy",
              "--quiet"]
    assert main(common + ["--frames", "2"]) == 0
    assert json.loads((run / "cluster-params.json").read_text())["video"]["frames"] == "2"
    assert main(common + ["--frames", "i", "--resume"]) != 0
    assert "other residual parameters" in capsys.readouterr().err

"""Videos through the command line: camid synth --videos, fingerprint from reference videos, identify a folder
of videos and images (input order kept, a damaged video a per-file error, everything in the manifest)."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("av")

from camid_gpu.cli import main  # noqa: E402


def test_synth_videos_writes_the_layout(tmp_path):
    out = tmp_path / "v"
    assert main(["synth", str(out), "--videos", "--cameras", "1", "--height", "64", "--width", "96",
                 "--video-frames", "4", "--crf", "23,30", "--gop", "2", "--variants", "plain,stabilised"]) == 0
    truth = json.loads((out / "ground_truth.json").read_text())
    names = sorted(v["path"] for v in truth["videos"])
    assert names == sorted(f"disputed/{c}/{v}-x264-crf{q}-g2-0.mp4" for c in ("V01", "unknown")
                           for v in ("plain", "stabilised") for q in (23, 30))
    assert (out / "refs" / "V01" / "flat.mp4").is_file() and len(list((out / "stills" / "V01").glob("*.png"))) == 8
    stabilised = next(v for v in truth["videos"] if v["variant"] == "stabilised")
    assert len(stabilised["offsets"]) == 4 and all(abs(d) <= 8 for o in stabilised["offsets"] for d in o)


def test_fingerprint_from_reference_videos_records_each_frame(video_world):
    root, _ = video_world
    meta = json.loads((root / "fpv" / "V01.json").read_text())
    frames = [r["video_frame"] for r in meta["references"]]
    assert len(frames) == 16 and [f["video_frame"] for f in frames] == list(range(16))
    assert {f["type"] for f in frames} == {"I"} and all(r["path"].endswith("flat.mp4") for r in meta["references"])
    # each frame is its own reference: its own pixel hash (not the first frame's), one container SHA-256 for all
    assert len({r["pixels_sha256"] for r in meta["references"]}) == 16
    assert len({r["sha256"] for r in meta["references"]}) == 1


def test_identify_a_folder_of_videos_and_images(video_world, tmp_path):
    root, _ = video_world
    folder = tmp_path / "case"
    folder.mkdir()
    source = root / "data" / "disputed"
    shutil.copy(source / "V02" / "plain-x264-crf23-g3-0.mp4", folder / "a-clip.mp4")
    shutil.copy(source / "unknown" / "plain-x264-crf23-g3-0.mp4", folder / "b-clip.MOV")
    data = (source / "V01" / "plain-x264-crf23-g3-0.mp4").read_bytes()
    (folder / "c-cut.mp4").write_bytes(data[: len(data) // 3])
    shutil.copy(root / "data" / "stills" / "V01" / "flat_00.png", folder / "d-still.png")
    run = tmp_path / "run"
    code = main(["identify", str(root / "fpv"), str(folder), "-o", str(run), "--quiet", "--backend", "numpy"])
    assert code == 3  # a per-file error: partial
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [r["path"].rsplit("/", 1)[1] for r in records] == ["a-clip.mp4", "b-clip.MOV", "c-cut.mp4", "d-still.png"]
    assert records[0]["pce"]["decision"] == "V02" and records[0]["video"]["frames_used"]
    assert records[0]["frames"] and all("pce" in f for f in records[0]["frames"])
    assert records[1]["pce"]["decision"] is None
    assert records[2]["error"]["kind"] == "decode" and "moov" in records[2]["error"]["reason"]
    assert "c-cut.mp4" in records[2]["path"]
    assert records[3]["error"] is None and records[3]["pce"]["not_comparable"]  # a still of another size
    manifest = json.loads((run / "manifest.json").read_text())
    hashed = {e["path"].rsplit("/", 1)[1]: e.get("sha256") for e in manifest["inputs"]}
    assert hashed["a-clip.mp4"] == records[0]["sha256"] == records[0]["video"]["sha256"]
    assert main(["verify", str(run)]) == 0


def test_resume_with_other_video_frames_is_refused(video_world, tmp_path, capsys):
    root, _ = video_world
    video = str(root / "data" / "disputed" / "V01" / "plain-x264-crf23-g3-0.mp4")
    run = str(tmp_path / "run")
    base = ["identify", str(root / "fpv"), video, "-o", run, "--quiet", "--backend", "numpy"]
    assert main(base) == 0
    assert main(base + ["--resume"]) == 0  # the same options: nothing to do
    capsys.readouterr()
    assert main(base + ["--resume", "--frames", "all"]) == 1
    assert "video.frames: recorded 'i', now 'all'" in capsys.readouterr().err

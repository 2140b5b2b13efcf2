"""Video decoding (camid_gpu.io.video): recognised by content, intra frames only by default, and every damaged
or unusable file a per-file error naming it."""
from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")

from camid_gpu.datasets.video import encode_video  # noqa: E402
from camid_gpu.errors import ImageDecodeError  # noqa: E402
from camid_gpu.io.listing import scan_inputs  # noqa: E402
from camid_gpu.io.video import VideoReader, is_video_file, sniff_video  # noqa: E402


def _frames(count=12, shape=(96, 128), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(40, 200, shape, dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    encode_video(path, _frames(), crf=20, gop=4, bframes=2)
    return path


def test_containers_recognised_by_content(clip, tmp_path):
    head = clip.read_bytes()[:16]
    assert sniff_video(head) == "MP4"
    assert sniff_video(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00") is None  # a HEIF still is an image
    for brand in (b"hevm", b"hevs", b"avif"):  # every HEIF brand io.raw reads, and AVIF, stays an image
        assert sniff_video(b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00") is None
    assert sniff_video(b"\x1a\x45\xdf\xa3" + b"\x00" * 12) == "Matroska"
    assert sniff_video(b"RIFF\x00\x00\x00\x00AVI LIST") == "AVI"
    assert sniff_video(b"\x00\x00\x00\x14ftyp3gp4\x00\x00\x00\x00") == "3GP"
    renamed = tmp_path / "folder" / "evidence.bin"  # no video suffix: found by its content
    renamed.parent.mkdir()
    renamed.write_bytes(clip.read_bytes())
    assert scan_inputs(str(renamed.parent)).images == [str(renamed)]
    assert is_video_file(str(renamed))


def test_keyframe_decoding_equals_full_decoding_on_the_frames_it_keeps(clip):
    with VideoReader(clip, selection="i") as video:
        intra = [(meta, pixels) for pixels, meta in video.frames()]
        info = video.info
    with VideoReader(clip, selection="all") as video:
        every = {meta.index: (meta, pixels) for pixels, meta in video.frames()}
    assert info.frames_decoded == len(intra) < len(every) == 12  # the others were never decoded
    assert [m.index for m, _ in intra] == sorted(i for i, (m, _) in every.items() if m.type == "I")
    for meta, pixels in intra:
        full_meta, full_pixels = every[meta.index]
        assert meta.type == full_meta.type == "I" and meta.pts == full_meta.pts
        np.testing.assert_array_equal(pixels, full_pixels)
    assert {m.type for m, _ in every.values()} >= {"I", "P"}
    assert info.codec == "h264" and "PyAV" in info.decoder and "libavcodec" in info.decoder
    assert len(info.sha256) == 64 and info.frames_in_stream == 12 and not info.variable_frame_rate
    assert [f["index"] for f in info.frames_used] == [m.index for m, _ in intra]


def test_frame_count_takes_intra_frames_first(clip):
    with VideoReader(clip, selection=5) as video:
        chosen = [meta for _, meta in video.frames()]
    with VideoReader(clip, selection="i") as video:
        intra = [meta.index for _, meta in video.frames()]
    assert len(chosen) == 5 and [m.index for m in chosen if m.type == "I"] == intra and len(intra) < 5


def test_bad_selection_is_refused():
    with pytest.raises(ValueError, match="--frames"):
        VideoReader("x.mp4", selection="some")


def _error(path, selection="i"):
    with pytest.raises(ImageDecodeError) as caught:
        with VideoReader(path, selection=selection) as video:
            list(video.frames())
    assert str(path) in str(caught.value)
    return caught.value.reason


def test_damaged_files_are_per_file_errors(clip, tmp_path):
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[:len(data) // 2])
    assert "truncated" in _error(truncated) or "moov" in _error(truncated)
    corrupt = tmp_path / "corrupt.mp4"
    damaged = bytearray(data)
    for i in range(len(data) // 4, len(data) - 2000, 61):
        damaged[i] ^= 0x5A
    corrupt.write_bytes(bytes(damaged))
    assert "damaged" in _error(corrupt, "all")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert "empty" in _error(empty)


def test_truncated_faststart_file_is_refused(tmp_path):
    path = tmp_path / "fast.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for frame in _frames(10):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="gray").reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    cut = tmp_path / "fast-cut.mp4"
    cut.write_bytes(path.read_bytes()[:-3000])  # the index is at the front: the frames run out
    reason = _error(cut, "all")
    assert "truncated" in reason or "damaged" in reason


def test_audio_only_and_zero_frame_files(tmp_path):
    audio = tmp_path / "voice.mp4"
    with av.open(str(audio), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert "audio-only" in _error(audio)
    for suffix, said in (("avi", "zero frames"), ("mp4", "zero frames")):  # mp4 drops an empty track
        nothing = tmp_path / f"nothing.{suffix}"
        with av.open(str(nothing), "w") as out:
            stream = out.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            out.start_encoding()
        assert said in _error(nothing)


def test_variable_frame_rate_is_handled_and_said(tmp_path):
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.codec_context.time_base = stream.time_base = __import__("fractions").Fraction(1, 1000)
        stream.options = {"g": "3", "bf": "0"}
        t = 0
        for i, frame in enumerate(_frames(9)):
            video = av.VideoFrame.from_ndarray(frame, format="gray").reformat(format="yuv420p")
            video.pts, video.time_base = t, stream.time_base
            t += 33 if i % 2 else 50
            for packet in stream.encode(video):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with VideoReader(path, selection="all") as video:
        frames = [meta for _, meta in video.frames()]
        info = video.info
    assert info.variable_frame_rate and info.frame_interval_spread > 0.1
    assert len(frames) == 9 and [f.index for f in frames] == list(range(9))
    assert [f.time for f in frames][:3] == [0.0, 0.05, 0.083]


def test_commands_that_read_images_only_name_a_video_as_such(clip):
    from camid_gpu.io.decode import read_image

    with pytest.raises(ImageDecodeError,
                       match="a MP4 video .*camid identify, fingerprint, cluster and library search read videos"):
        read_image(clip)

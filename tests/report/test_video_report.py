"""The report's video section: each video's container facts, pooling and per-frame PCE series."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("av")

from camid_gpu.cli import main  # noqa: E402


def test_report_lists_videos_with_their_per_frame_series(video_world, tmp_path):
    root, _ = video_world
    case = tmp_path / "case"
    case.mkdir()
    shutil.copy(root / "data" / "disputed" / "V01" / "stabilised-x264-crf23-g3-0.mp4", case / "clip.mp4")
    run = tmp_path / "run"
    assert main(["identify", str(root / "fpv"), str(case), "-o", str(run), "--quiet", "--backend", "numpy"]) == 0
    assert main(["report", str(run), "--quiet"]) == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    section = html[html.index('<section id="video">'):]
    section = section[:section.index("</section>")]
    assert "clip.mp4" in section and "h264" in section and "PyAV" in section
    assert "aligned (stabilisation detected)" in section and "8 of 24 (--frames i)" in section
    assert section.count('<img src="data:image/png;base64,') == 1

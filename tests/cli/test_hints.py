"""Hints read the sensor frames of every store searched, not only the first (``identify FP --store FP2``)."""
from __future__ import annotations

import json

from camid_gpu.cli.hints import all_hints, sensor_shapes


def _store(folder, camera, shape):
    folder.mkdir()
    (folder / f"{camera}.json").write_text(json.dumps({"camera": camera, "source_shape": list(shape)}))
    (folder / "manifest.json").write_text("{}")
    return str(folder)


def test_sensor_frames_of_every_store_searched_together(tmp_path):
    a = _store(tmp_path / "a", "A", (300, 400))
    b = _store(tmp_path / "b", "B", (600, 800))
    assert sensor_shapes(a) == {"A": (300, 400)}
    assert sensor_shapes([a, b]) == {"A": (300, 400), "B": (600, 800)}
    # a 450x600 image is the second store's frame resized: only the second store's sensor tells
    record = {"path": "x.jpg", "size": [450, 600], "pce": {"decision": None, "scores": {"B": {"pce": 3.0}}}}
    assert all_hints([record], [a], {}) == []
    hints = all_hints([record], [a, b], {})
    assert len(hints) == 1 and "smaller than the sensor frame of B" in hints[0][1]

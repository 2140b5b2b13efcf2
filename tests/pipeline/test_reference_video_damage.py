"""A reference video found damaged after some of its frames were decoded (FFmpeg's errors are raised when the
decode ends) gives none of its frames to the fingerprint: the camera is built from its other references."""
from __future__ import annotations

import numpy as np

from camid_gpu.backend import get_backend
from camid_gpu.config import Params
from camid_gpu.errors import ImageDecodeError
from camid_gpu.io.decode import ImageInfo
from camid_gpu.pipeline.identify import build_fingerprint


def _reference(path: str, seed: int, frame: int | None = None):
    pixels = np.random.default_rng(seed).integers(20, 230, (64, 80), dtype=np.uint8)
    info = ImageInfo(path=path, sha256=f"{seed:064x}", file_size=1, format="PNG", height=64, width=80, channels=1,
                     bit_depth=8, frame=None if frame is None else {"video_frame": frame, "pts": frame, "type": "I"})
    return path, (pixels, info)


def test_frames_of_a_video_found_damaged_are_not_used():
    loaded = [_reference(f"still{i}.png", i) for i in range(3)]
    loaded += [_reference("clip.mp4", 10 + f, f) for f in range(2)]
    loaded.append(("clip.mp4", ImageDecodeError("clip.mp4", "damaged or truncated video data")))
    fp, errors = build_fingerprint("C01", [p for p, _ in loaded], get_backend("numpy"), Params(refs=None),
                                   ("pce",), loaded=iter(loaded), batch_size=2)
    assert fp is not None and [r["path"] for r in fp.references] == ["still0.png", "still1.png", "still2.png"]
    assert any(e["path"] == "clip.mp4" for e in errors)

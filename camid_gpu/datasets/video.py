"""Synthetic videos (``camid synth --videos``): each camera's PRNU in every frame, encoded by PyAV.

A camera has one still sensor of ``sensor`` (rows, columns) with its true PRNU ``K``
(:func:`~camid_gpu.datasets.sensor.camera_prnu`, the still simulator's). A video frame is a window of the
sensor: frame ``i`` of a scene panning across a larger field is exposed as

    luma = 255 * clip(L * (1 + K) + shot and read noise, 0, 1) ** (1 / gamma)

(one plane: the codec's luma; chroma neutral) and then encoded (libx264, or libx265 where the installed
FFmpeg has it) at a CRF and GOP length. The video pipeline works on the luma plane, so the colour filter array
is not modelled here (the still images of :mod:`.writer` model it). Variants:

* ``plain``: the window at a fixed offset (the sensor's centre), the frame size the video's;
* ``stabilised``: that window moved by a per-frame shift of up to ``shake`` pixels each way (electronic
  stabilisation crops a larger sensor field where the shake puts it); the shifts are in the ground truth;
* ``hybrid``: the whole sensor scaled by ``hybrid_scale`` (Pillow's area-correct BILINEAR) and cropped
  centrally to the video's frame: the frame is a scaled crop of the still sensor.

References per camera: ``refs/<camera>/flat.mp4`` (a flat-field video at CRF 18 of the plain window: the video
fingerprint) and ``stills/<camera>/flat_NN.png`` (flat stills of the whole sensor: the still fingerprint of the
hybrid case). Disputed videos: ``disputed/<camera>/<variant>-<codec>-crf<C>-g<G>.mp4``; an ``unknown``
camera has disputed videos and no references. ``ground_truth.json`` lists every file with its facts.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from camid_gpu.datasets.scenes import flat_scene, natural_scene
from camid_gpu.datasets.sensor import SensorModel, camera_prnu, rng_for

#: first element of the seed keys of the video streams (the stills use 0..3)
STREAM_VIDEO = 7
VIDEO_VARIANTS = ("plain", "stabilised", "hybrid")


def _import_av():
    from camid_gpu._shared.optional import import_optional

    return import_optional("av", "video", "synthetic videos (camid synth --videos)")


def codecs_available() -> list[str]:
    """The encoders of the installed FFmpeg that synth uses: libx264, and libx265 when present."""
    av = _import_av()
    return [c for c in ("libx264", "libx265") if c in av.codecs_available]


def _expose(radiance: np.ndarray, k: np.ndarray, sensor: SensorModel, rng: np.random.Generator) -> np.ndarray:
    """One luma frame (uint8) of ``radiance`` (float32, 0..1 linear) through PRNU ``k``."""
    signal = radiance * (1.0 + k)
    dn_max = np.float32(sensor.dn_max)
    variance = signal / np.float32(sensor.full_well) + np.float32((sensor.read_noise_dn / dn_max) ** 2)
    raw = signal + np.sqrt(variance) * rng.standard_normal(signal.shape, dtype=np.float32)
    np.clip(raw, 0.0, 1.0, out=raw)
    return np.rint(255.0 * raw ** np.float32(1.0 / sensor.gamma)).astype(np.uint8)


def _scene_field(kind: str, rng: np.random.Generator, height: int, width: int, sensor: SensorModel) -> np.ndarray:
    """Linear gray radiance of a field: a dead-leaves scene (natural) or a flat field."""
    scene = (natural_scene if kind == "natural" else flat_scene)(rng, height, width, sensor)
    return np.ascontiguousarray(scene[..., 1])


def render_frames(k: np.ndarray, frame: tuple[int, int], count: int, variant: str, rng: np.random.Generator,
                  sensor: SensorModel, kind: str = "natural", pan: int = 2, shake: int = 8,
                  hybrid_scale: float = 1.0) -> tuple[list[np.ndarray], list[list[int]]]:
    """``count`` luma frames ``frame`` (rows, columns) of a scene panning ``pan`` px per frame, for the variant;
    returns (frames, per-frame window offsets (rows, columns) on the sensor; for hybrid on the scaled sensor)."""
    hs, ws = k.shape
    h, w = frame
    field = _scene_field(kind, rng, hs + 2 * shake, ws + pan * count + 2 * shake, sensor)
    frames, offsets = [], []
    centre = ((hs - h) // 2, (ws - w) // 2)
    for i in range(count):
        window = field[shake:shake + hs, shake + pan * i:shake + pan * i + ws]
        if variant == "hybrid":
            luma = _expose(window, k, sensor, rng)
            size = (int(np.floor(hybrid_scale * ws + 0.5)), int(np.floor(hybrid_scale * hs + 0.5)))
            scaled = np.asarray(Image.fromarray(luma).resize(size, Image.Resampling.BILINEAR))
            oy, ox = (scaled.shape[0] - h) // 2, (scaled.shape[1] - w) // 2
            frames.append(np.ascontiguousarray(scaled[oy:oy + h, ox:ox + w]))
            offsets.append([oy, ox])
            continue
        dy, dx = (rng.integers(-shake, shake + 1, 2) if variant == "stabilised" else (0, 0))
        oy, ox = centre[0] + int(dy), centre[1] + int(dx)
        oy, ox = min(max(oy, 0), hs - h), min(max(ox, 0), ws - w)
        # the stabiliser keeps the scene still in the frame and moves the crop on the sensor: the content is the
        # centre window's, the PRNU the shifted window's
        content = window[centre[0]:centre[0] + h, centre[1]:centre[1] + w]
        luma = _expose(content, k[oy:oy + h, ox:ox + w], sensor, rng)
        frames.append(luma)
        offsets.append([oy - centre[0], ox - centre[1]])
    return frames, offsets


def encode_video(path: str | os.PathLike, frames: Sequence[np.ndarray], codec: str = "libx264", crf: int = 23,
                 gop: int = 30, rate: int = 30, bframes: int = 2) -> None:
    """Encode gray frames (uint8 (h, w), even sizes) as an MP4 (yuv420p, the luma as given)."""
    av = _import_av()
    h, w = frames[0].shape
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        opts = {"crf": str(crf), "g": str(gop), "bf": str(bframes), "keyint_min": str(gop)}
        if codec == "libx265":
            opts = {"crf": str(crf), "x265-params": f"keyint={gop}:min-keyint={gop}:bframes={bframes}:log-level=error"}
        stream.options = opts
        chroma = np.full((h // 2, w // 2), 128, np.uint8)
        for luma in frames:
            planes = np.concatenate([luma, chroma.reshape(h // 4, w), chroma.reshape(h // 4, w)]) \
                if h % 4 == 0 else None
            if planes is not None:
                frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            else:
                frame = av.VideoFrame.from_ndarray(luma, format="gray").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_video_dataset(outdir: str | os.PathLike, cameras: int = 3, frame: tuple[int, int] = (240, 320),
                       sensor_shape: tuple[int, int] | None = None, frames: int = 30, crfs: Sequence[int] = (23,),
                       gops: Sequence[int] = (10,), codecs: Sequence[str] = ("libx264",),
                       variants: Sequence[str] = VIDEO_VARIANTS, per_setting: int = 1, ref_frames: int = 30,
                       stills: int = 8, unknown: bool = True, shake: int = 8, seed: int = 0,
                       sensor: SensorModel | None = None) -> dict[str, Any]:
    """Write a synthetic video dataset under ``outdir`` (see the module notes); returns the ground truth."""
    sensor = sensor or SensorModel()
    h, w = frame
    if h % 2 or w % 2:
        raise ValueError(f"video frame sizes must be even (yuv420p), got {w}x{h}")
    hs, ws = sensor_shape or (int(round(h * 1.25 / 2) * 2 + 2 * shake), int(round(w * 1.25 / 2) * 2 + 2 * shake))
    if hs < h + 2 * shake or ws < w + 2 * shake:
        raise ValueError(f"sensor {ws}x{hs} leaves no room for the {w}x{h} frame shaken by {shake} px")
    unknown_codecs = sorted(set(codecs) - set(codecs_available()))
    if unknown_codecs:
        raise ValueError(f"encoders not in this FFmpeg: {', '.join(unknown_codecs)} (have {codecs_available()})")
    hybrid_scale = max(h / hs, w / ws)
    out = Path(outdir)
    truth: dict[str, Any] = {"format": "camid-synth-video", "frame": [h, w], "sensor": [hs, ws], "frames": frames,
                             "hybrid_scale": hybrid_scale, "shake": shake, "seed": seed, "videos": [], "refs": {}}
    names = [f"V{i + 1:02d}" for i in range(cameras)] + (["unknown"] if unknown else [])
    for index, name in enumerate(names):
        k = camera_prnu(1000 + index, hs, ws, seed, sensor)
        if name != "unknown":
            truth["refs"][name] = _write_references(out, name, k, (h, w), ref_frames, stills, seed, index, sensor)
        for v, (variant, codec, crf, gop, copy) in enumerate(
                (a, b, c, d, e) for a in variants for b in codecs for c in crfs for d in gops
                for e in range(per_setting)):
            rng = rng_for(seed, STREAM_VIDEO, index, 1, v)
            pixels, offsets = render_frames(k, (h, w), frames, variant, rng, sensor, shake=shake,
                                            hybrid_scale=hybrid_scale)
            path = out / "disputed" / name / f"{variant}-{codec.removeprefix('lib')}-crf{crf}-g{gop}-{copy}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            encode_video(path, pixels, codec, crf, gop)
            truth["videos"].append({"path": str(path.relative_to(out)), "camera": name, "variant": variant,
                                    "codec": codec, "crf": crf, "gop": gop, "offsets": offsets})
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return truth


def _write_references(out: Path, name: str, k: np.ndarray, frame: tuple[int, int], ref_frames: int, stills: int,
                      seed: int, index: int, sensor: SensorModel) -> dict[str, Any]:
    rng = rng_for(seed, STREAM_VIDEO, index, 0)
    pixels, _ = render_frames(k, frame, ref_frames, "plain", rng, sensor, kind="flat", pan=0, shake=0)
    folder = out / "refs" / name
    folder.mkdir(parents=True, exist_ok=True)
    encode_video(folder / "flat.mp4", pixels, "libx264", 18, 1, bframes=0)  # all intra: every frame a reference
    still_dir = out / "stills" / name
    still_dir.mkdir(parents=True, exist_ok=True)
    for i in range(stills):
        radiance = _scene_field("flat", rng, *k.shape, sensor)
        Image.fromarray(_expose(radiance, k, sensor, rng)).save(still_dir / f"flat_{i:02d}.png")
    return {"video": str((folder / "flat.mp4").relative_to(out)), "stills": str(still_dir.relative_to(out))}


__all__ = ["VIDEO_VARIANTS", "codecs_available", "encode_video", "make_video_dataset", "render_frames"]

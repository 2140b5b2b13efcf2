"""Videos in ``camid cluster`` and ``camid library search`` on synthetic videos: clusters of videos and stills,
and library identification and false rates per variant and CRF, with seconds per video (CPU).

    python bench/measure_video_rows.py --height 480 --width 640 --cameras 3 \
        --out bench/results/cpu-video-rows-<date>.json

Library: each camera's fingerprint from its reference video (``refs/``) added to a library; every disputed video
(plain and stabilised, CRF 23 and 30, and the unknown camera's) searched with the default zero-shift screen and
with ``--shift-range 16`` (same-size cameras confirmed unscreened, frames aligned). Cluster: per camera two plain
videos and three natural stills of the frame size, PRNU ``--prnu`` (the clustering tests use 3 %).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

from PIL import Image

from camid_gpu.cli import main as camid
from camid_gpu.cluster import ClusterParams, cluster_images
from camid_gpu.config import Params, RunConfig
from camid_gpu.datasets.sensor import camera_prnu, rng_for
from camid_gpu.datasets.synthetic import SensorModel
from camid_gpu.datasets.video import _expose, _scene_field, encode_video, make_video_dataset, render_frames
from camid_gpu.library.manage import add_stores, init_library
from camid_gpu.library.search import search_library

CONFIG = RunConfig(backend="numpy", progress=False)


def library_part(root: str, frame: tuple[int, int], cameras: int, frames: int) -> dict:
    truth = make_video_dataset(os.path.join(root, "data"), cameras=cameras, frame=frame, frames=frames,
                               crfs=(23, 30), gops=(10,), variants=("plain", "stabilised"), ref_frames=16, stills=0,
                               seed=7)
    assert camid(["fingerprint", os.path.join(root, "data", "refs"), "-o", os.path.join(root, "fp"), "--method",
                  "pce", "--quiet", "--backend", "numpy"]) == 0
    lib = os.path.join(root, "LIB")
    init_library(lib)
    add_stores(lib, [os.path.join(root, "fp")], case="bench", label="video refs")
    inputs = [os.path.join(root, "data", v["path"]) for v in truth["videos"]]
    camera_of = {os.path.join(root, "data", v["path"]): v for v in truth["videos"]}
    out = {}
    for label, params in (("zero-shift screen", Params()), ("--shift-range 16", Params(shift_range=(16, 16)))):
        t0 = time.perf_counter()
        _, records = search_library(lib, inputs, os.path.join(root, f"run-{len(out)}"), params, CONFIG)
        seconds = time.perf_counter() - t0
        table: dict = {}
        for r in records:
            v = camera_of[r["path"]]
            key = f"{'unknown' if v['camera'] == 'unknown' else 'own'} {v['variant']} crf{v['crf']}"
            row = table.setdefault(key, {"videos": 0, "named_right": 0, "named_wrong": 0, "errors": 0,
                                         "shortlisted_right": 0, "pce_right": []})
            row["videos"] += 1
            if r.get("error"):
                row["errors"] += 1
                continue
            decision = r["pce"]["decision"]
            row["named_right"] += decision == v["camera"]
            row["named_wrong"] += decision is not None and decision != v["camera"]
            row["shortlisted_right"] += any(s["camera"] == v["camera"] for s in r["library"]["shortlist"])
            own = r["pce"]["scores"].get(v["camera"], {}).get("pce")
            if own is not None:
                row["pce_right"].append(round(own, 1))
        out[label] = {"seconds": round(seconds, 1), "seconds_per_video": round(seconds / len(records), 2),
                      "by_set": table}
    return out


def cluster_part(root: str, frame: tuple[int, int], cameras: int, frames: int, prnu: float) -> dict:
    sensor = SensorModel(prnu_std=prnu, natural_level_range=(0.3, 0.6))
    truth = {}
    for c in range(cameras):
        folder = os.path.join(root, "in", f"cam{c}")
        os.makedirs(folder)
        k = camera_prnu(c, *frame, 13, sensor)
        for v in range(2):
            pixels, _ = render_frames(k, frame, frames, "plain", rng_for(13, 90, c, v), sensor, shake=0)
            encode_video(os.path.join(folder, f"clip{v}.mp4"), pixels, crf=23, gop=10)
        rng = rng_for(13, 91, c)
        for s in range(3):
            Image.fromarray(_expose(_scene_field("natural", rng, *frame, sensor), k, sensor, rng)).save(
                os.path.join(folder, f"still{s}.png"))
        truth[f"cam{c}"] = sorted(os.listdir(folder))
    t0 = time.perf_counter()
    result = cluster_images([os.path.join(root, "in")], os.path.join(root, "run"), ClusterParams(region=None), CONFIG)
    seconds = time.perf_counter() - t0
    found = sorted(sorted(os.path.relpath(m["path"], os.path.join(root, "in")) for m in c["members"])
                   for c in result["clusters"])
    expected = sorted(sorted(f"{cam}/{f}" for f in files) for cam, files in truth.items())
    return {"prnu": prnu, "seconds": round(seconds, 1), "clusters": found, "equal_to_truth": found == expected,
            "timings_s": result.get("timings_s")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--frames", type=int, default=30, help="frames per video (GOP 10: frames / 10 keyframes)")
    ap.add_argument("--prnu", type=float, nargs="+", default=[0.03, 0.008])
    ap.add_argument("--work", default="/tmp/camid-video-rows")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    frame = (args.height, args.width)
    result = {"frame": list(frame), "cameras": args.cameras, "frames": args.frames, "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "backend": "numpy (CPU)",
              "library": library_part(os.path.join(args.work, "lib"), frame, args.cameras, args.frames),
              "cluster": [cluster_part(os.path.join(args.work, f"cluster-{p}"), frame, args.cameras, args.frames, p)
                          for p in args.prnu]}
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

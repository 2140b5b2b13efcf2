"""Video identification on synthetic videos (camid synth --videos): identification and false rates per variant
and CRF, and frames per second decoded and pooled on this machine's CPU.

    python bench/measure_video.py --height 720 --width 1280 --frames 300 --cameras 3 --per-setting 2 \
        --out bench/results/cpu-video-720p-<date>.json

Every camera's plain and stabilised videos are matched against fingerprints from its reference video
(``refs/``), the hybrid videos against fingerprints from the still flats of the larger sensor (``stills/``);
the unknown camera's videos against both (a decision there is a false identification).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

from camid_gpu.backend import get_backend
from camid_gpu.cli import main as camid
from camid_gpu.config import Params, RunConfig
from camid_gpu.datasets.video import make_video_dataset
from camid_gpu.engine.context import run_context
from camid_gpu.io.video import VideoReader
from camid_gpu.pipeline.video import HybridCache, VideoOptions, identify_video
from camid_gpu.store import load_store


def decode_rate(path: str, selection: str) -> dict:
    """Frames kept, seconds (hash, probe and decode), and the stream's frames covered per second."""
    t0 = time.perf_counter()
    with VideoReader(path, selection=selection) as video:
        n = sum(1 for _ in video.frames())
        total = video.info.frames_in_stream
    s = time.perf_counter() - t0
    return {"frames_kept": n, "seconds": round(s, 3), "kept_per_s": round(n / s, 2),
            "stream_frames_per_s": round(total / s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--gop", type=int, default=30)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--per-setting", type=int, default=1)
    ap.add_argument("--crfs", default="23,30")
    ap.add_argument("--variants", default="plain,stabilised,hybrid")
    ap.add_argument("--work", default="/tmp/camid-video-bench")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    crfs = [int(c) for c in args.crfs.split(",")]
    t0 = time.perf_counter()
    truth = make_video_dataset(os.path.join(args.work, "data"), cameras=args.cameras,
                               frame=(args.height, args.width), frames=args.frames, crfs=crfs, gops=(args.gop,),
                               variants=args.variants.split(","), per_setting=args.per_setting,
                               ref_frames=30, stills=15, seed=11)
    made = time.perf_counter() - t0
    for refs, out in (("refs", "fpv"), ("stills", "fps")):
        assert camid(["fingerprint", os.path.join(args.work, "data", refs), "-o", os.path.join(args.work, out),
                      "--method", "pce", "--quiet", "--overwrite"]) == 0
    ctx = run_context(RunConfig())
    bk = get_backend("numpy", dtype="float32")
    stores = {name: load_store(os.path.join(args.work, name)) for name in ("fpv", "fps")}
    caches = {name: HybridCache() for name in stores}
    rows = []
    for video in truth["videos"]:
        path = os.path.join(args.work, "data", video["path"])
        store = "fps" if video["variant"] == "hybrid" else "fpv"
        t = time.perf_counter()
        record = identify_video(bk, stores[store], path, Params(), VideoOptions(), None, ctx.fingerprint_batch,
                                caches[store])
        seconds = time.perf_counter() - t
        own = record["pce"]["scores"].get(video["camera"], {})
        rows.append({"path": video["path"], "camera": video["camera"], "variant": video["variant"],
                     "crf": video["crf"], "store": store, "decision": record["pce"]["decision"],
                     "best_pce": record["pce"]["best_pce"], "own_pce": own.get("pce"),
                     "frames_pooled": len(record["frames"]), "seconds": round(seconds, 3),
                     "stabilisation_detected": own.get("stabilisation_detected"),
                     "scale": own.get("scale"), "offset": own.get("offset")})
        print(json.dumps(rows[-1]), flush=True)
    sample = os.path.join(args.work, "data", truth["videos"][0]["path"])
    speed = {}
    for selection in ("i", "all"):
        speed[f"decode_{selection}"] = decode_rate(sample, selection)
    summary = {}
    for variant in sorted({r["variant"] for r in rows}):
        for crf in crfs:
            own = [r for r in rows if r["variant"] == variant and r["crf"] == crf and r["camera"] != "unknown"]
            other = [r for r in rows if r["variant"] == variant and r["crf"] == crf and r["camera"] == "unknown"]
            if not own:
                continue
            summary[f"{variant} crf{crf}"] = {
                "identified": sum(r["decision"] == r["camera"] for r in own), "videos": len(own),
                "wrong_camera": sum(r["decision"] not in (None, r["camera"]) for r in own),
                "unknown_videos": len(other), "unknown_false": sum(r["decision"] is not None for r in other),
                "min_own_pce": min(r["own_pce"] for r in own),
                "max_unknown_pce": max((r["best_pce"] for r in other), default=None),
                "seconds_per_video": round(sum(r["seconds"] for r in own + other) / len(own + other), 2),
                "frames_pooled": own[0]["frames_pooled"]}
    pooled = [r for r in rows if r["variant"] != "hybrid"]
    speed["identify_pooled_frames_per_s"] = round(sum(r["frames_pooled"] for r in pooled)
                                                  / sum(r["seconds"] for r in pooled), 2)
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "backend": "numpy float32"},
              "frame": [args.height, args.width], "frames": args.frames, "gop": args.gop,
              "cameras": args.cameras, "per_setting": args.per_setting, "dataset_seconds": round(made, 1),
              "summary": summary, "speed": speed, "videos": rows}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({"summary": summary, "speed": speed}, indent=1))


if __name__ == "__main__":
    main()

"""Video options of the command line: ``--frames`` (identify, fingerprint) and ``camid synth --videos``."""
from __future__ import annotations

import argparse
import os
import time
from typing import Any

from camid_gpu import config as cfg


def add_frames_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", default=cfg.VIDEO_FRAMES, metavar="i|all|N",
                   help="video inputs: which frames are used: i = intra-coded frames only (only keyframes are "
                        "decoded; default), all, or N = at most N frames (intra first, then P, then B)")


def add_synth_video_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("videos (--videos: synthetic videos instead of still images)")
    g.add_argument("--videos", action="store_true",
                   help="write synthetic videos: refs/<camera>/flat.mp4, stills/<camera>/ (still sensor flats), "
                        "disputed/<camera>/<variant>-<codec>-crf<C>-g<G>-<n>.mp4 (plain, stabilised, hybrid) and "
                        "an 'unknown' camera; --height/--width give the video frame")
    g.add_argument("--video-frames", type=int, default=30, help="frames per disputed video")
    g.add_argument("--crf", default="23", help="CRFs, comma-separated (e.g. 23,30)")
    g.add_argument("--gop", default="10", help="GOP lengths (keyframe intervals), comma-separated")
    g.add_argument("--codecs", default="libx264", help="encoders, comma-separated: libx264, libx265")
    g.add_argument("--variants", default="plain,stabilised,hybrid", help="video variants, comma-separated")
    g.add_argument("--per-setting", type=int, default=1, help="videos per camera, variant, codec, CRF and GOP")


def video_options_of(args: argparse.Namespace) -> Any:
    """The :class:`~camid_gpu.pipeline.video.VideoOptions` of a command (defaults when it has no --frames)."""
    from camid_gpu.pipeline.video import VideoOptions

    return VideoOptions(frames=getattr(args, "frames", cfg.VIDEO_FRAMES))


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise ValueError(f"--{name} must be comma-separated integers, got {text!r}")
    return values


def synth_videos(args: argparse.Namespace) -> str:
    """``camid synth --videos``: the dataset; returns the line printed."""
    from camid_gpu.datasets.video import make_video_dataset

    t0 = time.perf_counter()
    truth = make_video_dataset(args.outdir, cameras=args.cameras, frame=(args.height, args.width),
                               frames=args.video_frames, crfs=_ints(args.crf, "crf"), gops=_ints(args.gop, "gop"),
                               codecs=[c.strip() for c in args.codecs.split(",") if c.strip()],
                               variants=[v.strip() for v in args.variants.split(",") if v.strip()],
                               per_setting=args.per_setting, seed=args.seed)
    return (f"wrote {len(truth['videos'])} videos of {len(truth['refs'])} cameras (+ unknown) to {args.outdir} in "
            f"{time.perf_counter() - t0:.1f} s (ground truth: {os.path.join(args.outdir, 'ground_truth.json')})")

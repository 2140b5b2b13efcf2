"""Residual throughput: 1000x1000 green clippings per second, per backend and batch size.

Prints one JSON object (``--json-out`` also writes it) and a table. The ratio torch/numpy is
measured in the same run. Not collected by pytest.

    python bench/bench_residual.py [--size 1000] [--batches 1 8 32] [--repeat 3] [--wiener]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import numpy as np

from camid_gpu.backend import get_backend, torch_cuda_available
from camid_gpu.residual import residual_native, wiener_dft


def device_name(bk) -> str:
    if bk.name == "torch" and bk.device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(bk.torch_device)
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def time_backend(bk, images: np.ndarray, batch: int, repeat: int, wiener: bool) -> float:
    """Best-of-``repeat`` images/s for residuals of ``images`` in batches of ``batch``."""
    def run():
        for start in range(0, images.shape[0], batch):
            res = residual_native(bk, images[start:start + batch], sigma=3.0)
            if wiener:
                res = wiener_dft(bk, res)
        bk.synchronize()

    run()  # warm-up: filter construction, FFT plans, kernel compilation
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return images.shape[0] / best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--images", type=int, default=None, help="images per timing (default: 2x largest batch)")
    ap.add_argument("--wiener", action="store_true", help="include WienerInDFT")
    ap.add_argument("--backends", nargs="+", default=None, help="e.g. numpy torch:cpu torch:cuda")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)

    specs = args.backends or (["numpy", "torch:cpu"] + (["torch:cuda"] if torch_cuda_available() else []))
    n = args.images or 2 * max(args.batches)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, args.size, args.size), dtype=np.uint8)
    rows = []
    for spec in specs:
        name, _, device = spec.partition(":")
        try:
            bk = get_backend(name, device=device or None)
        except Exception as exc:  # a missing extra is reported, not fatal
            print(f"skip {spec}: {exc}", file=sys.stderr)
            continue
        for batch in args.batches:
            rate = time_backend(bk, images, batch, args.repeat, args.wiener)
            rows.append({"backend": spec, "device": device_name(bk), "batch": batch, "images_per_s": rate})
            print(f"{spec:12s} batch {batch:3d}: {rate:8.2f} img/s", file=sys.stderr)
    base = {r["batch"]: r["images_per_s"] for r in rows if r["backend"] == "numpy"}
    for r in rows:
        r["ratio_vs_numpy"] = r["images_per_s"] / base[r["batch"]] if r["batch"] in base else None
    result = {"benchmark": "residual", "clip": [args.size, args.size], "wiener": args.wiener, "images": n,
              "commit": git_commit(), "date": time.strftime("%Y-%m-%d"), "host": platform.node(), "rows": rows}
    print(json.dumps(result, indent=1))
    print(f"\n{'backend':12s} {'device':28s} {'batch':>5s} {'img/s':>10s} {'x numpy':>8s}")
    for r in rows:
        ratio = f"{r['ratio_vs_numpy']:.2f}" if r["ratio_vs_numpy"] else "-"
        print(f"{r['backend']:12s} {r['device'][:28]:28s} {r['batch']:5d} {r['images_per_s']:10.2f} {ratio:>8s}")
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

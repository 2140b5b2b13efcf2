"""Blind clustering throughput: image pairs per second of the tiled NCC Gram, per backend and N, the
FLOP bound measured on the same device, how the cost grows with N, and the time split of a whole run.

Prints one JSON object (``--json-out`` also writes it) and tables. Not collected by pytest.

    python bench/bench_cluster.py [--n 500 2000 10000] [--region 1024] [--backends numpy torch:cpu torch:cuda]
                                  [--budget 8G] [--run-images 60] [--threads T] [--json-out FILE]

Products: every pair of N rows of ``region^2`` pixels (what ``camid cluster`` multiplies for N images
of one geometry), in the tiles the memory budget allows, with the precision camid picks (float16 on
CUDA, float32 elsewhere). The rows come from a pool of 64 random residual-like rows (the cost of a
product does not depend on the values), so N = 10,000 needs no 40 GB of residuals; the upload of every
tile from host memory is timed, as in a real run where the residuals do not fit on the device.
``bound``: the rate of one large square product in the same precision on the same device, measured in
the same run (what the tiles could reach at best). ``exponent``: slope of log time against log N
(2.0 = quadratic, as all pairs must be).

Whole run (``--run-images``, 0 to skip): a synthetic set of natural images clustered end to end on the
first backend, with the time split into residuals, products, PCE confirmation and clustering.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from bench_residual import add_common_options, backends_from_specs, device_name, run_info, set_threads, write_json
from camid_gpu.backend import torch_cuda_available
from camid_gpu.cluster.similarity import GramEngine, gram_matrix, normalise_rows, resolve_precision, tile_rows
from camid_gpu.config import parse_bytes

POOL = 64


def pooled_rows(pixels: int, seed: int = 0):
    """A row source serving N rows from a pool of POOL random Laplacian (residual-like) rows."""
    pool = normalise_rows(np.random.default_rng(seed).laplace(size=(POOL, pixels)).astype(np.float32))
    return lambda a, b: pool[np.arange(a, b) % POOL]


def products_flops(n: int, tile: int, pixels: int) -> float:
    """FLOPs of the tiled upper-triangular Gram (diagonal tiles computed in full)."""
    bounds = [min(s + tile, n) - s for s in range(0, n, tile)]
    macs = sum(bounds[i] * bounds[j] for i in range(len(bounds)) for j in range(i, len(bounds)))
    return 2.0 * macs * pixels


def time_products(bk, precision: str, n: int, pixels: int, budget: int) -> dict:
    engine = GramEngine(bk, precision)
    tile = tile_rows(pixels, budget, 2 if precision == "float16" else 4)
    rows = pooled_rows(pixels)
    gram_matrix(rows, min(n, tile), engine, tile)  # warm-up: BLAS/cuBLAS handles, allocator
    bk.synchronize()
    t0 = time.perf_counter()
    gram_matrix(rows, n, engine, tile)
    bk.synchronize()
    seconds = time.perf_counter() - t0
    pairs = n * (n - 1) // 2
    return {"N": n, "pixels": pixels, "tile": tile, "precision": precision, "seconds": seconds,
            "pairs_per_s": pairs / seconds, "tflops": products_flops(n, tile, pixels) / seconds / 1e12}


def time_bound(bk, precision: str, pixels: int, rows: int = 1024) -> float:
    """TFLOP/s of one (rows x pixels) x (pixels x rows) product on the device, inputs already there."""
    engine = GramEngine(bk, precision)
    block = pooled_rows(pixels, 1)(0, rows)
    a = engine.upload(block)
    engine.product(a, a)
    bk.synchronize()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a.T  # numpy array or torch tensor: the product alone, no copy back
        bk.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * rows * rows * pixels / best / 1e12


def whole_run(spec: str, images: int, region: int) -> dict:
    """Cluster a synthetic set end to end and return the time split."""
    from camid_gpu.cluster import ClusterParams, cluster_images
    from camid_gpu.config import RunConfig
    from camid_gpu.datasets.synthetic import SensorModel, make_dataset

    name, _, device = spec.partition(":")
    cameras = max(2, images // 10)
    with tempfile.TemporaryDirectory(prefix="camid-bench-cluster-") as tmp:
        make_dataset(os.path.join(tmp, "d"), cameras=cameras, per_model=2, refs=1, disputed_flat=0,
                     disputed_natural=max(1, images // cameras), height=region, width=region + region // 4,
                     jpeg_quality=90, seed=1, sensor=SensorModel(prnu_std=0.03, natural_level_range=(0.3, 0.6)))
        t0 = time.perf_counter()
        result = cluster_images([os.path.join(tmp, "d", "disputed")], os.path.join(tmp, "run"),
                                ClusterParams(region=region), RunConfig(backend=name, device=device or None,
                                                                        progress=False))
        total = time.perf_counter() - t0
    return {"backend": spec, "images": sum(g["images"] for g in result["groups"]), "region": region,
            "clusters": len(result["clusters"]), "seconds": total, "split_s": result["timings_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[250, 500], help="images (rows) per Gram")
    ap.add_argument("--region", type=int, default=1024, help="side of the compared square (pixels = side^2)")
    ap.add_argument("--budget", default="2G", help="device memory budget for the tiles (default 2G)")
    ap.add_argument("--backends", nargs="+", default=None, help="e.g. numpy torch:cpu torch:cuda")
    ap.add_argument("--run-images", type=int, default=40, help="images of the end-to-end run (0: skip)")
    ap.add_argument("--run-region", type=int, default=512, help="region of the end-to-end run")
    add_common_options(ap)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    budget = parse_bytes(args.budget)
    pixels = args.region * args.region
    specs = args.backends or (["numpy", "torch:cpu"] + (["torch:cuda"] if torch_cuda_available() else []))
    rows, bounds, fits = [], {}, []
    for spec, bk in backends_from_specs(specs):
        precision = resolve_precision(bk, "auto")
        bounds[spec] = time_bound(bk, precision, pixels)
        for n in args.n:
            r = time_products(bk, precision, n, pixels, budget)
            r.update(backend=spec, device=device_name(bk), bound_fraction=r["tflops"] / bounds[spec])
            rows.append(r)
            print(f"{spec:11s} N={n:6d}: {r['seconds']:9.2f} s, {r['pairs_per_s']:12.0f} pairs/s", file=sys.stderr)
        sel = [r for r in rows if r["backend"] == spec]
        if len({r["N"] for r in sel}) > 1:
            slope = float(np.polyfit(np.log([r["N"] for r in sel]), np.log([r["seconds"] for r in sel]), 1)[0])
            fits.append({"backend": spec, "exponent": slope})
    split = whole_run(specs[0], args.run_images, args.run_region) if args.run_images else None
    result = {"benchmark": "cluster_gram", "region": args.region, "budget": budget, **run_info(), "rows": rows,
              "bound_tflops": bounds, "fits": fits, "whole_run": split}
    print(json.dumps(result, indent=1))
    print(f"\n{'backend':11s} {'prec':7s} {'N':>6s} {'tile':>5s} {'s':>9s} {'pairs/s':>12s} {'TFLOP/s':>8s} "
          f"{'of bound':>8s}")
    for r in rows:
        print(f"{r['backend']:11s} {r['precision']:7s} {r['N']:6d} {r['tile']:5d} {r['seconds']:9.2f} "
              f"{r['pairs_per_s']:12.0f} {r['tflops']:8.3f} {r['bound_fraction']:8.0%}")
    for f in fits:
        print(f"{f['backend']:11s} time grows as N^{f['exponent']:.2f}")
    if split:
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in split["split_s"].items())
        print(f"\nwhole run on {split['backend']}: {split['images']} images, region {split['region']}, "
              f"{split['clusters']} clusters in {split['seconds']:.1f} s ({parts})")
    write_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

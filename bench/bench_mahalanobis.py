"""Method-2 pair statistics: time vs D disputed images x C cameras x N pixels, per backend.

Times :func:`camid_gpu.mahalanobis.statistics.pair_statistics` (covariances of the trace differences and the
pairwise "closer-or-equal" counts that membership is built from) on random traces, over three
grids that vary one of D, C, N while the other two stay at ``--fixed``; each backend runs its
generic twin and, on CUDA with CuPy, the fused kernel ``camid_gpu/kernels/mahalanobis.cu``. Prints one JSON
object (``--json-out`` also writes it) and a table. Not collected by pytest.

    python bench/bench_mahalanobis.py [--d 1 2 4 8] [--c 2 4 8 16] [--n 250000 500000 1000000]
                                      [--fixed 4 4 1000000] [--repeat 3] [--natural]
                                      [--backends numpy torch:cpu torch:cuda] [--threads T]
                                      [--json-out FILE]

What the numbers mean. The covariances cost O(D*C*N); the pairwise counts compare, for every pixel,
each camera q with every camera j, so they cost O(D*C*C*N). Per grid the script fits
``log t = a + s * log x`` and prints the exponent ``s`` (1.0 = linear in that axis; C sits between
1 and 2 depending on how much of the time the pairwise part takes), and per row the time per D*C*N
element (ns) and per D*C*C*N pair-pixel (ns). ``--natural`` adds the aligned-mode pixel selection
(a (D, C, N) mask), as for natural disputed images.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_residual import (add_common_options, backends_from_specs, device_name, run_info, set_threads,  # noqa: E402
                            write_json)

from camid_gpu import mahalanobis as maha  # noqa: E402
from camid_gpu.backend import torch_cuda_available  # noqa: E402
from camid_gpu.mahalanobis.statistics import MAHALANOBIS_KERNEL  # noqa: E402


def make_inputs(bk, d: int, c: int, n: int, natural: bool, seed: int = 0):
    """Random traces: I0 around a flat level, PRNU-like noise; fingerprints near each other."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(100, 160, (c, 1, 1)).astype(np.float32)
    prints = np.concatenate([level + rng.normal(0, 4, (c, 1, n)), rng.normal(0, 1, (c, 1, n))], 1)
    disputed = np.concatenate([rng.uniform(100, 160, (d, 1, 1)) + rng.normal(0, 6, (d, 1, n)),
                               rng.normal(0, 1.2, (d, 1, n))], 1)
    t, f = bk.asarray(disputed.astype(np.float32)), bk.asarray(prints.astype(np.float32))
    mask = maha.select_aligned(bk, t, maha.intensity_limits(bk, f)) if natural else None
    return t, f, mask


def time_pairs(bk, t, f, mask, use_kernel: bool, repeat: int) -> float:
    """Best-of-``repeat`` seconds of one pair_statistics call (results are on the host when it returns)."""
    maha.pair_statistics(bk, t, f, mask, use_kernel=use_kernel)  # warm-up: compilation, allocator
    bk.synchronize()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        maha.pair_statistics(bk, t, f, mask, use_kernel=use_kernel)
        bk.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def fit_exponent(xs, ts) -> float | None:
    """Least-squares slope of log t against log x (None with fewer than two distinct x)."""
    xs, ts = np.log(np.asarray(xs, float)), np.log(np.asarray(ts, float))
    if len(set(xs.tolist())) < 2:
        return None
    return float(np.polyfit(xs, ts, 1)[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, nargs="+", default=[1, 2, 4, 8], help="disputed images (grid)")
    ap.add_argument("--c", type=int, nargs="+", default=[2, 4, 8, 16], help="cameras (grid)")
    ap.add_argument("--n", type=int, nargs="+", default=[250_000, 500_000, 1_000_000], help="pixels (grid)")
    ap.add_argument("--fixed", type=int, nargs=3, default=[4, 4, 1_000_000], metavar=("D", "C", "N"),
                    help="values of the axes not being varied (default 4 4 1000000)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--natural", action="store_true", help="aligned-mode selection mask (natural images)")
    ap.add_argument("--backends", nargs="+", default=None, help="e.g. numpy torch:cpu torch:cuda")
    add_common_options(ap)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    if min(args.d + args.c + args.n + args.fixed) < 1 or args.repeat < 1:
        ap.error("sizes and --repeat must be positive")

    specs = args.backends or (["numpy", "torch:cpu"] + (["torch:cuda"] if torch_cuda_available() else []))
    d0, c0, n0 = args.fixed
    points = ([("D", (d, c0, n0)) for d in args.d] + [("C", (d0, c, n0)) for c in args.c]
              + [("N", (d0, c0, n)) for n in args.n])
    rows, fits = [], []
    for spec, bk in backends_from_specs(specs):
        device = bk.cuda_kernel_device()
        fused = device is not None and MAHALANOBIS_KERNEL.on(device) is not None
        impls = [("twin", False)] + ([("fused", True)] if fused else [])
        for impl, use_kernel in impls:
            for axis, (d, c, n) in points:
                if impl == "fused" and c > maha.FUSED_MAX_CAMERAS:
                    continue
                t, f, mask = make_inputs(bk, d, c, n, args.natural)
                seconds = time_pairs(bk, t, f, mask, use_kernel, args.repeat)
                del t, f, mask
                rows.append({"backend": spec, "device": device_name(bk), "impl": impl, "axis": axis, "D": d, "C": c,
                             "N": n, "seconds": seconds, "ns_per_dcn": seconds * 1e9 / (d * c * n),
                             "ns_per_dccn": seconds * 1e9 / (d * c * c * n)})
                print(f"{spec:11s} {impl:5s} D={d:3d} C={c:3d} N={n:9d}: {seconds * 1e3:10.2f} ms", file=sys.stderr)
            for axis, key in (("D", "D"), ("C", "C"), ("N", "N")):
                sel = [r for r in rows if r["backend"] == spec and r["impl"] == impl and r["axis"] == axis]
                fits.append({"backend": spec, "impl": impl, "axis": axis,
                             "exponent": fit_exponent([r[key] for r in sel], [r["seconds"] for r in sel])})
    twin_time = {(r["backend"], r["axis"], r["D"], r["C"], r["N"]): r["seconds"] for r in rows if r["impl"] == "twin"}
    for r in rows:
        base = twin_time.get((r["backend"], r["axis"], r["D"], r["C"], r["N"]))
        r["speedup_vs_twin"] = base / r["seconds"] if base else None
    result = {"benchmark": "mahalanobis_pair_statistics", "natural": args.natural, "fixed": {"D": d0, "C": c0, "N": n0},
              "repeat": args.repeat, **run_info(), "rows": rows, "fits": fits}
    print(json.dumps(result, indent=1))
    print(f"\n{'backend':11s} {'impl':5s} {'axis':4s} {'D':>3s} {'C':>3s} {'N':>9s} {'ms':>10s} "
          f"{'ns/DCN':>8s} {'ns/DCCN':>8s} {'x twin':>7s}")
    for r in rows:
        speed = f"{r['speedup_vs_twin']:.2f}" if r["speedup_vs_twin"] else "-"
        print(f"{r['backend']:11s} {r['impl']:5s} {r['axis']:4s} {r['D']:3d} {r['C']:3d} {r['N']:9d} "
              f"{r['seconds'] * 1e3:10.2f} {r['ns_per_dcn']:8.2f} {r['ns_per_dccn']:8.2f} {speed:>7s}")
    print(f"\n{'backend':11s} {'impl':5s} exponent of time in D, C, N (1.0 = linear)")
    for spec in dict.fromkeys(f["backend"] for f in fits):
        for impl in dict.fromkeys(f["impl"] for f in fits if f["backend"] == spec):
            exps = {f["axis"]: f["exponent"] for f in fits if f["backend"] == spec and f["impl"] == impl}
            text = "  ".join(f"{a}: {exps[a]:.2f}" if exps[a] is not None else f"{a}: -" for a in "DCN")
            print(f"{spec:11s} {impl:5s} {text}")
    write_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Residual throughput: 1000x1000 green clippings per second, per backend and batch size.

Prints one JSON object (``--json-out`` also writes it) and a table. Every ratio is measured in the
same run: ``x numpy`` against the NumPy backend at the same batch size, ``x loop`` against the same
backend driven one image at a time (the "loop" row: a straightforward ``for`` loop over images, a
batch of 1 per call, waiting for each result before starting the next), so it shows what batching
buys. With CUDA and CuPy, ``torch:cuda`` is timed with the fused kernels and with their torch twins
(``--kernels``). Not collected by pytest.

    python bench/bench_residual.py [--size 1000] [--batches 1 8 32] [--repeat 3] [--wiener]
                                   [--backends numpy torch:cpu torch:cuda] [--kernels both|on|off]
                                   [--images N] [--threads T] [--json-out FILE]

Rates are best-of-``--repeat`` after one warm-up pass (filter construction, FFT plans, kernel
compilation are not timed). Residuals stay on the device: host->device transfer of the uint8 input is
timed, the copy of the result back is not (in camid the residual feeds PCE on the device).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from camid_gpu.backend import TorchBackend, get_backend, torch_cuda_available
from camid_gpu.prnu.residual import residual_native, wiener_dft

HERE = os.path.dirname(os.path.abspath(__file__))


def device_name(bk) -> str:
    if bk.name == "torch" and bk.device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(bk.torch_device)
    return cpu_name()


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """Short commit of the checkout this script lives in (``-dirty`` when it has local changes)."""
    try:
        commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True, cwd=HERE,
                                         stderr=subprocess.DEVNULL).strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=HERE,
                               stderr=subprocess.DEVNULL).returncode
        return commit + ("-dirty" if dirty == 1 else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_info() -> dict:
    """What every benchmark records besides its rows."""
    info = {"commit": git_commit(), "date": time.strftime("%Y-%m-%d"), "time": time.strftime("%H:%M:%S%z"),
            "host": platform.node(), "cpu": cpu_name(), "python": platform.python_version(),
            "numpy": np.__version__, "load_average": _load_average()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    try:
        from camid_gpu._cuda import loader as cuda

        info["cupy"] = cuda.cupy_available()
    except ImportError:
        pass
    return info


def write_json(result: dict, path: str | None) -> None:
    """Write the benchmark's JSON result to ``path`` (``--json-out``), if given."""
    if path:
        with open(path, "w") as handle:
            json.dump(result, handle, indent=1)


def set_threads(count: int | None) -> None:
    """``torch.set_num_threads(count)`` (CPU intra-op threads) when given and torch is installed.

    On a shared or small machine, torch's default of one thread per core can be far slower and very
    noisy when other processes compete for the cores; ``--threads 1`` gives steadier CPU figures.
    """
    if count is None:
        return
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(count)


def add_common_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (torch.set_num_threads; default: torch's own choice)")
    ap.add_argument("--json-out", default=None, help="also write the JSON object to this file")


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine skews CPU figures."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def backends_from_specs(specs):
    """Yield ``(spec, backend)`` for ``numpy``, ``torch:cpu``, ``torch:cuda[:N]`` specs; a backend that
    cannot be made (missing extra, no device) is reported on stderr and skipped."""
    for spec in specs:
        name, _, device = spec.partition(":")
        try:
            bk = get_backend(name, device=device or None)
        except Exception as exc:  # a missing extra is reported, not fatal
            print(f"skip {spec}: {exc}", file=sys.stderr)
            continue
        yield spec, bk


def make_backends(specs, kernels: str):
    """``[(label, backend, kernels_flag)]`` for ``numpy``, ``torch:cpu``, ``torch:cuda[:N]`` specs.

    On CUDA with CuPy, ``kernels`` = "on" (fused kernels), "off" (torch twins) or "both".
    A backend that cannot be made (missing extra, no device) is reported on stderr and skipped.
    """
    out = []
    for spec, bk in backends_from_specs(specs):
        fused = bk.kernel("mihcak_shrink") is not None
        if not fused:
            out.append((spec, bk, None))
            continue
        if kernels in ("on", "both"):
            out.append((f"{spec}+kernels", bk, True))
        if kernels in ("off", "both"):
            twin = TorchBackend(device=bk.device, dtype=str(bk.dtype).replace("torch.", ""), use_kernels=False)
            out.append((f"{spec}-twin", twin, False))
    return out


def time_backend(bk, images: np.ndarray, batch: int, repeat: int, wiener: bool) -> float:
    """Best-of-``repeat`` images/s for residuals of ``images`` in batches of ``batch``."""
    def run():
        for start in range(0, images.shape[0], batch):
            res = residual_native(bk, images[start:start + batch], sigma=3.0)
            if wiener:
                res = wiener_dft(bk, res)
        bk.synchronize()

    return _best_rate(run, images.shape[0], repeat)


def time_loop(bk, images: np.ndarray, repeat: int, wiener: bool) -> float:
    """Best-of-``repeat`` images/s of a plain one-image-at-a-time loop (no batching).

    Each image is sent on its own, and its residual is finished (``synchronize``) before the next
    one starts, as in a loop that uses every result before going on.
    """
    def run():
        for index in range(images.shape[0]):
            res = residual_native(bk, images[index][None], sigma=3.0)
            if wiener:
                res = wiener_dft(bk, res)
            bk.synchronize()

    return _best_rate(run, images.shape[0], repeat)


def _best_rate(run, count: int, repeat: int) -> float:
    run()  # warm-up: filter construction, FFT plans, kernel compilation
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return count / best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1000, help="clipping side in pixels (default 1000)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--images", type=int, default=None, help="images per timing (default: 2x largest batch)")
    ap.add_argument("--wiener", action="store_true", help="include WienerInDFT")
    ap.add_argument("--backends", nargs="+", default=None, help="e.g. numpy torch:cpu torch:cuda")
    ap.add_argument("--kernels", choices=("on", "off", "both"), default="both",
                    help="on CUDA with CuPy: fused kernels (on), torch twins (off) or both (default)")
    ap.add_argument("--no-loop", action="store_true", help="skip the one-image-at-a-time loop rows")
    add_common_options(ap)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    if min(args.batches) < 1 or args.repeat < 1 or args.size < 1:
        ap.error("--batches, --repeat and --size must be positive")

    specs = args.backends or (["numpy", "torch:cpu"] + (["torch:cuda"] if torch_cuda_available() else []))
    n = args.images or 2 * max(args.batches)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, args.size, args.size), dtype=np.uint8)
    rows = []
    for label, bk, kernels in make_backends(specs, args.kernels):
        modes = ([("loop", 1)] if not args.no_loop else []) + [("batched", b) for b in args.batches]
        for mode, batch in modes:
            if mode == "loop":
                rate = time_loop(bk, images, args.repeat, args.wiener)
            else:
                rate = time_backend(bk, images, batch, args.repeat, args.wiener)
            rows.append({"backend": label, "device": device_name(bk), "kernels": kernels, "mode": mode,
                         "batch": batch, "images_per_s": rate})
            print(f"{label:18s} {mode:7s} batch {batch:3d}: {rate:10.2f} img/s", file=sys.stderr)
    base = {r["batch"]: r["images_per_s"] for r in rows if r["backend"] == "numpy" and r["mode"] == "batched"}
    loops = {r["backend"]: r["images_per_s"] for r in rows if r["mode"] == "loop"}
    for r in rows:
        r["ratio_vs_numpy"] = (r["images_per_s"] / base[r["batch"]]
                               if r["mode"] == "batched" and r["batch"] in base else None)
        r["ratio_vs_loop"] = r["images_per_s"] / loops[r["backend"]] if r["backend"] in loops else None
    result = {"benchmark": "residual", "clip": [args.size, args.size], "wiener": args.wiener, "images": n,
              "repeat": args.repeat, "kernels": args.kernels, **run_info(), "rows": rows}
    print(json.dumps(result, indent=1))
    print(f"\n{'backend':18s} {'device':36s} {'mode':7s} {'batch':>5s} {'img/s':>10s} {'x numpy':>8s} "
          f"{'x loop':>7s}")
    for r in rows:
        ratio = f"{r['ratio_vs_numpy']:.2f}" if r["ratio_vs_numpy"] else "-"
        loop = f"{r['ratio_vs_loop']:.2f}" if r["ratio_vs_loop"] else "-"
        print(f"{r['backend']:18s} {r['device'][:36]:36s} {r['mode']:7s} {r['batch']:5d} "
              f"{r['images_per_s']:10.2f} {ratio:>8s} {loop:>7s}")
    write_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Residual throughput: clippings (or full frames) per second, per backend and batch size.

Prints one JSON object (``--json-out`` also writes it) and a table. Every ratio is measured in the
same run: ``x ref`` against the reference backend (``--reference``, default ``numpy:float64:reference``:
the NumPy backend's plain float64 primitives on one thread) at the same mode and batch size, ``x loop``
against the same backend driven one image at a time (the "loop" row: a straightforward ``for`` loop
over images, a batch of 1 per call, waiting for each result before starting the next), so it shows
what batching buys. With CUDA and CuPy, ``torch:cuda`` is timed with the fused kernels and with their
torch twins (``--kernels``). Not collected by pytest.

    python bench/bench_residual.py [--size 1000 | --shape H W [3]] [--batches 1 8 32] [--repeat 3]
                                   [--wiener] [--backends numpy:float64:reference numpy:float64
                                   numpy:float32 torch:cpu torch:cuda] [--reference SPEC] [--kernels both|on|off]
                                   [--images N] [--threads T] [--json-out FILE]

A backend spec is ``name[:device][:dtype]`` (``numpy:float32``, ``torch:cuda:float64``; the NumPy backend
uses its host kernels and all CPUs) or ``numpy:float64:reference`` (the plain primitives on one
thread, bit for bit the float64 code path of earlier versions). After one
warm-up pass of every row (filter construction, FFT plans, kernel compilation are not timed), the rows
are timed in turn, ``--repeat`` rounds, so that load from other processes spreads over all rows alike;
a row's rate is the median of its rounds (the best round is in the JSON). Residuals stay on the device:
host->device transfer of the uint8 input is timed, the copy of the result back is not (in camid the
residual feeds PCE on the device).
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

from camid_gpu.backend import NumpyBackend, TorchBackend, get_backend, torch_cuda_available
from camid_gpu.config import API_PRECISION
from camid_gpu.prnu.residual import MIHCAK_KERNEL, residual_native, wiener_dft

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
            "host": platform.node(), "cpu": cpu_name(), "nproc": _usable_cpus(), "python": platform.python_version(),
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


def _usable_cpus() -> int:
    """CPUs this process may run on (``nproc``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine skews CPU figures."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def parse_spec(spec: str) -> tuple[str, str | None, str | None, bool]:
    """``name[:device][:dtype][:reference]`` -> (name, device, dtype, reference), e.g. ``numpy:float32``,
    ``torch:cuda:1:float64``; ``numpy:float64:reference`` is the NumPy reference (plain primitives, one
    thread)."""
    parts = spec.split(":")
    reference = len(parts) > 1 and parts[-1] == "reference"
    if reference:
        parts.pop()
    dtype = parts.pop() if len(parts) > 1 and parts[-1] in ("float32", "float64") else None
    return parts[0], ":".join(parts[1:]) or None, dtype, reference


def backends_from_specs(specs):
    """Yield ``(spec, backend)`` for the specs of :func:`parse_spec`; a backend that cannot be made
    (missing extra, no device) is reported on stderr and skipped."""
    for spec in specs:
        name, device, dtype, reference = parse_spec(spec)
        try:
            if reference and name != "numpy":
                raise ValueError("only the numpy backend has a ':reference' variant")
            bk = (NumpyBackend(dtype or API_PRECISION["numpy"], use_kernels=False, workers=1) if reference
                  else get_backend(name, device=device, dtype=dtype))
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
        # the NumPy backend's host kernels are part of its float32 path, not an option: one row
        device = bk.cuda_kernel_device()
        fused = device is not None and MIHCAK_KERNEL.on(device) is not None
        if not fused:
            out.append((spec, bk, None))
            continue
        if kernels in ("on", "both"):
            out.append((f"{spec}+kernels", bk, True))
        if kernels in ("off", "both"):
            twin = TorchBackend(device=bk.device, dtype=str(bk.dtype).replace("torch.", ""), use_kernels=False)
            out.append((f"{spec}-twin", twin, False))
    return out


def batched_run(bk, images: np.ndarray, batch: int, wiener: bool):
    """A callable computing the residuals of ``images`` in batches of ``batch``."""
    def run():
        for start in range(0, images.shape[0], batch):
            res = residual_native(bk, images[start:start + batch], sigma=3.0)
            if wiener:
                res = wiener_dft(bk, res)
        bk.synchronize()

    return run


def loop_run(bk, images: np.ndarray, wiener: bool):
    """A callable computing residuals in a plain one-image-at-a-time loop (no batching).

    Each image is sent on its own, and its residual is finished (``synchronize``) before the next
    one starts, as in a loop that uses every result before going on.
    """
    def run():
        for index in range(images.shape[0]):
            res = residual_native(bk, images[index][None], sigma=3.0)
            if wiener:
                res = wiener_dft(bk, res)
            bk.synchronize()

    return run


def time_interleaved(runs: list, repeat: int) -> list[list[float]]:
    """Seconds of ``repeat`` rounds of every callable in ``runs``, one after the other in each round,
    after one warm-up call each (filter construction, FFT plans, kernel compilation)."""
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for k, run in enumerate(runs):
            t0 = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1000, help="square clipping side in pixels (default 1000)")
    ap.add_argument("--shape", type=int, nargs="+", default=None, metavar="N",
                    help="H W for gray or H W 3 for RGB images (overrides --size), e.g. 2000 3000 3")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds per row; the rate is their median")
    ap.add_argument("--images", type=int, default=None, help="images per timing (default: 2x largest batch)")
    ap.add_argument("--wiener", action="store_true", help="include WienerInDFT")
    ap.add_argument("--backends", nargs="+", default=None,
                    help="e.g. numpy:float64:reference numpy:float32 torch:cpu torch:cuda (name[:device][:dtype])")
    ap.add_argument("--reference", default="numpy:float64:reference",
                    help="the backend whose rows the 'x ref' ratios divide by (default: the NumPy reference)")
    ap.add_argument("--kernels", choices=("on", "off", "both"), default="both",
                    help="on CUDA with CuPy: fused kernels (on), torch twins (off) or both (default)")
    ap.add_argument("--no-loop", action="store_true", help="skip the one-image-at-a-time loop rows")
    add_common_options(ap)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    shape = tuple(args.shape) if args.shape else (args.size, args.size)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3):
        ap.error("--shape takes H W or H W 3")
    if min(args.batches) < 1 or args.repeat < 1 or min(shape) < 1:
        ap.error("--batches, --repeat and the image sides must be positive")

    specs = args.backends or (["numpy:float64:reference", "numpy:float64", "numpy:float32", "torch:cpu"]
                              + (["torch:cuda"] if torch_cuda_available() else []))
    n = args.images or 2 * max(args.batches)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    rows, runs = [], []
    for label, bk, kernels in make_backends(specs, args.kernels):
        modes = ([("loop", 1)] if not args.no_loop else []) + [("batched", b) for b in args.batches]
        for mode, batch in modes:
            runs.append(loop_run(bk, images, args.wiener) if mode == "loop"
                        else batched_run(bk, images, batch, args.wiener))
            rows.append({"backend": label, "describe": bk.describe(), "device": device_name(bk), "kernels": kernels,
                         "mode": mode, "batch": batch})
    load_start = _load_average()
    print(f"timing {len(rows)} rows x {args.repeat} interleaved rounds of {n} images {shape}", file=sys.stderr)
    for r, seconds in zip(rows, time_interleaved(runs, args.repeat)):
        r["seconds"] = seconds
        r["images_per_s"] = n / float(np.median(seconds))
        r["best_images_per_s"] = n / min(seconds)
        print(f"{r['backend']:24s} {r['mode']:7s} batch {r['batch']:3d}: {r['images_per_s']:10.2f} img/s",
              file=sys.stderr)
    base = {(r["mode"], r["batch"]): r["images_per_s"] for r in rows if r["backend"] == args.reference}
    loops = {r["backend"]: r["images_per_s"] for r in rows if r["mode"] == "loop"}
    for r in rows:
        ref = base.get((r["mode"], r["batch"]))
        r["ratio_vs_reference"] = r["images_per_s"] / ref if ref else None
        r["ratio_vs_loop"] = r["images_per_s"] / loops[r["backend"]] if r["backend"] in loops else None
    result = {"benchmark": "residual", "shape": list(shape), "clip": list(shape[:2]), "wiener": args.wiener,
              "images": n, "repeat": args.repeat, "rate": "median of interleaved rounds", "kernels": args.kernels,
              "reference": args.reference, **run_info(), "rows": rows}
    result["load_average"], result["load_average_end"] = load_start, result["load_average"]
    print(json.dumps(result, indent=1))
    print(f"\n{'backend':24s} {'device':30s} {'mode':7s} {'batch':>5s} {'img/s':>10s} {'x ref':>7s} "
          f"{'x loop':>7s}")
    for r in rows:
        ratio = f"{r['ratio_vs_reference']:.2f}" if r["ratio_vs_reference"] else "-"
        loop = f"{r['ratio_vs_loop']:.2f}" if r["ratio_vs_loop"] else "-"
        print(f"{r['backend']:24s} {r['device'][:30]:30s} {r['mode']:7s} {r['batch']:5d} "
              f"{r['images_per_s']:10.2f} {ratio:>7s} {loop:>7s}")
    write_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end identification throughput: decode + clip + residual + PCE + Mahalanobis, images/s.

Writes a synthetic set of ``--images`` N disputed JPEGs (default 12 MP: 3000 x 4000, half flat and
half natural) from ``--cameras`` C cameras with ``synth.make_dataset``, fingerprints the cameras
(not timed), then identifies the N images with both methods in two ways, each in a fresh
subprocess so that peak memory is its own:

- ``loop``: a straightforward one-image-at-a-time loop in one process (``prepare_disputed`` then
  ``identify_chunk`` on a chunk of one image, per image; no decode workers);
- ``scheduler``: ``runner.identify_files`` with ``--workers`` W decoding processes, chunks sized from
  the memory budget (what ``camid identify --workers W`` does) or ``--chunk`` K images. Decoding
  overlaps the device work only across chunks: with N at most one chunk (the memory budget allows
  dozens of 1000 x 1000 clippings per chunk), all N are decoded first and then computed at once. To
  see the steady state, use N of several chunks, e.g. ``--images 64 --chunk 8``.

With ``--decoders cpu gpu`` (default) the scheduler run is made once per JPEG decoder (``camid identify
--decode cpu|gpu``: Pillow in the decode workers, or nvJPEG on the device through torchvision, batched per
chunk), and a ``decode`` mode times decoding alone (no PRNU work): ``read_image`` one file after another
in one process for ``cpu``, batches of ``--chunk`` (default 8) files through the GPU decoder for ``gpu``
(file reading and SHA-256 included in both). GPU rows run only where the GPU decoder is available (torch
on CUDA and torchvision); elsewhere they are listed as skipped, with the reason. ``gpu decoded`` counts the
records whose pixels came from the GPU decoder (the rest fell back to the CPU).

Prints one JSON object (``--json-out`` also writes it) and a table. Not collected by pytest.

    python bench/bench_identify.py [--images 16] [--cameras 4] [--workers 4] [--height 3000 --width 4000]
                                   [--clip 1000] [--backend auto|numpy|torch] [--device cuda] [--chunk K]
                                   [--data DIR] [--repeat 1] [--threads T] [--json-out FILE]
                                   [--modes loop scheduler decode] [--decoders cpu gpu]
                                   [--geometries clip1000 full default] [--backends numpy torch]

``--geometries`` and ``--backends`` put several geometries (``clipN``: both methods on the NxN centre
clipping; ``full``: both on the full frame; ``default``: camid's defaults, PCE on the full frame and
Mahalanobis on the 1000 x 1000 clipping) and backends side by side in one run, on the same files: one row
per (geometry, backend, mode, decoder), each in its own subprocess, and a second table with each later
geometry's images/s and peak RSS over the first geometry's (same backend, mode and decoder).

Per run it reports: wall time and images/s (``x loop``: the same, relative to the loop in this run);
``compute``: the share of wall time spent inside ``identify_chunk`` (residuals, PCE, Mahalanobis: the
device work, with ``synchronize`` on both sides; on CUDA ``gpu idle`` = 1 - compute, a lower bound
as the calls include some host work); for the loop also the decode time. Peak host memory:
``ru_maxrss`` of the run's process and of its largest child (a decode worker), and, on Linux, the
peak of the summed RSS of the whole process tree sampled every 20 ms during the timed part. The
kernel's ``ru_maxrss`` never misses a peak but covers the process's whole life (imports, warm-up,
and the RSS of the small parent that started it, which Linux folds in at exec); the sampler needs the
GIL and can miss short peaks inside native code. The JSON also has ``peak_rss_self_timed_bytes``,
the process's VmHWM reset just before the timed part (Linux). The data set and the fingerprints are
made in a subprocess too, so the parent stays small. On CUDA also
``torch.cuda.max_memory_allocated`` and, when pynvml is installed, the mean GPU utilisation that
NVML reports. Decoding limits the rate when compute is well below 100 % in the scheduler run.

Timings start after a warm-up identification of one image in the same process (filters, FFT plans
and kernel compilation are not timed) and after every file has been read once (page cache warm).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_residual import add_common_options, run_info, set_threads, write_json  # noqa: E402

METHODS = ("pce", "mahalanobis")
MODES = ("loop", "scheduler", "decode")
DECODERS = ("cpu", "gpu")


# ------------------------------------------------------------------------------------------------
# memory and GPU sampling
# ------------------------------------------------------------------------------------------------
def _maxrss_bytes(who: int) -> int:
    """``ru_maxrss`` in bytes (Linux reports KiB, macOS bytes)."""
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int | None:
    """VmHWM of this process in bytes (Linux), None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                out.extend(int(c) for c in handle.read().split())
    except OSError:
        pass
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss(root: int) -> int:
    """Summed RSS of ``root`` and all its descendants (Linux /proc; 0 elsewhere)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss(pid)
        todo.extend(_children(pid))
    return total


class Sampler:
    """Background sampling of the process tree's RSS and, when NVML answers, GPU utilisation."""

    def __init__(self, gpu_index: int | None, period: float = 0.02):
        self.period, self.gpu_index = period, gpu_index
        self.peak_tree_rss = 0
        self.gpu_util: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._nvml = None
        if gpu_index is not None:
            try:
                import pynvml  # type: ignore[import-not-found]

                pynvml.nvmlInit()
                self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(gpu_index))
            except Exception:  # noqa: BLE001 - no pynvml, or no NVML: utilisation is just not reported
                self._nvml = None
        self.have_proc = os.path.exists(f"/proc/{os.getpid()}/statm")

    def _run(self):
        pid, tick = os.getpid(), 0
        while not self._stop.is_set():
            if self.have_proc:
                self.peak_tree_rss = max(self.peak_tree_rss, tree_rss(pid))
            if self._nvml is not None and tick % 5 == 0:  # NVML averages over ~1/6 s anyway
                try:
                    self.gpu_util.append(float(self._nvml[0].nvmlDeviceGetUtilizationRates(self._nvml[1]).gpu))
                except Exception:  # noqa: BLE001
                    pass
            tick += 1
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------------------------
# one timed run (in a subprocess)
# ------------------------------------------------------------------------------------------------
def run_phase(spec: dict) -> dict:
    """Identify ``spec["files"]`` in mode ``spec["mode"]``; return the measurements."""
    from camid_gpu.pipeline import identify as ident
    from camid_gpu.pipeline import prepare
    from camid_gpu.pipeline.records import error_entry
    from camid_gpu.backend import get_backend
    from camid_gpu.config import Params, RunConfig
    from camid_gpu.engine.runner import identify_files
    from camid_gpu.engine.scheduler import read_results
    from camid_gpu.store import load_store

    from camid_gpu.io.device_decode import decoder_for

    set_threads(spec.get("threads"))
    bk = get_backend(spec["backend"], device=spec["device"])
    on_cuda = bk.device.startswith("cuda")
    torch = None
    if on_cuda:
        import torch
    decode = spec.get("decode", "cpu")
    if decode == "gpu":
        try:
            from camid_gpu.io.decode import read_file_bytes

            decoder_for("gpu", bk).decode([read_file_bytes(spec["files"][0])])  # warm-up: nvJPEG's state
        except Exception as exc:  # noqa: BLE001 - no CUDA or no torchvision: the row is skipped, with why
            return {"mode": spec["mode"], "decode": decode, "skipped": f"{type(exc).__name__}: {exc}"}
    if spec["mode"] == "decode":
        return decode_phase(spec, bk)
    params = Params.from_dict(spec["params"])
    store = load_store(spec["fp_dir"], methods=METHODS)
    files = spec["files"]

    original = ident.identify_chunk
    clock = {"compute": 0.0, "decode": 0.0, "calls": 0}

    def timed_identify_chunk(*a, **k):
        bk.synchronize()
        t0 = time.perf_counter()
        out = original(*a, **k)
        bk.synchronize()
        clock["compute"] += time.perf_counter() - t0
        clock["calls"] += 1
        return out

    # warm-up (not timed): one image through both methods
    original(bk, store, [prepare.prepare_disputed(files[0], params, store[0].source_shape)], params, METHODS)
    bk.synchronize()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(bk.torch_device)
    hwm_reset = _reset_peak_rss()
    ident.identify_chunk = timed_identify_chunk  # the runner calls it through the module
    records = []
    gpu_index = bk.torch_device.index if on_cuda else None
    with tempfile.TemporaryDirectory(prefix="camid-bench-") as tmp, Sampler(gpu_index) as sampler:
        t_start = time.perf_counter()
        if spec["mode"] == "loop":
            cache: dict = {}
            for path in files:
                t0 = time.perf_counter()
                try:
                    item = prepare.prepare_disputed(path, params, store[0].source_shape)
                except Exception as exc:  # noqa: BLE001 - counted as an error, as the runner does
                    records.append(error_entry(path, exc))
                    continue
                finally:
                    clock["decode"] += time.perf_counter() - t0
                records.extend(ident.identify_chunk(bk, store, [item], params, METHODS, cache))
        else:
            config = RunConfig(backend=spec["backend"], device=spec["device"], workers=spec["workers"],
                               progress=False, chunk=spec.get("chunk"), decode=decode)
            results = os.path.join(tmp, "results.jsonl")
            identify_files(spec["fp_dir"], files, results, METHODS, params, config)
            records = read_results(results)
        wall = time.perf_counter() - t_start
    ident.identify_chunk = original
    out = {
        "mode": spec["mode"], "decode": decode, "gpu_decoded": sum(1 for r in records if r.get("decoder") == "gpu"),
        "workers": spec["workers"] if spec["mode"] == "scheduler" else 1,
        "backend": bk.describe(), "images": len(files), "errors": sum(1 for r in records if r.get("error")),
        "wall_s": wall, "images_per_s": len(files) / wall, "compute_s": clock["compute"],
        "compute_calls": clock["calls"], "images_per_call": len(files) / max(clock["calls"], 1),
        "compute_fraction": min(1.0, clock["compute"] / wall),
        "decode_s": clock["decode"] if spec["mode"] == "loop" else None,
        "maxrss_self_bytes": _maxrss_bytes(resource.RUSAGE_SELF),
        "maxrss_children_bytes": _maxrss_bytes(resource.RUSAGE_CHILDREN),
        "peak_tree_rss_bytes": sampler.peak_tree_rss or None,
        "peak_rss_self_timed_bytes": _peak_rss() if hwm_reset else None,
    }
    out["maxrss_self_plus_children_bytes"] = out["maxrss_self_bytes"] + out["maxrss_children_bytes"]
    if on_cuda:
        out["gpu_idle_fraction"] = 1.0 - out["compute_fraction"]
        out["gpu_max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(bk.torch_device))
        out["gpu_max_memory_reserved_bytes"] = int(torch.cuda.max_memory_reserved(bk.torch_device))
        out["gpu_utilization_mean"] = (sum(sampler.gpu_util) / len(sampler.gpu_util)) if sampler.gpu_util else None
    return out


def decode_phase(spec: dict, bk) -> dict:
    """Decoding alone: the CPU decoder file by file, or the GPU decoder in batches of ``chunk``."""
    from camid_gpu.io.decode import read_file_bytes, read_image
    from camid_gpu.io.device_decode import decoder_for

    files, decode = spec["files"], spec["decode"]
    batch = spec.get("chunk") or 8
    decoder = decoder_for("gpu", bk) if decode == "gpu" else None
    if decoder is not None:  # warm-up: nvJPEG handles and buffers
        decoder.decode([read_file_bytes(files[0])])
        bk.synchronize()
    t_start = time.perf_counter()
    failed = 0
    if decoder is None:
        for path in files:
            read_image(path)
    else:
        for start in range(0, len(files), batch):
            encoded = [read_file_bytes(p) for p in files[start:start + batch]]
            for data in encoded:
                hashlib.sha256(data).hexdigest()
            failed += sum(isinstance(x, BaseException) for x in decoder.decode(encoded))
        bk.synchronize()
    wall = time.perf_counter() - t_start
    return {"mode": "decode", "decode": decode, "workers": 1, "backend": bk.describe(), "images": len(files),
            "errors": failed, "gpu_decoded": len(files) - failed if decoder is not None else 0, "wall_s": wall,
            "images_per_s": len(files) / wall, "compute_s": 0.0, "compute_calls": 0,
            "images_per_call": batch if decoder is not None else 1, "compute_fraction": 0.0, "decode_s": wall,
            "maxrss_self_bytes": _maxrss_bytes(resource.RUSAGE_SELF),
            "maxrss_children_bytes": _maxrss_bytes(resource.RUSAGE_CHILDREN), "peak_tree_rss_bytes": None}


# ------------------------------------------------------------------------------------------------
# data set and fingerprints
# ------------------------------------------------------------------------------------------------
def prepare_data(args) -> tuple[str, dict]:
    """The dataset folder (made, or reused when its parameters match) and its ground truth."""
    from camid_gpu.datasets.synthetic import load_ground_truth, make_dataset

    per_camera = math.ceil(args.images / args.cameras)
    flat = per_camera // 2
    same = {"cameras": args.cameras, "refs": args.refs, "height": args.height, "width": args.width,
            "jpeg_quality": args.quality, "seed": args.seed}
    if os.path.exists(os.path.join(args.data, "ground_truth.json")):
        truth = load_ground_truth(args.data)
        got = truth["parameters"]
        if (all(got.get(k) == v for k, v in same.items()) and got.get("disputed_flat", 0) >= flat
                and got.get("disputed_natural", 0) >= per_camera - flat):
            print(f"reusing the data set in {args.data}", file=sys.stderr)
            return args.data, truth
        raise SystemExit(f"{args.data} holds a data set made with other parameters; choose another --data")
    print(f"writing {args.cameras} cameras x ({args.refs} refs + {per_camera} disputed) "
          f"{args.height}x{args.width} JPEGs to {args.data} ...", file=sys.stderr)
    t0 = time.perf_counter()
    truth = make_dataset(args.data, cameras=args.cameras, per_model=min(2, args.cameras), refs=args.refs,
                         disputed_flat=flat, disputed_natural=per_camera - flat, height=args.height,
                         width=args.width, jpeg_quality=args.quality, seed=args.seed)
    print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return args.data, truth


def disputed_files(data: str, count: int) -> list[str]:
    """``count`` disputed files, taking the cameras in turn and, within each, flat and natural in turn."""
    from camid_gpu.io.listing import list_images

    def interleaved(folder):  # flat_000, natural_000, flat_001, ...: both kinds in any prefix
        names = list_images(folder)
        return sorted(names, key=lambda p: (os.path.splitext(os.path.basename(p))[0].rpartition("_")[2], p))

    root = os.path.join(data, "disputed")
    per_camera = [interleaved(os.path.join(root, cam)) for cam in sorted(os.listdir(root))]
    files: list[str] = []
    while len(files) < count and any(per_camera):
        for cam_files in per_camera:
            if cam_files and len(files) < count:
                files.append(cam_files.pop(0))
    return files


def warm_page_cache(files) -> int:
    size = 0
    for path in files:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                size += len(chunk)
    return size


def prepare(spec: dict) -> dict:
    """Write (or reuse) the data set and fingerprint its cameras (in a subprocess, not timed)."""
    from camid_gpu.config import RunConfig
    from camid_gpu.engine.runner import fingerprint_folder

    set_threads(spec.get("threads"))
    args = argparse.Namespace(**spec)
    data, _truth = prepare_data(args)
    geometry = parse_geometry(spec.get("geometry") or (f"clip{args.clip}" if args.clip else "full"))
    params = geometry_params(geometry, args.refs, args.height, args.width)
    clip = params.pce_clip[0] if params.pce_clip and params.pce_clip == params.mahalanobis_clip else None
    print("fingerprinting (not timed) ...", file=sys.stderr)
    summary = fingerprint_folder(os.path.join(data, "refs"), spec["fp_dir"], METHODS, params,
                                 RunConfig(backend=args.backend, device=args.device, progress=False))
    if summary["errors"]:
        raise SystemExit(f"fingerprinting failed: {summary['errors']}")
    return {"files": disputed_files(data, args.images), "fp_dir": spec["fp_dir"], "clip": clip,
            "pce_clip": params.pce_clip, "mahalanobis_clip": params.mahalanobis_clip, "params": params.to_dict()}


def parse_geometry(name: str) -> str:
    """Check a ``--geometries`` name: ``clipN`` (both methods on the NxN centre clipping), ``full`` (both
    methods on the full frame) or ``default`` (camid's defaults: PCE full frame, Mahalanobis clipped)."""
    if name in ("full", "default") or (name.startswith("clip") and name[4:].isdigit() and int(name[4:]) >= 16):
        return name
    raise ValueError(f"geometry must be clipN (N >= 16), full or default, got {name!r}")


def geometry_params(name: str, refs: int, height: int, width: int):
    """The ``Params`` of geometry ``name`` (a clipping larger than the image is the whole image's side)."""
    from camid_gpu.config import Params

    if name == "default":
        return Params(refs=refs)
    if name == "full":
        return Params(clip=None, refs=refs)
    side = min(int(name[4:]), height, width)
    return Params(clip=(side, side), refs=refs)


def _child(flag: str, spec: dict, tmp: str, name: str) -> dict:
    """Run this script with ``flag SPEC.json`` in a fresh interpreter; its last stdout line is JSON."""
    path = os.path.join(tmp, f"spec-{name}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), flag, path], stdout=subprocess.PIPE,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def geometry_ratios(best: dict, geometries: list[str]) -> list[dict]:
    """Each later geometry's rate and peak RSS over the first geometry's, same backend, mode and decoder."""
    out = []
    for (geometry, backend, mode, decode), row in best.items():
        base = best.get((geometries[0], backend, mode, decode))
        if geometry == geometries[0] or base is None or mode == "decode":
            continue
        rss, base_rss = _row_peak_rss(row), _row_peak_rss(base)
        out.append({"geometry": geometry, "versus": geometries[0], "backend": backend, "mode": mode, "decode": decode,
                    "images_per_s_ratio": row["images_per_s"] / base["images_per_s"],
                    "peak_rss_ratio": rss / base_rss if rss and base_rss else None})
    return out


def _row_peak_rss(row: dict) -> int | None:
    """A row's peak host memory: the process tree's sampled peak, or ru_maxrss of the process and its
    largest child (the larger of the two: the sampler can miss short peaks, ru_maxrss cannot)."""
    candidates = [row.get("peak_tree_rss_bytes") or 0, row.get("maxrss_self_plus_children_bytes") or 0]
    return max(candidates) or None


def print_table(result: dict, args) -> None:
    rows, skipped = result["rows"], result["skipped"]
    mib = 1 / 2**20
    geos = ", ".join(f"{g['name']} (PCE {_side(g['pce_clip'])}, Mahalanobis {_side(g['mahalanobis_clip'])})"
                     for g in result["geometries"])
    print(f"\n{result['images']} images {args.height}x{args.width} JPEG, {args.cameras} cameras, both methods; "
          f"geometries: {geos}")
    print(f"{'geometry':10s} {'backend':32s} {'mode':14s} {'workers':>7s} {'chunk':>5s} {'wall s':>8s} {'img/s':>8s} "
          f"{'x loop':>7s} {'compute':>8s} {'decode s':>8s} {'gpu dec':>7s} {'RSS self':>9s} {'RSS child':>9s} "
          f"{'RSS tree':>9s} {'GPU alloc':>9s} {'GPU util':>8s}")
    for r in rows:
        tree = f"{r['peak_tree_rss_bytes'] * mib:9.0f}" if r["peak_tree_rss_bytes"] else f"{'-':>9s}"
        gpu = (f"{r['gpu_max_memory_allocated_bytes'] * mib:9.0f}" if "gpu_max_memory_allocated_bytes" in r
               else f"{'-':>9s}")
        util = f"{r['gpu_utilization_mean']:7.0f}%" if r.get("gpu_utilization_mean") is not None else f"{'-':>8s}"
        decode = f"{r['decode_s']:8.2f}" if r["decode_s"] is not None else f"{'-':>8s}"
        ratio = f"{r['ratio_vs_loop']:.2f}" if r["ratio_vs_loop"] else "-"
        print(f"{r['geometry']:10s} {r['backend']:32s} {r['mode'] + '/' + r['decode']:14s} {r['workers']:7d} "
              f"{r['images_per_call']:5.1f} {r['wall_s']:8.2f} {r['images_per_s']:8.3f} {ratio:>7s} "
              f"{100 * r['compute_fraction']:7.0f}% {decode} {r['gpu_decoded']:7d} "
              f"{r['maxrss_self_bytes'] * mib:9.0f} {r['maxrss_children_bytes'] * mib:9.0f} {tree} {gpu} {util}")
    print("(chunk = images per identify_chunk call; RSS and GPU columns in MiB; compute = share of wall time "
          "inside identify_chunk"
          + ("; GPU idle = 1 - compute)" if any("gpu_idle_fraction" in r for r in rows) else ")"))
    if result["geometry_ratios"]:
        print(f"\n{'geometry':10s} {'versus':10s} {'backend':8s} {'mode':14s} {'x img/s':>8s} {'x peak RSS':>10s}")
        for q in result["geometry_ratios"]:
            rss = f"{q['peak_rss_ratio']:10.2f}" if q["peak_rss_ratio"] else f"{'-':>10s}"
            print(f"{q['geometry']:10s} {q['versus']:10s} {q['backend']:8s} {q['mode'] + '/' + q['decode']:14s} "
                  f"{q['images_per_s_ratio']:8.2f} {rss}")
        print("(same run; peak RSS = the larger of the sampled process-tree peak and ru_maxrss self + largest child)")
    for r in skipped:
        print(f"{r['geometry']:10s} {r['backend_requested']:8s} {r['mode'] + '/' + r['decode']:14s} skipped: "
              f"{r['skipped']}")


def _side(clip) -> str:
    return f"{clip[0]}x{clip[1]}" if clip else "full"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16, help="disputed images identified per run (default 16)")
    ap.add_argument("--cameras", type=int, default=4, help="cameras (fingerprints) C (default 4)")
    ap.add_argument("--refs", type=int, default=2,
                    help="reference images per camera for the fingerprints (default 2, the least camid accepts: "
                         "not timed, and the "
                         "identification work does not depend on it)")
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--clip", type=int, default=1000,
                    help="centre clipping side (default 1000, the paper's); 0 = full frame")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality of the synthetic images")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                    help="decode processes of the scheduler run (default min(4, CPUs))")
    ap.add_argument("--geometries", nargs="+", default=None, metavar="G",
                    help="several geometries side by side in one run: clipN (both methods on the NxN centre "
                         "clipping), full (both on the full frame), default (camid's: PCE full frame, "
                         "Mahalanobis 1000x1000); rows per geometry, and each geometry's rates and peak RSS "
                         "relative to the first one's (default: the one --clip gives)")
    ap.add_argument("--backend", default="auto", choices=("auto", "numpy", "torch"))
    ap.add_argument("--backends", nargs="+", default=None, choices=("auto", "numpy", "torch"),
                    help="several backends side by side in one run (default: --backend)")
    ap.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:N")
    ap.add_argument("--chunk", type=int, default=None,
                    help="images per device chunk in the scheduler run (default: from the memory budget, as "
                         "camid identify does; with N at most one chunk, decoding and compute cannot overlap)")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--decoders", nargs="+", choices=DECODERS, default=list(DECODERS),
                    help="JPEG decoders of the scheduler and decode runs (gpu rows are skipped without CUDA "
                         "and torchvision)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode (the best is kept)")
    ap.add_argument("--data", default=None,
                    help="dataset folder: reused when it holds a data set of these parameters, else written "
                         "(default: a temporary folder, deleted afterwards)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phase-spec", default=None, help=argparse.SUPPRESS)  # internal: one timed run
    ap.add_argument("--prepare-spec", default=None, help=argparse.SUPPRESS)  # internal: data + fingerprints
    add_common_options(ap)
    args = ap.parse_args(argv)

    if args.phase_spec or args.prepare_spec:
        with open(args.phase_spec or args.prepare_spec, encoding="utf-8") as handle:
            spec = json.load(handle)
        print(json.dumps(run_phase(spec) if args.phase_spec else prepare(spec)))
        return 0
    if min(args.images, args.cameras, args.refs, args.workers, args.repeat, args.chunk or 1) < 1 or args.clip < 0:
        ap.error("--images, --cameras, --refs, --workers, --repeat and --chunk must be positive, --clip >= 0")

    # Everything heavy (rendering, fingerprinting, torch/CUDA) happens in subprocesses: Linux folds the
    # RSS of the process that starts a child into the child's ru_maxrss, so this one stays small.
    from camid_gpu.config import MIN_REFERENCES

    if args.refs < MIN_REFERENCES:  # camid refuses such fingerprints when it loads them: fail before rendering
        ap.error(f"--refs must be at least {MIN_REFERENCES} (config.MIN_REFERENCES)")
    try:
        geometries = [parse_geometry(g) for g in (args.geometries or [f"clip{args.clip}" if args.clip else "full"])]
    except ValueError as exc:
        ap.error(str(exc))
    backends = args.backends or [args.backend]
    if len(set(geometries)) != len(geometries) or len(set(backends)) != len(backends):
        ap.error("--geometries and --backends must not repeat")

    # Everything heavy (rendering, fingerprinting, torch/CUDA) happens in subprocesses: Linux folds the
    # RSS of the process that starts a child into the child's ru_maxrss, so this one stays small. Every
    # row is its own subprocess, so each row's peak RSS is its own.
    with tempfile.TemporaryDirectory(prefix="camid-bench-identify-") as tmp:
        if args.data is None:
            args.data = os.path.join(tmp, "data")
        prepared_by_geometry = {}
        for geometry in geometries:  # the data set is written once and reused; fingerprints per geometry
            prep = {k: getattr(args, k) for k in ("images", "cameras", "refs", "height", "width", "clip", "quality",
                                                  "seed", "data", "backend", "device", "threads")}
            prep.update(geometry=geometry, fp_dir=os.path.join(tmp, f"fingerprints-{geometry}"))
            prepared_by_geometry[geometry] = _child("--prepare-spec", prep, tmp, f"prepare-{geometry}")
        files = prepared_by_geometry[geometries[0]]["files"]
        file_bytes = warm_page_cache(files)
        runs, skipped = [], []
        for geometry in geometries:
            prepared = prepared_by_geometry[geometry]
            for backend in backends:
                for mode in args.modes:
                    if mode == "decode" and geometry != geometries[0]:
                        continue  # decoding alone does not depend on the geometry
                    for decode in (args.decoders if mode != "loop" else ["cpu"]):
                        for attempt in range(args.repeat):
                            spec = {"mode": mode, "decode": decode, "files": files, "fp_dir": prepared["fp_dir"],
                                    "params": prepared["params"], "backend": backend, "device": args.device,
                                    "workers": args.workers, "threads": args.threads, "chunk": args.chunk}
                            print(f"{geometry} {backend} {mode}/{decode} run {attempt + 1}/{args.repeat} ...",
                                  file=sys.stderr)
                            run = _child("--phase-spec", spec, tmp, f"{geometry}-{backend}-{mode}-{decode}-{attempt}")
                            run.update(geometry=geometry, backend_requested=backend,
                                       pce_clip=prepared["pce_clip"], mahalanobis_clip=prepared["mahalanobis_clip"])
                            if "skipped" in run:
                                print(f"  skipped: {run['skipped']}", file=sys.stderr)
                                skipped.append(run)
                                break
                            print(f"  {run['images_per_s']:.3f} img/s, compute {100 * run['compute_fraction']:.0f} %",
                                  file=sys.stderr)
                            runs.append(run)
    best = {}
    for run in runs:
        key = (run["geometry"], run["backend_requested"], run["mode"], run["decode"])
        if key not in best or run["images_per_s"] > best[key]["images_per_s"]:
            best[key] = run
    rows = list(best.values())
    for r in rows:
        loop = best.get((r["geometry"], r["backend_requested"], "loop", "cpu"))
        r["ratio_vs_loop"] = r["images_per_s"] / loop["images_per_s"] if loop and r["mode"] != "decode" else None
    ratios = geometry_ratios(best, geometries)
    clip = prepared_by_geometry[geometries[0]]["clip"]
    result = {"benchmark": "identify_end_to_end", "methods": list(METHODS), "images": len(files),
              "cameras": args.cameras, "size": [args.height, args.width],
              "geometries": [{"name": g, "pce_clip": prepared_by_geometry[g]["pce_clip"],
                              "mahalanobis_clip": prepared_by_geometry[g]["mahalanobis_clip"]} for g in geometries],
              "backends": backends, "jpeg_bytes": file_bytes, "workers": args.workers, "chunk": args.chunk,
              "repeat": args.repeat, "device": rows[0]["backend"] if rows else None, **run_info(), "rows": rows,
              "geometry_ratios": ratios, "all_runs": runs, "skipped": skipped}
    if len(geometries) == 1:  # one geometry: "clip" as before (None = full frame; gpu_suite reads it)
        result["clip"] = [clip, clip] if clip else None
    print(json.dumps(result, indent=1))
    print_table(result, args)
    write_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

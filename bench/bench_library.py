"""The fingerprint library at scale: screening pairs per second, query images per second, memory and disk per
camera, and the speed-up over exhaustive ``identify`` against the same cameras, with the same decisions.

Prints one JSON object (``--json-out`` also writes it) and a table. Not collected by pytest.

    python bench/bench_library.py [--sizes 1000 10000 100000] [--sensor 64] [--exhaustive-max 1000]
                                  [--max-host-memory 2G] [--workdir DIR] [--json-out FILE]

Cameras: 3 synthetic cameras (``camid synth``'s model, 10 flat references each) whose disputed images (``--images
FLAT NATURAL`` per camera; default 2 and 2: 12 queries) are the queries, and ``N - 3`` decoys: random fingerprints of the same sensor size (they
took none of the images). Libraries up to ``--exhaustive-max`` cameras are made the product's way (a fingerprint
store on disk, ``add_stores``: every array fsync'ed) and also searched exhaustively by ``identify_files`` on that
store, at the library's decision threshold, in the same run: the ratio of the two times and the two sets of
decisions are compared. Larger libraries are filled through ``add_entries`` from memory without the per-file
fsync (hours otherwise on a shared disk); their search is the product's.

Each search and each exhaustive run is a child process: its wall time and peak resident memory (``VmHWM``)
are its own. ``screen pairs/s``: one pass of 32 image views (a full chunk) over every screening row of the library (the batched
products and the reads from disk, without the residuals), timed in the search's process after the search.
Disk per camera: everything under the library folder divided by its cameras. The library of one size is removed
before the next is made (the disk bound of a shared machine), unless ``--keep``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_residual import run_info, write_json
from camid_gpu.config import Params, RunConfig, parse_bytes
from camid_gpu.store import CameraFingerprint, load_store, save_fingerprint
from camid_gpu.store.fingerprint import _npz_bytes

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = 3
BATCH = 5000


def decoy(n: int, shape: tuple[int, int], params: dict, refs: list) -> tuple[CameraFingerprint, bytes]:
    k = (np.random.default_rng([17, n]).standard_normal(shape) * 0.01).astype(np.float32)
    blob = _npz_bytes({"k": k})
    fp = CameraFingerprint(camera=f"D{n:06d}", methods=("pce",), arrays={"k": k}, clips={"pce": None},
                           source_shape=shape, params=params, references=refs,
                           arrays_sha256=hashlib.sha256(blob).hexdigest())
    return fp, blob


def make_data(work: str, sensor: int, args_images: tuple[int, int] = (2, 2)) -> tuple[str, str]:
    from camid_gpu.datasets.synthetic import make_dataset
    from camid_gpu.engine.runner import fingerprint_folder

    data = os.path.join(work, f"data-{sensor}")
    store = os.path.join(work, f"real-{sensor}")
    if os.path.isdir(store):  # made for an earlier row of this run
        return os.path.join(data, "disputed"), store
    make_dataset(data, cameras=REAL, per_model=1, refs=10, disputed_flat=args_images[0], disputed_natural=args_images[1],
                 height=sensor, width=sensor, jpeg_quality=95, seed=5)
    fingerprint_folder(os.path.join(data, "refs"), store, ("pce",), Params(refs=10),
                       RunConfig(backend="numpy", progress=False))
    return os.path.join(data, "disputed"), store


def build(work: str, size: int, real_store: str, exhaustive: bool) -> dict:
    """The library of ``size`` cameras (and, when ``exhaustive``, the same cameras as one store)."""
    from camid_gpu.library import add_stores, init_library
    from camid_gpu.library.manage import add_entries

    lib = os.path.join(work, f"lib-{size}")
    init_library(lib)
    real = load_store(real_store)
    shape, params, refs = real[0].source_shape, dict(real[0].params), real[0].references
    out: dict = {"library": lib}
    if exhaustive:
        store = os.path.join(work, f"store-{size}")
        shutil.copytree(real_store, store)
        for n in range(size - REAL):
            save_fingerprint(decoy(n, shape, params, refs)[0], store)
        t0 = time.perf_counter()
        add_stores(lib, [store])
        out["add_seconds"], out["add_mode"], out["store"] = time.perf_counter() - t0, "add_stores, fsync", store
    else:
        t0 = time.perf_counter()
        add_stores(lib, [real_store])
        for start in range(0, size - REAL, BATCH):
            def plan(start=start):
                entries = []
                for n in range(start, min(start + BATCH, size - REAL)):
                    fp, blob = decoy(n, shape, params, refs)
                    meta = json.dumps({"camera": fp.camera, "arrays_sha256": fp.arrays_sha256, "params": params})
                    entries.append({"fp": fp, "blob": blob, "name": fp.camera, "kind": "seized", "case_id": "bench",
                                    "label": "decoy", "source_store": "(bench, in memory)",
                                    "source_manifest_sha256": None, "metadata_json": meta,
                                    "metadata_sha256": hashlib.sha256(meta.encode()).hexdigest()})
                return entries
            add_entries(lib, plan, durable=False)
        out["add_seconds"], out["add_mode"] = time.perf_counter() - t0, "add_entries from memory, no fsync"
    out["add_cameras_per_s"] = size / out["add_seconds"]
    out["disk_bytes"] = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(lib) for f in fs)
    return out


def child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE])))
    if proc.returncode:
        raise RuntimeError(f"child {args[0]} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss() -> int:
    """This process's peak resident memory in bytes (``VmHWM``: of this program alone; ``ru_maxrss`` keeps the
    parent's high-water mark across ``exec`` on Linux)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _crops() -> dict:
    """``search_crops=True`` in both children when the bench runs with ``--search-crops`` (older camid: nothing)."""
    return {"search_crops": True} if os.environ.get("CAMID_BENCH_SEARCH_CROPS") else {}


def worker_search(lib: str, images: str, run_dir: str, budget: str) -> dict:
    from camid_gpu.library import search_library
    from camid_gpu.engine.context import run_context
    from camid_gpu.library import integrity
    from camid_gpu.library import screen as scr
    from camid_gpu.library.search import Screener, geometries

    config = RunConfig(backend="numpy", progress=False, max_host_memory=parse_bytes(budget))
    t0 = time.perf_counter()
    _, records = search_library(lib, [images], run_dir, Params(**_crops()), config)
    seconds = time.perf_counter() - t0
    _, rows, _ = integrity.snapshot(lib)
    geoms = geometries(rows)
    screener = Screener(lib, geoms, run_context(config))
    g = geoms[0]
    views = 32  # a full chunk of images (the search's limit): one pass over the library serves them all
    rng = np.random.default_rng(0)
    first, squares, norms = scr.query_rows(rng.standard_normal((views, g.pixels)), 100 + rng.random((views, g.pixels)))
    # each pass with and without the SHA-256 check of each row as it is read (what the check costs), in turn,
    # twice: the fastest of each (the first pass also pays the page cache)
    checked, unchecked = screener.tiles, {n: [(idx, []) for idx, _ in t] for n, t in screener.tiles.items()}
    times: dict[str, list[float]] = {"checked": [], "unchecked": []}
    for kind in ("checked", "unchecked") * 2:
        screener.tiles = checked if kind == "checked" else unchecked
        t1 = time.perf_counter()
        screener.z(g, first, squares, norms)
        times[kind].append(time.perf_counter() - t1)
    screen_s, unchecked_s = min(times["checked"]), min(times["unchecked"])
    return {"seconds": seconds, "images": len(records), "max_rss_bytes": peak_rss(),
            "screen_pairs_per_s": views * len(g.rows) / screen_s, "screen_seconds": screen_s,
            "screen_seconds_without_row_hashes": unchecked_s,
            "decisions": {r["path"]: r["pce"]["decision"] for r in records},
            "shortlisted": sum(len(r["library"]["shortlist"]) for r in records),
            "decision_pce": records[0]["library"]["threshold"]["decision_pce"],
            "screen_z": records[0]["library"]["threshold"]["z"]}


def worker_identify(store: str, images: str, run_dir: str, threshold: str, budget: str) -> dict:
    from camid_gpu.engine.runner import identify_files
    from camid_gpu.engine.scheduler import read_results

    results = os.path.join(run_dir, "results.jsonl")
    config = RunConfig(backend="numpy", progress=False, max_host_memory=parse_bytes(budget))
    t0 = time.perf_counter()
    identify_files(store, [images], results, ("pce",), Params(pce_threshold=float(threshold), **_crops()), config)
    seconds = time.perf_counter() - t0
    records = read_results(results)
    return {"seconds": seconds, "images": len(records),
            "max_rss_bytes": peak_rss(),
            "decisions": {r["path"]: r["pce"]["decision"] for r in records}}


def measure(work: str, size: int, sensor: int, args, exhaustive: bool) -> dict:
    images, real_store = make_data(work, sensor, tuple(args.images))
    built = build(work, size, real_store, exhaustive)
    search = child(["--worker-search", built["library"], images, os.path.join(work, f"run-{size}"), args.max_host_memory])
    row = {"cameras": size, "sensor": [sensor, sensor], **{k: v for k, v in built.items() if k != "library"},
           "disk_bytes_per_camera": built["disk_bytes"] / size, "search_seconds": search["seconds"],
           "query_images_per_s": search["images"] / search["seconds"], "images": search["images"],
           "screen_pairs_per_s": search["screen_pairs_per_s"], "search_max_rss_bytes": search["max_rss_bytes"],
           "screen_seconds": search["screen_seconds"],
           "screen_seconds_without_row_hashes": search["screen_seconds_without_row_hashes"],
           "shortlisted": search["shortlisted"], "decision_pce": search["decision_pce"], "screen_z": search["screen_z"],
           "decided": sum(v is not None for v in search["decisions"].values())}
    if exhaustive:
        full = child(["--worker-identify", built["store"], images, os.path.join(work, f"id-{size}"),
                      repr(search["decision_pce"]), args.max_host_memory])
        row.update(exhaustive_seconds=full["seconds"], exhaustive_max_rss_bytes=full["max_rss_bytes"],
                   speedup=full["seconds"] / search["seconds"],
                   same_decisions=full["decisions"] == search["decisions"])
    if not args.keep:
        for name in (f"lib-{size}", f"store-{size}", f"run-{size}", f"id-{size}"):
            shutil.rmtree(os.path.join(work, name), ignore_errors=True)
    return row


def two_sizes_data(work: str, shapes: list[tuple[int, int]], images: tuple[int, int]) -> tuple[str, list[str]]:
    """REAL synthetic cameras per sensor size (named S<size index>C0k, 10 flat references each), one store per
    size, and one folder of every size's disputed images (the queries)."""
    from camid_gpu.datasets.synthetic import make_dataset
    from camid_gpu.engine.runner import fingerprint_folder

    queries, stores = os.path.join(work, "queries-two"), []
    for n, (h, w) in enumerate(shapes):
        data, store = os.path.join(work, f"data-two-{n}"), os.path.join(work, f"real-two-{n}")
        stores.append(store)
        if os.path.isdir(store):
            continue
        make_dataset(data, cameras=REAL, per_model=1, refs=10, disputed_flat=images[0], disputed_natural=images[1],
                     height=h, width=w, jpeg_quality=95, seed=5 + n)
        for part in ("refs", "disputed"):
            for cam in sorted(os.listdir(os.path.join(data, part))):
                os.rename(os.path.join(data, part, cam), os.path.join(data, part, f"S{n}{cam}"))
        shutil.copytree(os.path.join(data, "disputed"), os.path.join(queries, str(n)))
        fingerprint_folder(os.path.join(data, "refs"), store, ("pce",), Params(refs=10),
                           RunConfig(backend="numpy", progress=False))
    return queries, stores


def measure_two_sizes(work: str, cameras: int, shapes: list[tuple[int, int]], args) -> dict:
    """A library of ``cameras`` cameras, half of each sensor size (issue 25: 66 cameras of 6 and 10 MP), searched
    and identified exhaustively (one store of every camera) in the same run: time per image and decisions."""
    from camid_gpu.library import add_stores, init_library

    queries, real_stores = two_sizes_data(work, shapes, tuple(args.images))
    lib, store = os.path.join(work, "lib-two"), os.path.join(work, "store-two")
    init_library(lib)
    for n, real_store in enumerate(real_stores):
        real = load_store(real_store)
        shape, params, refs = real[0].source_shape, dict(real[0].params), real[0].references
        shutil.copytree(real_store, store, dirs_exist_ok=True)
        for d in range(cameras // len(shapes) - REAL):
            fp = decoy(100000 * (n + 1) + d, shape, params, refs)[0]
            save_fingerprint(fp, store)
    os.remove(os.path.join(store, "manifest.json"))  # the joined store's own manifest, as camid fingerprint writes
    from camid_gpu.engine import run_folder
    from camid_gpu.provenance import utc_now

    files = sorted(os.path.join(store, f) for f in os.listdir(store) if f.endswith((".json", ".npz")))
    run_folder.write_manifest(store, "fingerprint", None, {}, "numpy", utc_now(), [], None, files, kernels="not used")
    add_stores(lib, [store])
    search = child(["--worker-search", lib, queries, os.path.join(work, "run-two"), args.max_host_memory])
    full = child(["--worker-identify", store, queries, os.path.join(work, "id-two"), repr(search["decision_pce"]),
                  args.max_host_memory])
    row = {"cameras": cameras, "sensors": [list(s) for s in shapes], "images": search["images"],
           "search_seconds": search["seconds"], "search_s_per_image": search["seconds"] / search["images"],
           "search_max_rss_bytes": search["max_rss_bytes"], "shortlisted": search["shortlisted"],
           "decision_pce": search["decision_pce"], "exhaustive_seconds": full["seconds"],
           "exhaustive_s_per_image": full["seconds"] / full["images"], "exhaustive_max_rss_bytes": full["max_rss_bytes"],
           "speedup": full["seconds"] / search["seconds"], "same_decisions": full["decisions"] == search["decisions"],
           "decided": sum(v is not None for v in search["decisions"].values()),
           "search_crops": bool(os.environ.get("CAMID_BENCH_SEARCH_CROPS"))}
    if not args.keep:
        for name in ("lib-two", "store-two", "run-two", "id-two"):
            shutil.rmtree(os.path.join(work, name), ignore_errors=True)
    return row


def two_sizes_table(rows: list[dict]) -> str:
    lines = ["| cameras | sensors | images | search s/image | exhaustive s/image | speed-up | peak RSS search | "
             "same decisions |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cameras']} | {' + '.join(f'{h}x{w}' for h, w in r['sensors'])} | {r['images']} | "
                     f"{r['search_s_per_image']:.3f} | {r['exhaustive_s_per_image']:.3f} | {r['speedup']:.1f}x | "
                     f"{r['search_max_rss_bytes'] / 2**20:.0f} MiB | {r['same_decisions']} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    lines = ["| cameras | sensor | add cameras/s | disk/camera | search s | images/s | screen pairs/s | peak RSS | "
             "exhaustive s | speed-up | same decisions |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cameras']} | {r['sensor'][0]}x{r['sensor'][1]} | {r['add_cameras_per_s']:.0f} ({r['add_mode']}) | "
                     f"{r['disk_bytes_per_camera'] / 1024:.1f} KiB | {r['search_seconds']:.2f} | "
                     f"{r['query_images_per_s']:.2f} | {r['screen_pairs_per_s']:.3g} | "
                     f"{r['search_max_rss_bytes'] / 2**20:.0f} MiB | "
                     f"{r.get('exhaustive_seconds', float('nan')):.1f} | {r.get('speedup', float('nan')):.0f}x | "
                     f"{r.get('same_decisions', '-')} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker-search":
        print(json.dumps(worker_search(*sys.argv[2:6])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--worker-identify":
        print(json.dumps(worker_identify(*sys.argv[2:7])))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000],
                    help="library sizes of the scale series (at --sensor)")
    ap.add_argument("--sensor", type=int, default=64, help="sensor side of the scale series (default 64)")
    ap.add_argument("--exhaustive-max", type=int, default=1000,
                    help="series sizes up to this are also searched exhaustively (default 1000)")
    ap.add_argument("--compare", type=int, nargs=2, default=[1000, 512], metavar=("CAMERAS", "SENSOR"),
                    help="the speed-up row: CAMERAS at SENSOR x SENSOR against exhaustive identify (0 0 to skip)")
    ap.add_argument("--images", type=int, nargs=2, default=[2, 2], metavar=("FLAT", "NATURAL"),
                    help="disputed images per camera (3 cameras; default 2 flat, 2 natural: 12 queries)")
    ap.add_argument("--two-sizes", type=int, nargs=5, default=None, metavar=("CAMERAS", "H1", "W1", "H2", "W2"),
                    help="also a library of CAMERAS cameras, half of sensor H1xW1, half of H2xW2 (issue 25), against "
                         "exhaustive identify; 0 to skip")
    ap.add_argument("--max-host-memory", default="2G")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--search-crops", action="store_true", help="search and identify with --search-crops")
    args = ap.parse_args()
    if args.search_crops:
        os.environ["CAMID_BENCH_SEARCH_CROPS"] = "1"
    work = args.workdir or tempfile.mkdtemp(prefix="camid-bench-library-")
    plan = [(args.compare[0], args.compare[1], True)] if args.compare[0] else []
    plan += [(size, args.sensor, size <= args.exhaustive_max) for size in args.sizes]
    rows, two = [], []
    for size, sensor, exhaustive in plan:
        rows.append(measure(work, size, sensor, args, exhaustive))
        print(json.dumps(rows[-1]), file=sys.stderr)
    if args.two_sizes and args.two_sizes[0]:
        cameras, h1, w1, h2, w2 = args.two_sizes
        two.append(measure_two_sizes(work, cameras, [(h1, w1), (h2, w2)], args))
        print(json.dumps(two[-1]), file=sys.stderr)
    result = {"bench": "library", "device": "cpu", "backend": "numpy", "run": run_info(), "rows": rows,
              "two_sizes": two, "args": vars(args)}
    print(json.dumps(result, indent=1))
    print(table(rows))
    if two:
        print(two_sizes_table(two))
    write_json(result, args.json_out)


if __name__ == "__main__":
    main()

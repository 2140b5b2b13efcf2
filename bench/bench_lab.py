"""A lab's day on one workstation: real-size JPEGs of several sensor sizes, a library of cameras of those sizes, a
seized set with cropped and resized photos; seconds per image and peak memory of each command, and the library
search's answers checked against exhaustive identify on the same cameras.

Prints one JSON object (``--json-out`` also writes it) and a table (``--md-out``). Not collected by pytest.

    PYTHONPATH=. python bench/bench_lab.py [--sizes 3000x4000 ...] [--decoys-per-size 2] [--refs 3]
                                          [--max-host-memory 2G] [--workdir DIR] [--json-out F] [--md-out F]

Cameras: one synthetic camera per sensor size (``camid synth``'s model: ``--refs`` flat references, one flat and one
natural disputed JPEG at quality 92), fingerprinted by ``camid fingerprint``; ``--decoys-per-size`` random
fingerprints of each size (stores of their own, with manifests) fill the library (``camid library add``). Seized:
every camera's disputed images, one natural image centre-cropped to 2/3 of each side, one resized to 1/2 (both
re-saved as JPEG q92). Every command is a child process (``python -m camid_gpu.cli``) timed on its own; its peak
resident memory is its ``ru_maxrss`` as GNU ``time`` reports it (its decode workers included). ``identify`` is run
exhaustively over every store at the library search's decision threshold, so the two answers compare.
The default (5 sizes of 8-12 MP, 2 decoys each: 15 cameras, 12 seized images) runs in about 15 minutes on two
cores; ``--decoys-per-size`` scales the library (disk: ~75 MB per 12 MP camera).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_residual import run_info, write_json

SIZES = ("3000x4000", "3024x4032", "2736x3648", "2448x3264", "2592x4608")  # rows x columns: 12, 12.2, 10, 8, 12 MP


def command(args: list[str], log: list[dict], what: str, images: int) -> dict:
    """Run ``camid ARGS`` as a child; its seconds, seconds per image and peak RSS (MiB), appended to ``log``."""
    # GNU time forks the command itself: its ru_maxrss is the command's (workers included), where a child forked
    # from this process would carry this process's high-water mark across exec (Linux keeps it)
    timer = ["/usr/bin/time", "-f", "peak-kib %M"] if os.path.exists("/usr/bin/time") else []
    t0 = time.perf_counter()
    proc = subprocess.run([*timer, sys.executable, "-m", "camid_gpu.cli", *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    err = proc.stderr
    peaks = [int(line.split()[1]) for line in err.splitlines() if line.startswith("peak-kib ")]
    row = {"step": what, "seconds": round(seconds, 2), "images": images,
           "seconds_per_image": round(seconds / max(images, 1), 2),
           "peak_rss_mib": round(peaks[-1] / 1024) if peaks else None, "exit": proc.returncode}
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"camid {' '.join(args)} exited {proc.returncode}: {err[-2000:]}")
    log.append(row)
    print(json.dumps(row), file=sys.stderr)
    return row


def synthesize(work: str, sizes: list[str], refs: int) -> tuple[list[str], str, dict[str, str]]:
    """One camera per size: reference folders (one store each), the seized folder and each seized file's camera."""
    from PIL import Image

    from camid_gpu.datasets.writer import make_dataset

    seized, truth, ref_dirs = os.path.join(work, "seized"), {}, []
    if os.path.isdir(seized):  # made by an earlier run in this --workdir: reused
        ref_dirs = [os.path.join(work, f"data_{size}", "refs") for size in sizes]
        for name in sorted(os.listdir(seized)):
            cut = 1 if name.startswith(("cropped_", "resized_")) else 0
            truth[name] = "_".join(name.split("_")[cut:cut + 2])
        return ref_dirs, seized, truth
    os.makedirs(seized)
    for n, size in enumerate(sizes):
        h, w = (int(v) for v in size.split("x"))
        data = os.path.join(work, f"data_{size}")
        make_dataset(data, cameras=1, per_model=1, refs=refs, disputed_flat=1, disputed_natural=1, height=h,
                     width=w, seed=100 + n, workers=1)
        camera = f"S{n + 1}_{size}"
        os.rename(os.path.join(data, "refs", "C01"), os.path.join(data, "refs", camera))
        ref_dirs.append(os.path.join(data, "refs"))
        for path in sorted(glob.glob(os.path.join(data, "disputed", "C01", "*.jpg"))):
            name = f"{camera}_{os.path.basename(path)}"
            shutil.copy(path, os.path.join(seized, name))
            truth[name] = camera
    # the largest frame cropped (2/3 of each side, centred) and the first resized to 1/2: re-saved as JPEG q92
    first = sorted(n for n in truth if n.startswith("S1_") and "natural" in n)[0]
    with Image.open(os.path.join(seized, first)) as image:
        w, h = image.size
        image.crop((w // 6, h // 6, w // 6 + 2 * w // 3, h // 6 + 2 * h // 3)).save(
            os.path.join(seized, "cropped_" + first), quality=92)
        image.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(os.path.join(seized, "resized_" + first),
                                                                      quality=92)
    truth["cropped_" + first] = truth["resized_" + first] = truth[first]
    return ref_dirs, seized, truth


def decoy_stores(work: str, stores: list[str], per_size: int) -> list[str]:
    """``per_size`` random fingerprints of each real store's size, in stores of their own with manifests."""
    import hashlib

    from camid_gpu.engine.run_folder import write_manifest
    from camid_gpu.provenance import utc_now
    from camid_gpu.store import CameraFingerprint, load_store, save_fingerprint
    from camid_gpu.store.fingerprint import _npz_bytes

    out = []
    for n, store in enumerate(stores):
        real = load_store(store)[0]
        folder = os.path.join(work, f"decoys_{n + 1}")
        os.makedirs(folder)
        files = []
        for d in range(per_size):
            k = (np.random.default_rng([23, n, d]).standard_normal(real.k.shape) * 0.01).astype(np.float32)
            fp = CameraFingerprint(camera=f"D{n + 1}_{d:04d}", methods=("pce",), arrays={"k": k},
                                   clips={"pce": None}, source_shape=real.source_shape, params=real.params,
                                   references=real.references, arrays_sha256=hashlib.sha256(_npz_bytes({"k": k})).hexdigest())
            files += [save_fingerprint(fp, folder), os.path.join(folder, f"{fp.camera}.npz")]
            del fp, k
        write_manifest(folder, "fingerprint", None, real.params, "bench decoys", utc_now(), [], None, files,
                       kernels="not used")
        out.append(folder)
    return out


def decisions(run_dir: str) -> dict[str, str | None]:
    found = {}
    with open(os.path.join(run_dir, "results.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            r = json.loads(line)
            found[os.path.basename(r["path"])] = (r.get("pce") or {}).get("decision") if not r.get("error") else "error"
    return found


def table(rows: list[dict]) -> str:
    lines = ["| step | images | seconds | s/image | peak RSS |", "|---|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['images']} | {r['seconds']} | {r['seconds_per_image']} | {r['peak_rss_mib']} MiB |"
              for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), help="sensor sizes, rows x columns")
    ap.add_argument("--refs", type=int, default=3, help="flat references per real camera")
    ap.add_argument("--decoys-per-size", type=int, default=2, help="random fingerprints per size in the library")
    ap.add_argument("--max-host-memory", default=None, help="--max-host-memory of every command (default: camid's)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--md-out", default=None)
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="camid-bench-lab-")
    budget = ["--max-host-memory", args.max_host_memory] if args.max_host_memory else []
    log: list[dict] = []
    t0 = time.perf_counter()
    ref_dirs, seized, truth = synthesize(work, args.sizes, args.refs)
    synth_s = time.perf_counter() - t0
    stores = []
    for n, refs in enumerate(ref_dirs):
        stores.append(os.path.join(work, f"store_{n + 1}"))
        command(["fingerprint", refs, "-o", stores[-1], "--quiet", *budget], log, f"fingerprint {args.sizes[n]}",
                args.refs)
    decoys = decoy_stores(work, stores, args.decoys_per_size)
    lib = os.path.join(work, "library")
    command(["library", "init", lib], log, "library init", 0)
    command(["library", "add", lib, *stores, *decoys], log, "library add", 0)
    images = len(truth)
    command(["library", "search", lib, seized, "-o", os.path.join(work, "run_search"), "--quiet", *budget], log,
            "library search", images)
    searched = [json.loads(line) for line in open(os.path.join(work, "run_search", "results.jsonl"), encoding="utf-8")]
    threshold = next(r["library"]["threshold"]["decision_pce"] for r in searched if not r.get("error"))
    extra = [a for s in stores[1:] + decoys for a in ("--store", s)]
    command(["identify", stores[0], *extra, seized, "-o", os.path.join(work, "run_identify"), "--quiet",
             "--pce-threshold", f"{threshold:.6g}", *budget], log, "identify (exhaustive)", images)
    command(["cluster", seized, "-o", os.path.join(work, "run_cluster"), "--quiet", *budget], log, "cluster", images)
    command(["report", os.path.join(work, "run_identify"), "--quiet", *budget], log, "report (first)", images)
    command(["report", os.path.join(work, "run_identify"), "-o", os.path.join(work, "report2.html"), "--quiet",
             *budget], log, "report (diagnostics kept)", images)
    by_search, by_identify = decisions(os.path.join(work, "run_search")), decisions(os.path.join(work, "run_identify"))
    answers = [{"image": name, "truth": truth[name], "search": by_search.get(name), "identify": by_identify.get(name)}
               for name in sorted(truth)]
    result = {"benchmark": "bench_lab", **run_info(), "sizes": args.sizes, "refs": args.refs,
              "cameras": len(stores) * (1 + args.decoys_per_size), "seized_images": images,
              "max_host_memory": args.max_host_memory or "default", "synthesis_seconds": round(synth_s, 1),
              "steps": log, "answers": answers,
              "search_equals_identify": sum(a["search"] == a["identify"] for a in answers),
              "search_right": sum(a["search"] == a["truth"] for a in answers),
              "identify_right": sum(a["identify"] == a["truth"] for a in answers),
              "total_seconds": round(time.perf_counter() - t0, 1), "workdir": work}
    text = table(log) + (f"\n\nanswers: search = identify on {result['search_equals_identify']} of {images}; right: "
                         f"search {result['search_right']}, identify {result['identify_right']} (truth)")
    print(json.dumps(result, indent=1))
    print(text)
    write_json(result, args.json_out)
    if args.md_out:
        with open(args.md_out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

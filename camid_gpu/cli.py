"""The ``camid`` command line.

Exit codes: 0 success; 1 usage or fatal error (message on stderr); 2 ``verify`` found changed or
missing files; 3 completed, but some files had errors (each listed, with the reason, in the output
and on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any, Sequence

from camid_gpu._version import __version__

EXIT_OK, EXIT_FAIL, EXIT_VERIFY_FAILED, EXIT_PARTIAL = 0, 1, 2, 3


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--backend", choices=("auto", "numpy", "torch"), default="auto",
                   help="numpy (pywt/scipy, float64) or torch (CPU/CUDA, float32); auto = torch on CUDA if present")
    g.add_argument("--device", default=None, help="torch device: cpu, cuda or cuda:N")
    g.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    g.add_argument("--max-host-memory", default=None, help="host memory budget, e.g. 8G (default: half of RAM)")
    g.add_argument("--max-gpu-memory", default=None, help="GPU memory budget, e.g. 20G (default: 80%% of free)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_param_options(p: argparse.ArgumentParser, with_refs: bool = True, clip_default: Any = "1000") -> None:
    g = p.add_argument_group("method parameters")
    if with_refs:
        g.add_argument("--method", choices=("pce", "mahalanobis", "both"), default="both",
                       help="pce (primary), mahalanobis (PeerJ CS 2024) or both (default)")
    else:
        g.add_argument("--method", choices=("pce", "mahalanobis", "both"), default=None,
                       help="pce, mahalanobis or both (default: every method the fingerprints have)")
    g.add_argument("--clip", default=clip_default,
                   help="centre clipping: N, HxW (rows x columns) or 'full' (default 1000x1000)")
    if with_refs:
        g.add_argument("--refs", default="15", help="reference images per camera, or 'all' (default 15, the paper's R)")
    g.add_argument("--sigma-fingerprint", type=float, default=3.0, help="PCE reference denoiser sigma (3)")
    g.add_argument("--sigma-query", type=float, default=2.0, help="PCE disputed-image denoiser sigma (2)")
    g.add_argument("--sigma-mahalanobis", type=float, default=2.0, help="Mahalanobis denoiser sigma (2)")
    g.add_argument("--pce-threshold", type=float, default=60.0, help="same camera when PCE > this (60)")
    g.add_argument("--shift-range", default="0",
                   help="PCE peak search: 0 (no shift), N or HxW (shifts 0..N), or 'all'")
    g.add_argument("--rotations", choices=("auto", "all", "none"), default="auto",
                   help="auto: try 0/90/180/270 when the orientation differs from the fingerprint's")
    g.add_argument("--natural-mode", choices=("aligned", "paper"), default="aligned",
                   help="Mahalanobis pixel selection for natural images (default aligned)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camid", description="Camera identification from sensor PRNU "
                                     "(PCE, and the 2-DOF Mahalanobis classifier), on NumPy or torch/CUDA.")
    parser.add_argument("--version", action="version", version=f"camid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("info", help="versions, backends and visible devices")

    p = sub.add_parser("synth", help="write a synthetic camera dataset (refs/, disputed/, ground_truth.json)")
    p.add_argument("outdir")
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--per-model", type=int, default=2, help="cameras per model (twins share model artefacts)")
    p.add_argument("--refs", type=int, default=15)
    p.add_argument("--flat", type=int, default=3, help="disputed flat images per camera")
    p.add_argument("--natural", type=int, default=3, help="disputed natural images per camera")
    p.add_argument("--height", type=int, default=1000)
    p.add_argument("--width", type=int, default=1200)
    p.add_argument("--quality", type=int, default=92, help="JPEG quality")
    p.add_argument("--format", choices=("jpeg", "png", "tiff"), default="jpeg")
    p.add_argument("--portrait", type=int, default=0, help="disputed natural images per camera stored rotated 90")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("residual", help="noise residuals as float32 TIFF + one JSON line per image")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--outdir", required=True)
    p.add_argument("--sigma", type=float, default=3.0)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--wavelet", default="db4")
    p.add_argument("--clip", default="full", help="centre clipping N or HxW (default: full image)")
    p.add_argument("--channel", choices=("color", "green"), default="color",
                   help="color: per-channel residuals combined to gray (Binghamton); green: green channel only")
    p.add_argument("--wiener", action="store_true", help="also apply WienerInDFT")
    _add_backend_options(p)

    p = sub.add_parser("fingerprint", help="build one fingerprint per camera subfolder of REFS_DIR")
    p.add_argument("refs_dir")
    p.add_argument("-o", "--outdir", required=True, help="fingerprint folder")
    _add_param_options(p)
    _add_backend_options(p)

    p = sub.add_parser("identify", help="which camera took each image")
    p.add_argument("fp_dir")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--outdir", default="camid-run",
                   help="run folder: results.jsonl (one record per image) and manifest.json (default camid-run)")
    p.add_argument("--json", default=None, help="also write all results as one JSON file")
    p.add_argument("--csv", default=None, help="also write a CSV table (one row per image and camera)")
    p.add_argument("--resume", action="store_true", help="continue the run folder's results, skipping files done")
    p.add_argument("--kind", choices=("auto", "flat", "natural"), default="auto",
                   help="image kind for the Mahalanobis method (auto: from the name, else the content)")
    p.add_argument("--cluster", default=None, help="'local', 'local:N' or tcp://HOST:8786 (Dask)")
    p.add_argument("--search-scales", default=None, metavar="LO:HI:STEP",
                   help="search downscaled and/or cropped images over these scales (e.g. 0.5:1.0:0.01) against "
                        "full-frame fingerprints (built with --clip full); PCE only")
    _add_param_options(p, with_refs=False, clip_default=None)
    _add_backend_options(p)

    p = sub.add_parser("evaluate", help="fingerprint refs/ and score disputed/ against ground-truth folders")
    p.add_argument("dataset_dir")
    p.add_argument("-o", "--outdir", default=None, help="run folder (default: DATASET_DIR/camid-eval)")
    p.add_argument("--json", default=None, help="also write the evaluation JSON here")
    p.add_argument("--resume", action="store_true")
    _add_param_options(p)
    _add_backend_options(p)

    p = sub.add_parser("cluster", help="which images share a camera, with no camera at hand (blind clustering)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--outdir", required=True, help="run folder (clusters.json, clusters.csv, fingerprints/, ...)")
    p.add_argument("--region", default="1024", help="side N of the centred square compared (largest up to N; "
                   "default 1024) or 'full'")
    p.add_argument("--pfa", type=float, default=1e-6, help="false-alarm probability of any false link in the whole "
                   "set (default 1e-6)")
    p.add_argument("--sigma", type=float, default=3.0, help="residual denoiser sigma (3, as for fingerprints)")
    p.add_argument("--precision", choices=("auto", "float32", "float16"), default="auto",
                   help="Gram products: auto = float16 on CUDA (measured negligible), float32 elsewhere")
    p.add_argument("--resume", action="store_true", help="continue RUN: skip files done, add new inputs, multiply "
                   "only the pairs with new images")
    p.add_argument("--cluster", default=None, help="Gram tiles on Dask: 'local', 'local:N' or tcp://HOST:8786")
    _add_backend_options(p)

    p = sub.add_parser("verify", help="re-hash the inputs, fingerprints and outputs listed in a run manifest")
    p.add_argument("manifest", help="RUN_DIR/manifest.json (or RUN_DIR)")

    p = sub.add_parser("report", help="one self-contained HTML report of a run folder")
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", default=None, help="HTML file (default RUN_DIR/report.html)")
    p.add_argument("--fingerprints", default=None, help="fingerprint folder (default: from the manifest)")

    p = sub.add_parser("demo", help="synthesise twin cameras, fingerprint and evaluate with both methods")
    p.add_argument("--outdir", default=None, help="where to keep the demo data (default: a temporary folder)")
    p.add_argument("--size", choices=("small", "paper"), default="small",
                   help="small: 640x768 images, 512 clipping (about a minute); paper: 1000x1200, 1000 clipping")
    p.add_argument("--seed", type=int, default=0)
    _add_backend_options(p)
    return parser


# ------------------------------------------------------------------------------------------------
def _params(args: argparse.Namespace):
    from camid_gpu.identify import Params
    from camid_gpu.io import parse_clip

    shift = None if str(args.shift_range).lower() == "all" else _pair(args.shift_range)
    refs = None if str(getattr(args, "refs", "all")).lower() == "all" else int(args.refs)
    clip = parse_clip(args.clip) if args.clip is not None else (1000, 1000)
    search = getattr(args, "search_scales", None)
    if search is not None:
        try:
            lo, hi, step = (float(v) for v in search.split(":"))
        except ValueError:
            raise ValueError(f"--search-scales must be LO:HI:STEP such as 0.5:1.0:0.01, got {search!r}") from None
        search = (lo, hi, step)
    return Params(clip=clip, sigma_fingerprint=args.sigma_fingerprint, sigma_query=args.sigma_query,
                  sigma_mahalanobis=args.sigma_mahalanobis, refs=refs, pce_threshold=args.pce_threshold,
                  shift_range=shift, rotations=args.rotations, natural_mode=args.natural_mode,
                  search_scales=search)


def _pair(text: str) -> tuple[int, int]:
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected N or HxW, got {text!r}") from None
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _config(args: argparse.Namespace):
    from camid_gpu.runner import RunConfig
    from camid_gpu.scheduler import parse_bytes

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    return RunConfig(backend=args.backend, device=args.device, workers=args.workers,
                     max_host_memory=parse_bytes(args.max_host_memory), max_gpu_memory=parse_bytes(args.max_gpu_memory),
                     progress=False if args.quiet else None, cluster=getattr(args, "cluster", None))


def _print_errors(errors: Sequence[dict[str, Any]]) -> None:
    for e in errors:
        print(f"camid: error: {e['path']}: {e['error']['reason']}", file=sys.stderr)


def cmd_info(args) -> int:
    import platform

    import numpy
    import pywt
    import scipy

    print(f"camid {__version__}  (python {platform.python_version()}, {platform.machine()})")
    print(f"numpy {numpy.__version__}, scipy {scipy.__version__}, pywavelets {pywt.__version__}")
    for module, extra in (("torch", "torch"), ("pytorch_wavelets", "torch"), ("cupy", "cuda"),
                          ("dask", "dist"), ("matplotlib", "report")):
        try:
            if module == "pytorch_wavelets":
                from camid_gpu.backend import import_pytorch_wavelets

                mod = import_pytorch_wavelets()
            else:
                mod = __import__(module)
            print(f"{module}: {getattr(mod, '__version__', 'installed')}")
        except ImportError:
            print(f"{module}: not installed (pip install 'camid_gpu[{extra}]')")
        except Exception as exc:  # a broken optional install must not break `info`
            print(f"{module}: present but fails to import ({type(exc).__name__}: {exc})")
    from camid_gpu.backend import get_backend, torch_cuda_available

    if torch_cuda_available():
        import torch

        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            print(f"cuda:{i}: {torch.cuda.get_device_name(i)}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} free)")
    else:
        print("CUDA: no device visible to torch")
    print(f"backend 'auto' -> {get_backend('auto').describe()}")
    return EXIT_OK


def cmd_synth(args) -> int:
    from camid_gpu.synth import make_dataset

    t0 = time.perf_counter()
    truth = make_dataset(args.outdir, cameras=args.cameras, per_model=args.per_model, refs=args.refs,
                         disputed_flat=args.flat, disputed_natural=args.natural, height=args.height, width=args.width,
                         jpeg_quality=args.quality, fmt=args.format, portrait=args.portrait, seed=args.seed)
    print(f"wrote {len(truth['images'])} images of {len(truth['cameras'])} cameras to {args.outdir} "
          f"in {time.perf_counter() - t0:.1f} s (ground truth: {os.path.join(args.outdir, 'ground_truth.json')})")
    return EXIT_OK


def cmd_residual(args) -> int:
    import numpy as np
    import tifffile

    from camid_gpu.identify import error_entry
    from camid_gpu.io import center_clip, green_channel, list_images, parse_clip, read_image
    from camid_gpu.residual import extract_residual

    config = _config(args)
    clip = parse_clip(args.clip)
    os.makedirs(args.outdir, exist_ok=True)
    paths = list_images(*args.images)
    if not paths:
        raise ValueError(f"no images found in {', '.join(args.images)}")
    errors = []
    index_path = os.path.join(args.outdir, "residuals.jsonl")

    def load(path):
        pixels, info = read_image(path)
        pixels = center_clip(pixels, clip, path)
        return (green_channel(pixels) if args.channel == "green" else pixels), info

    from camid_gpu.scheduler import ordered_map

    bk = config.backend_obj()
    with open(index_path, "a", encoding="utf-8") as index:
        for (path,), result in ordered_map(load, [(p,) for p in paths], config.workers, 2 * config.workers):
            if isinstance(result, BaseException):
                errors.append(error_entry(path, result))
                continue
            pixels, info = result
            res = extract_residual(pixels[None], sigma=args.sigma, levels=args.levels, wavelet=args.wavelet,
                                   backend=bk, wiener=args.wiener)[0]
            stem = os.path.splitext(os.path.basename(path))[0]
            out = os.path.join(args.outdir, f"{stem}-{info.sha256[:8]}.tif")
            tifffile.imwrite(out, res.astype(np.float32), metadata=None)
            record = {"path": path, "sha256": info.sha256, "shape": list(res.shape), "output": out,
                      "params": {"sigma": args.sigma, "levels": args.levels, "wavelet": args.wavelet,
                                 "clip": list(clip) if clip else None, "channel": args.channel,
                                 "wiener": args.wiener, "zero_mean": True},
                      "backend": bk.describe(), "std": float(res.std())}
            index.write(json.dumps(record, sort_keys=True) + "\n")
            print(f"{path} -> {out}  ({res.shape[0]}x{res.shape[1]}, std {res.std():.3f})")
    _print_errors(errors)
    return EXIT_PARTIAL if errors else EXIT_OK


def cmd_fingerprint(args) -> int:
    from camid_gpu.identify import methods_of
    from camid_gpu.provenance import file_entry, utc_now, write_manifest
    from camid_gpu.runner import fingerprint_folder

    started = utc_now()
    params = _params(args)
    summary = fingerprint_folder(args.refs_dir, args.outdir, methods_of(args.method), params, _config(args))
    if summary["cameras"]:
        write_manifest(args.outdir, "fingerprint", sys.argv, params.to_dict(), summary["backend"], started,
                       [file_entry(p, "reference") for p in summary["files"]], None,
                       [f for c in summary["cameras"] for f in (c["metadata"], c["arrays"])],
                       extra={"errors": summary["errors"]})
    for cam in summary["cameras"]:
        print(f"{cam['camera']}: {cam['references']} references -> {cam['metadata']}")
    _print_errors(summary["errors"])
    if not summary["cameras"]:
        print("camid: no fingerprint was built", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_PARTIAL if summary["errors"] else EXIT_OK


def cmd_identify(args) -> int:
    from camid_gpu.identify import methods_of
    from camid_gpu.runner import identify_files
    from camid_gpu.scheduler import read_results

    from camid_gpu.provenance import input_entries, utc_now, write_manifest

    started = utc_now()
    methods = methods_of(args.method) if args.method else methods_in_store(args.fp_dir)
    if args.search_scales and "mahalanobis" in methods:
        methods = ("pce",)
        print("camid: note: --search-scales runs PCE only (the Mahalanobis method has no scale/crop search)",
              file=sys.stderr)
    os.makedirs(args.outdir, exist_ok=True)
    results = os.path.join(args.outdir, "results.jsonl")
    run = identify_files(args.fp_dir, args.images, results, methods, _params(args), _config(args),
                         resume=args.resume, kind=args.kind, clip_given=args.clip is not None)
    records = read_results(results)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"run": run, "images": records}, handle, indent=1, sort_keys=True)
            handle.write("\n")
    if args.csv:
        write_csv(args.csv, records)
    outputs = [results] + [p for p in (args.json, args.csv) if p]
    write_manifest(args.outdir, "identify", sys.argv, run["params"], run["backend"], started, input_entries(records),
                   args.fp_dir, outputs, extra={"methods": list(methods), "resumed": args.resume})
    print_identification(records, run["cameras"], methods)
    errors = [r for r in records if r.get("error")]
    _print_errors(errors)
    print(f"run folder: {args.outdir} (results.jsonl, manifest.json); {run['processed']} processed, "
          f"{run['skipped_as_done']} already done")
    return EXIT_PARTIAL if errors else EXIT_OK


def methods_in_store(fp_dir: str) -> tuple[str, ...]:
    """The methods every fingerprint in ``fp_dir`` has (PCE first)."""
    from camid_gpu.store import load_store

    store = load_store(fp_dir)
    common = set.intersection(*(set(fp.methods) for fp in store))
    return tuple(m for m in ("pce", "mahalanobis") if m in common)


def cmd_verify(args) -> int:
    from camid_gpu.provenance import MANIFEST_NAME, verify_manifest

    path = os.path.join(args.manifest, MANIFEST_NAME) if os.path.isdir(args.manifest) else args.manifest
    result = verify_manifest(path)
    for item in result["changed"]:
        print(f"CHANGED  {item['role']:11s} {item['path']}  recorded {item['recorded'][:16]}..., "
              f"now {item['current'][:16]}...")
    for item in result["missing"]:
        print(f"MISSING  {item['role']:11s} {item['path']}  {item.get('reason', 'no longer exists')}")
    print(f"{result['checked']} files checked: "
          + ("all unchanged" if result["ok"] else f"{len(result['changed'])} changed, {len(result['missing'])} missing"))
    return EXIT_OK if result["ok"] else EXIT_VERIFY_FAILED


def cmd_report(args) -> int:
    from camid_gpu.report import write_report

    output = args.output or os.path.join(args.run_dir, "report.html")
    write_report(args.run_dir, output, fingerprints_dir=args.fingerprints)
    print(f"report: {output}")
    return EXIT_OK


def cmd_cluster(args) -> int:
    from camid_gpu.cluster import ClusterParams, cluster_images

    region = None if str(args.region).lower() == "full" else int(args.region)
    params = ClusterParams(region=region, pfa=args.pfa, sigma=args.sigma, precision=args.precision)
    result = cluster_images(args.images, args.outdir, params, _config(args), resume=args.resume, argv=sys.argv)
    for g in result["groups"]:
        t = g["threshold"]
        print(f"group {g['name']}: {g['images']} images, {g['image_pairs']} pairs, NCC threshold {t['ncc']:.4g} "
              f"(z {t['z']:.2f} x null spread {t['null_std']:.3g}, {t['null_source']}), PCE >= {t['pce']:.1f}; "
              f"{g['confirmed_pairs']} linked pairs")
    for c in result["clusters"]:
        print(f"{c['id']}: {c['size']} images ({c['group']})")
    print(f"{len(result['clusters'])} clusters, {len(result['unclustered'])} images unclustered; run folder: "
          f"{args.outdir} (clusters.json, clusters.csv, fingerprints/, manifest.json)")
    _print_errors(result["errors"])
    return EXIT_PARTIAL if result["errors"] else EXIT_OK


def write_csv(path: str, records: Sequence[dict[str, Any]]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        w = csv.writer(handle)
        w.writerow(["path", "sha256", "camera", "pce", "ncc", "log10_p_fa", "pce_decision", "rotation",
                    "mahalanobis_membership", "mahalanobis_associated", "error"])
        for r in records:
            if r.get("error"):
                w.writerow([r["path"], "", "", "", "", "", "", "", "", "", r["error"]["reason"]])
                continue
            pce = r.get("pce", {}).get("scores", {})
            maha = r.get("mahalanobis", {})
            cams = list(pce) or list(maha.get("membership", {}))
            for cam in cams:
                s = pce.get(cam, {})
                w.writerow([r["path"], r["sha256"], cam, s.get("pce"), s.get("ncc"), s.get("log10_p_fa"),
                            r.get("pce", {}).get("decision"), r.get("rotation"),
                            maha.get("membership", {}).get(cam), ",".join(maha.get("associated", [])), ""])


def print_identification(records, cameras, methods) -> None:
    from camid_gpu.evaluate import table

    rows = []
    for r in records:
        if r.get("error"):
            rows.append([os.path.basename(r["path"]), "error", "-", "-", "-"])
            continue
        pce = r.get("pce")
        maha = r.get("mahalanobis")
        rows.append([os.path.basename(r["path"]),
                     (pce["decision"] or "none") if pce else "-",
                     pce["best_pce"] if pce else "-",
                     r.get("rotation", 0),
                     ",".join(maha["associated"]) if maha else "-"])
    print(table(["image", "PCE decision", "max PCE", "rotation", "Mahalanobis (beside PCE)"], rows))


def cmd_evaluate(args) -> int:
    from camid_gpu.evaluate import format_report
    from camid_gpu.identify import methods_of
    from camid_gpu.runner import evaluate_dataset

    outdir = args.outdir or os.path.join(args.dataset_dir, "camid-eval")
    summary = evaluate_dataset(args.dataset_dir, outdir, methods_of(args.method), _params(args), _config(args),
                               resume=args.resume, argv=sys.argv)
    print(format_report(summary))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=1, sort_keys=True)
            handle.write("\n")
    print(f"\nrun folder: {outdir} (fingerprints/, results.jsonl, evaluation.json, manifest.json)")
    _print_errors(summary["fingerprint_errors"])
    return EXIT_PARTIAL if summary["images_with_errors"] or summary["fingerprint_errors"] else EXIT_OK


DEMO_SIZES = {"small": dict(height=640, width=768, clip="512"), "paper": dict(height=1000, width=1200, clip="1000")}


def cmd_demo(args) -> int:
    from camid_gpu.evaluate import format_report
    from camid_gpu.identify import Params, methods_of
    from camid_gpu.io import parse_clip
    from camid_gpu.runner import evaluate_dataset
    from camid_gpu.synth import make_dataset

    size = DEMO_SIZES[args.size]
    keep = args.outdir is not None
    root = args.outdir or tempfile.mkdtemp(prefix="camid-demo-")
    data = os.path.join(root, "data")
    t0 = time.perf_counter()
    truth = make_dataset(data, cameras=4, per_model=2, refs=15, disputed_flat=3, disputed_natural=3,
                         height=size["height"], width=size["width"], jpeg_quality=92, seed=args.seed)
    t1 = time.perf_counter()
    twins = [c["name"] + "~" + "/".join(c["twins"]) for c in truth["cameras"]]
    print(f"camid demo: {len(truth['cameras'])} synthetic cameras (twins share model artefacts: {', '.join(twins)}), "
          f"{len(truth['images'])} JPEGs {size['height']}x{size['width']} in {t1 - t0:.1f} s -> {data}")
    config = _config(args)
    params = Params(clip=parse_clip(size["clip"]))
    summary = evaluate_dataset(data, os.path.join(root, "run"), methods_of("both"), params, config)
    t2 = time.perf_counter()
    print(f"fingerprints + identification of {summary['images_total']} images on {summary['backend']}: "
          f"{t2 - t1:.1f} s\n")
    print(format_report(summary))
    if args.size == "small":
        print("\nnote: the small demo uses 512x512 clippings; natural images carry less PRNU per pixel than flats, "
              "so some fall below PCE 60 here (no false accusation: other cameras stay low). "
              "`camid demo --size paper` uses the paper's 1000x1000 clippings.")
    print(f"\n{'kept in' if keep else 'temporary folder'}: {root}")
    return EXIT_OK


COMMANDS = {"info": cmd_info, "synth": cmd_synth, "residual": cmd_residual, "fingerprint": cmd_fingerprint,
            "identify": cmd_identify, "cluster": cmd_cluster, "evaluate": cmd_evaluate, "verify": cmd_verify,
            "report": cmd_report,
            "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_FAIL
    from camid_gpu.errors import CamidError

    try:
        return COMMANDS[args.command](args)
    except (CamidError, ValueError, OSError) as exc:
        print(f"camid: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("camid: interrupted (results written so far are kept; use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

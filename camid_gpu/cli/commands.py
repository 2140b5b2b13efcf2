"""The ``camid`` commands: one thin function per command, from parsed arguments to the engine and back.

The parser is in :mod:`camid_gpu.cli.parser`, text tables and CSV in :mod:`camid_gpu.cli.output`.

Exit codes: 0 success; 1 usage or fatal error (message on stderr); 2 ``verify`` failed (files changed or
missing, nothing to check, or the manifest's own SHA-256 not the one expected); 3 completed, but some files
had errors (each listed, with the reason, in the output and on stderr); 130 interrupted (Ctrl-C); 143
terminated (SIGTERM). Results written before an interruption are kept (``--resume``).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
from typing import Sequence

from camid_gpu import config as cfg
from camid_gpu._shared.jsonio import write_json
from camid_gpu._version import __version__
from camid_gpu.cli.output import (
    print_clusters,
    print_errors,
    print_identification,
    print_not_comparable,
    print_skipped,
    write_csv,
)
from camid_gpu.cli.library import Shared as LibraryShared
from camid_gpu.cli.library import cmd_library
from camid_gpu.cli.parser import build_parser
from camid_gpu.io.listing import printable
from camid_gpu.pipeline.records import is_error

EXIT_OK, EXIT_FAIL, EXIT_VERIFY_FAILED, EXIT_PARTIAL = 0, 1, 2, 3
#: 128 + the signal number, as a shell reports a process killed by it
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


# ------------------------------------------------------------------------------------------------
def _params(args: argparse.Namespace) -> cfg.Params:
    """The parameters from the options, every value checked (finite, in range) before any work."""
    try:
        shift = cfg.parse_shift_range(args.shift_range)
    except ValueError as exc:
        raise ValueError(f"--shift-range: {exc}") from None
    refs = cfg.parse_refs(getattr(args, "refs", "all"))
    search = cfg.parse_scales(getattr(args, "search_scales", None))
    sigma_fp = cfg.SIGMA_FINGERPRINT if args.sigma_fingerprint is None else args.sigma_fingerprint
    sigma_maha = cfg.SIGMA_MAHALANOBIS if args.sigma_mahalanobis is None else args.sigma_mahalanobis
    return cfg.Params(pce_clip=_clip_option(args, "pce"), mahalanobis_clip=_clip_option(args, "mahalanobis"),
                      sigma_fingerprint=sigma_fp, sigma_query=args.sigma_query,
                      sigma_mahalanobis=sigma_maha, refs=refs, pce_threshold=args.pce_threshold,
                      shift_range=shift, rotations=args.rotations, natural_mode=args.natural_mode,
                      search_scales=search)


def _given(args: argparse.Namespace) -> frozenset[str]:
    """The fingerprint-side parameters the user set explicitly (identify: they must equal the store's)."""
    return frozenset(name for name in ("sigma_fingerprint", "sigma_mahalanobis")
                     if getattr(args, name, None) is not None)


def _clip_option(args: argparse.Namespace, method: str):
    """--<method>-clip, else --clip, else the method's default geometry."""
    own = getattr(args, f"{method}_clip")
    if own is not None:
        return cfg.parse_clip(own)
    if args.clip is not None:
        return cfg.parse_clip(args.clip)
    return cfg.PCE_CLIP if method == "pce" else cfg.MAHALANOBIS_CLIP


def _clip_given(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.clip, args.pce_clip, args.mahalanobis_clip))


def _config(args: argparse.Namespace) -> cfg.RunConfig:
    config = cfg.RunConfig(backend=args.backend, device=args.device, workers=args.workers, precision=args.precision,
                           max_host_memory=_bytes("--max-host-memory", args.max_host_memory),
                           max_gpu_memory=_bytes("--max-gpu-memory", args.max_gpu_memory),
                           progress=False if args.quiet else None, cluster=getattr(args, "cluster", None),
                           decode=getattr(args, "decode", "auto"), limits=_limits(args))
    try:
        config.backend_obj()  # a device that is not there (cuda:7, banana) fails here, before any work
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"--backend {args.backend} --device {args.device}: {exc}") from None
    return config


def _bytes(option: str, text: str | None) -> int | None:
    try:
        return cfg.parse_bytes(text)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def _print_manifest(path: str, digest: str) -> None:
    print(f"manifest: {printable(path)}  SHA-256 {digest} (also in manifest.sha256 beside it; keep it elsewhere and "
          f"check with: camid verify {printable(path)} --expect-sha256 {digest})")


def _print_run_manifest(run_dir: str) -> None:
    """:func:`_print_manifest` from the ``manifest.sha256`` the run wrote beside its manifest."""
    with open(os.path.join(run_dir, "manifest.sha256"), encoding="utf-8") as handle:
        _print_manifest(os.path.join(run_dir, "manifest.json"), handle.read().split()[0])


def _limits(args: argparse.Namespace) -> cfg.InputLimits:
    """--max-file-size and --max-decoded-size (default: the config's limits)."""
    given = {"max_file_bytes": getattr(args, "max_file_size", None),
             "max_decoded_bytes": getattr(args, "max_decoded_size", None)}
    values = {}
    for name, text in given.items():
        if text is None:
            continue
        option = "--max-file-size" if name == "max_file_bytes" else "--max-decoded-size"
        try:
            values[name] = cfg.parse_bytes(text)
        except (ValueError, OverflowError):
            raise ValueError(f"{option} must look like 2G, 512M or a number of bytes; got {text!r}") from None
        if values[name] is None or values[name] < 1:
            raise ValueError(f"{option} must be at least 1 byte; got {text!r}")
    return cfg.InputLimits(**values)


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
    from camid_gpu.backend import cuda_devices, get_backend

    devices = cuda_devices()
    for dev in devices:
        print(f"cuda:{dev.index}: {dev.name}, {dev.total_bytes / 2**30:.1f} GiB ({dev.free_bytes / 2**30:.1f} free)")
    if not devices:
        print("CUDA: no device visible to torch")
    print(f"backend 'auto' -> {get_backend('auto').describe()}")
    return EXIT_OK


def cmd_synth(args) -> int:
    from camid_gpu.datasets.synthetic import make_dataset

    t0 = time.perf_counter()
    truth = make_dataset(args.outdir, cameras=args.cameras, per_model=args.per_model, refs=args.refs,
                         disputed_flat=args.flat, disputed_natural=args.natural, height=args.height, width=args.width,
                         jpeg_quality=args.quality, fmt=args.format, portrait=args.portrait, seed=args.seed)
    print(f"wrote {len(truth['images'])} images of {len(truth['cameras'])} cameras to {args.outdir} "
          f"in {time.perf_counter() - t0:.1f} s (ground truth: {os.path.join(args.outdir, 'ground_truth.json')})")
    return EXIT_OK


def cmd_residual(args) -> int:
    from camid_gpu.engine.runner import residual_files

    def show(record):
        h, w = record["shape"]
        print(f"{printable(record['path'])} -> {printable(record['output'])}  ({h}x{w}, std {record['std']:.3f})")

    cfg.check_sigma("sigma", args.sigma)  # inf wrote NaN residual files with exit 0
    skipped: list = []
    errors = residual_files(args.images, args.outdir, sigma=args.sigma, levels=args.levels, wavelet=args.wavelet,
                            clip=cfg.parse_clip(args.clip), channel=args.channel, wiener=args.wiener,
                            config=_config(args), on_record=show, argv=sys.argv, skipped=skipped)
    print_skipped(skipped)
    _print_run_manifest(args.outdir)
    print_errors(errors)
    return EXIT_PARTIAL if errors else EXIT_OK


def cmd_fingerprint(args) -> int:
    from camid_gpu.config import methods_of
    from camid_gpu.engine.runner import fingerprint_folder

    params = _params(args)
    summary = fingerprint_folder(args.refs_dir, args.outdir, methods_of(args.method), params, _config(args),
                                 argv=sys.argv, overwrite=args.overwrite)
    for cam in summary["cameras"]:
        print(f"{printable(cam['camera'])}: {cam['references']} references -> {printable(cam['metadata'])}")
    print_skipped(summary["skipped"])
    print_errors(summary["errors"])
    if not summary["cameras"]:
        print("camid: no fingerprint was built", file=sys.stderr)
        return EXIT_FAIL
    _print_manifest(summary["manifest"], summary["manifest_sha256"])
    return EXIT_PARTIAL if summary["errors"] else EXIT_OK


def cmd_identify(args) -> int:
    from camid_gpu.config import methods_of
    from camid_gpu.engine.run_folder import check_outputs
    from camid_gpu.engine.runner import identify_run

    params, config = _params(args), _config(args)
    extra_files = [p for p in (args.json, args.csv) if p]
    stores = [args.fp_dir] + args.store if args.store else args.fp_dir  # several stores searched together
    check_outputs(list(args.images) + [args.fp_dir] + (args.store or []), files=extra_files, folders=[args.outdir],
                  overwrite=args.overwrite, command="identify")
    methods = methods_of(args.method) if args.method else methods_in_store(stores)
    if args.search_scales and "mahalanobis" in methods:
        methods = ("pce",)
        print("camid: note: --search-scales runs PCE only (the Mahalanobis method has no scale/crop search)",
              file=sys.stderr)

    def write_extra(records, run) -> list[str]:
        if args.json:
            write_json(args.json, {"run": run, "images": records})
        if args.csv:
            write_csv(args.csv, records)
        return extra_files

    run, records = identify_run(stores, args.images, args.outdir, methods, params, config,
                                resume=args.resume, kind=args.kind, clip_given=_clip_given(args),
                                given=_given(args), argv=sys.argv, extra_outputs=write_extra)
    print_identification(records, run["cameras"], methods)
    errors = [r for r in records if is_error(r)]
    print_skipped(run["skipped_inputs"])
    print_errors(errors)
    lone = print_not_comparable(records, len(run["cameras"]))
    found = run["inputs_found"]
    print(f"run folder: {printable(args.outdir)} (results.jsonl, manifest.json); {found['found']} files found: "
          f"{found['images']} images, {found['skipped']} skipped (listed above with the reason); "
          f"{run['processed']} processed, {run['skipped_as_done']} already done, {run['retried']} retried, "
          f"{run['changed']} changed since recorded (flagged), {len(errors)} with errors, "
          f"{lone} not comparable with any fingerprint")
    _print_manifest(run["manifest"], run["manifest_sha256"])
    return EXIT_PARTIAL if errors else EXIT_OK


def methods_in_store(fp_dir: str | list[str]) -> tuple[str, ...]:
    """The methods every fingerprint in ``fp_dir`` (one store or several) has (PCE first)."""
    from camid_gpu.store import load_stores

    store = load_stores(fp_dir)
    common = set.intersection(*(set(fp.methods) for fp in store))
    return tuple(m for m in ("pce", "mahalanobis") if m in common)


def cmd_cluster(args) -> int:
    from camid_gpu.cluster import cluster_images

    if str(args.region).lower() == "full":
        region = None
    elif str(args.region).isdigit():
        region = int(args.region)
    else:
        raise ValueError(f"--region must be a number of pixels or 'full', got {args.region!r}")
    params = cfg.ClusterParams(region=region, pfa=args.pfa, sigma=args.sigma, precision=args.gram_precision)
    result = cluster_images(args.images, args.outdir, params, _config(args), resume=args.resume, argv=sys.argv)
    print_clusters(result, args.outdir)
    print_skipped(result["skipped"])
    print_errors(result["errors"])
    _print_run_manifest(args.outdir)
    return EXIT_PARTIAL if result["errors"] else EXIT_OK


def cmd_verify(args) -> int:
    from camid_gpu.provenance import MANIFEST_NAME, verify_manifest

    path = os.path.join(args.manifest, MANIFEST_NAME) if os.path.isdir(args.manifest) else args.manifest
    if args.expect_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.expect_sha256.strip()):
        raise ValueError(f"--expect-sha256 must be 64 hexadecimal digits, got {args.expect_sha256!r}")
    result = verify_manifest(path, expect_sha256=args.expect_sha256)
    # every field below comes from the manifest, which may be hostile: printable() keeps escapes off the terminal
    for item in result["changed"]:
        print(f"CHANGED  {printable(item['role']):11s} {printable(item['path'])}  recorded "
              f"{printable(item['recorded'][:16])}..., now {item['current'][:16]}...")
    for item in result["missing"]:
        print(f"MISSING  {printable(item['role']):11s} {printable(item['path'])}  "
              f"{printable(item.get('reason', 'no longer exists'))}")
    for item in result["unhashed"]:
        print(f"NO HASH  {printable(item['role']):11s} {printable(item['path'])}  the manifest records no SHA-256 "
              f"and no reason")
    for problem in result["problems"]:
        print(f"INVALID  {printable(problem)}")
    print(f"manifest SHA-256 {result['manifest_sha256']}"
          + (" (as expected)" if args.expect_sha256 and result["ok"] else ""))
    print(f"{result['checked']} files checked: "
          + ("all unchanged" if result["ok"] else
             f"{len(result['changed'])} changed, {len(result['missing'])} missing, {len(result['unhashed'])} without "
             f"a hash, {len(result['problems'])} other problem(s): FAILED"))
    return EXIT_OK if result["ok"] else EXIT_VERIFY_FAILED


def cmd_report(args) -> int:
    from camid_gpu.engine.run_folder import check_outputs
    from camid_gpu.report import write_report

    output = args.output or os.path.join(args.run_dir, "report.html")
    check_outputs(_recorded_inputs(args.run_dir), files=[output], overwrite=args.overwrite)
    write_report(args.run_dir, output, fingerprints_dir=args.fingerprints)
    print(f"report: {printable(output)}")
    return EXIT_OK


def _recorded_inputs(run_dir: str) -> list[str]:
    """The files a report reads (results, manifest, evaluation), the files its manifest lists, and the folders
    of the run's inputs, references and fingerprints: the report may be written beside the run's own files,
    never over them, and never into a folder of evidence (``report RUN -o seized/report.html`` wrote there)."""
    import json

    from camid_gpu.provenance import MANIFEST_NAME

    found = [os.path.join(run_dir, n) for n in ("results.jsonl", MANIFEST_NAME, "evaluation.json", "run.json",
                                                "manifest.sha256")]
    try:
        with open(os.path.join(run_dir, MANIFEST_NAME), encoding="utf-8") as handle:
            manifest = json.load(handle)
        evidence: list[str] = []
        for key in ("inputs", "fingerprints", "outputs"):
            for e in manifest.get(key) or []:
                if isinstance(e, dict) and isinstance(e.get("abspath"), str):
                    found.append(e["abspath"])
                    if key != "outputs":
                        evidence.append(os.path.dirname(e["abspath"]))
                for ref in (e.get("references") if isinstance(e, dict) else None) or []:
                    if isinstance(ref, dict) and isinstance(ref.get("path"), str):
                        evidence.append(os.path.dirname(os.path.abspath(ref["path"])))
        for key in ("fingerprints_dir", "dataset"):
            if isinstance(manifest.get(key), str):
                evidence.append(manifest[key])
        run_home = os.path.realpath(run_dir)
        # a folder of evidence that is the run folder itself (an evaluate run's fingerprints/ lies inside it)
        # leaves the run folder's own files protected above, and the rest of it writable
        found += sorted({f for f in evidence if os.path.realpath(f) != run_home
                         and not run_home.startswith(os.path.realpath(f).rstrip(os.sep) + os.sep)})
    except (OSError, ValueError, AttributeError):
        pass  # no (readable) manifest: the report says so; the run folder's own files are still protected
    return found


def cmd_evaluate(args) -> int:
    from camid_gpu.config import methods_of
    from camid_gpu.engine.runner import evaluate_dataset
    from camid_gpu.evaluate import format_report

    from camid_gpu.engine.run_folder import check_outputs

    outdir = args.outdir or os.path.join(args.dataset_dir, "camid-eval")
    params, config = _params(args), _config(args)
    inputs = [os.path.join(args.dataset_dir, "refs"), os.path.join(args.dataset_dir, "disputed")]
    check_outputs(inputs, files=[args.json] if args.json else [], folders=[outdir], overwrite=args.overwrite,
                  command="evaluate")
    summary = evaluate_dataset(args.dataset_dir, outdir, methods_of(args.method), params, config,
                               resume=args.resume, argv=sys.argv)
    print(format_report(summary))
    if args.json:
        write_json(args.json, summary)
    print(f"\nrun folder: {printable(outdir)} (fingerprints/, results.jsonl, evaluation.json, manifest.json)")
    _print_manifest(summary["manifest"], summary["manifest_sha256"])
    print_skipped(summary.get("skipped_inputs", []))
    print_errors(summary["fingerprint_errors"])
    return EXIT_PARTIAL if summary["images_with_errors"] or summary["fingerprint_errors"] else EXIT_OK


#: the demo's image sizes and Mahalanobis clippings; PCE works on the full frames (the default geometry)
DEMO_SIZES = {"small": dict(height=640, width=768, clip="512"), "paper": dict(height=1000, width=1200, clip="1000")}


def cmd_demo(args) -> int:
    from camid_gpu.config import Params, methods_of
    from camid_gpu.datasets.synthetic import make_dataset
    from camid_gpu.engine.runner import evaluate_dataset
    from camid_gpu.evaluate import format_report

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
    params = Params(mahalanobis_clip=cfg.parse_clip(size["clip"]))
    summary = evaluate_dataset(data, os.path.join(root, "run"), methods_of("both"), params, config)
    t2 = time.perf_counter()
    print(f"fingerprints + identification of {summary['images_total']} images on {summary['backend']}: "
          f"{t2 - t1:.1f} s\n")
    print(format_report(summary))
    _print_manifest(summary["manifest"], summary["manifest_sha256"])
    print(f"\nnote: PCE works on the full {size['height']}x{size['width']} frames (Binghamton's method, the default); "
          f"the Mahalanobis method on {size['clip']}x{size['clip']} centre clippings"
          + (" (`camid demo --size paper`: the paper's 1000x1000)." if args.size == "small" else "."))
    print(f"\n{'kept in' if keep else 'temporary folder'}: {root}")
    return EXIT_OK


def cmd_selftest(args) -> int:
    from camid_gpu.selftest import format_table, run_selftest, write_record

    report = run_selftest()
    print(format_table(report))
    stamp = report.started[:19].replace("-", "").replace(":", "")  # UTC, e.g. 20260101T120000
    out_dir = args.outdir or f"camid-selftest-{stamp}Z"
    json_path, html_path = write_record(report, out_dir)
    print(f"validation record: {json_path}, {html_path}")
    return EXIT_OK if report.passed else EXIT_FAIL


COMMANDS = {"info": cmd_info, "synth": cmd_synth, "residual": cmd_residual, "fingerprint": cmd_fingerprint,
            "identify": cmd_identify, "cluster": cmd_cluster, "evaluate": cmd_evaluate, "verify": cmd_verify,
            "report": cmd_report, "demo": cmd_demo, "selftest": cmd_selftest}
COMMANDS["library"] = lambda args: cmd_library(args, LibraryShared(_config, _print_manifest, EXIT_OK, EXIT_FAIL,
                                                                  EXIT_VERIFY_FAILED, EXIT_PARTIAL))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_FAIL
    from camid_gpu.errors import CamidError

    previous = _terminate_cleanly()
    try:
        return COMMANDS[args.command](args)
    except (CamidError, ValueError, OSError, RuntimeError) as exc:  # e.g. a CUDA device that is not there
        print(f"camid: error: {printable(exc)}", file=sys.stderr)
        return EXIT_FAIL
    except MemoryError as exc:
        print(f"camid: error: out of memory{f' ({printable(exc)})' if str(exc) else ''}; lower --workers or "
              f"--max-host-memory, or use a smaller --clip (results written so far are kept; use --resume)",
              file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("camid: interrupted (results written so far are kept; use --resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("camid: terminated (results written so far are kept; use --resume)", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as exc:  # a bug: one line, not a traceback on an examiner's screen
        print(f"camid: internal error: {type(exc).__name__}: {printable(exc)} (please report this, with the command line)",
              file=sys.stderr)
        return EXIT_FAIL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that files are closed and the pool shut down on the way out."""


def _terminate_cleanly():
    """Make SIGTERM unwind like Ctrl-C (results flushed, workers stopped); None outside the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise _Terminated()

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())

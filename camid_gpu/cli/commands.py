"""The ``camid`` commands: one thin function per command, from parsed arguments to the engine and back.

The parser is in :mod:`camid_gpu.cli.parser`, text tables and CSV in :mod:`camid_gpu.cli.output`.

Exit codes: 0 success; 1 usage or fatal error (message on stderr); 2 ``verify`` failed (files changed or
missing, nothing to check, or the manifest's own SHA-256 not the one expected), or ``report`` read files that
differ from the run's manifest (the report is written, with a banner naming them); 3 completed, but some files
had errors (each listed, with the reason, in the output and on stderr); 130 interrupted (Ctrl-C); 143
terminated (SIGTERM). Results written before an interruption are kept (``--resume``).
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from typing import Sequence

from camid_gpu import config as cfg
from camid_gpu._shared import interrupts
from camid_gpu._shared.jsonio import write_json
from camid_gpu._version import __version__
from camid_gpu.cli import answers
from camid_gpu.cli.defaults import chosen_methods
from camid_gpu.cli.evidence import casework_from_args, cmd_calibrate, load_calibration_arg, print_evidence, write_evidence
from camid_gpu.cli.exits import (  # noqa: F401 (re-exported: camid_gpu.cli)
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_TERMINATED,
    EXIT_VERIFY_FAILED,
)
from camid_gpu.cli.hints import print_hints
from camid_gpu.cli.library import cmd_library
from camid_gpu.cli.options import (
    budget_of,
    clip_given,
    config_of,
    given_of,
    params_of,
    print_manifest,
    print_run_manifest,
)
from camid_gpu.cli.output import print_clusters, print_errors, print_not_comparable, print_skipped, write_csv
from camid_gpu.cli.parser import build_parser
from camid_gpu.io.listing import printable
from camid_gpu.pipeline.records import is_error



# ------------------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    import platform

    from camid_gpu._shared.versions import installed_version

    print(f"camid {__version__}  (python {platform.python_version()}, {platform.machine()})")
    print(f"numpy {installed_version('numpy')}, scipy {installed_version('scipy')}, "
          f"pywavelets {installed_version('pywt')}")
    for module, extra in (("torch", "torch"), ("pytorch_wavelets", "torch"), ("cupy", "cuda"),
                          ("dask", "dist"), ("matplotlib", "report")):
        try:
            if module == "pytorch_wavelets":
                from camid_gpu.backend import import_pytorch_wavelets

                mod = import_pytorch_wavelets()
            else:
                mod = __import__(module)
            print(f"{module}: {installed_version(module) or getattr(mod, '__version__', 'installed')}")
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
    from camid_gpu.cli.video import synth_videos
    from camid_gpu.datasets.synthetic import make_dataset

    if args.videos:
        print(synth_videos(args))
        return EXIT_OK
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
                            config=config_of(args), on_record=show, argv=sys.argv, skipped=skipped)
    print_skipped(skipped)
    print_run_manifest(args.outdir)
    print_errors(errors)
    return EXIT_PARTIAL if errors else EXIT_OK


def cmd_fingerprint(args) -> int:
    from camid_gpu.engine.runner import fingerprint_folder

    params = params_of(args)
    summary = fingerprint_folder(args.refs_dir, args.outdir, chosen_methods(args), params, config_of(args),
                                 argv=sys.argv, overwrite=args.overwrite, add=args.add)
    for cam in summary["cameras"]:
        print(f"{printable(cam['camera'])}: {cam['references']} references -> {printable(cam['metadata'])}")
    answers.print_warnings(summary.get("warnings", []))
    print_skipped(summary["skipped"])
    print_errors(summary["errors"])
    if not summary["cameras"]:
        print("camid: no fingerprint was built", file=sys.stderr)
        return EXIT_FAIL
    print_manifest(summary["manifest"], summary["manifest_sha256"])
    return EXIT_PARTIAL if summary["errors"] else EXIT_OK


def cmd_identify(args) -> int:
    from camid_gpu.engine.run_folder import check_outputs
    from camid_gpu.engine.runner import identify_run

    params, config = params_of(args), config_of(args)
    extra_files = [p for p in (args.json, args.csv) if p]
    stores = [args.fp_dir] + args.store if args.store else args.fp_dir  # several stores searched together
    check_outputs(list(args.images) + [args.fp_dir] + (args.store or []), files=extra_files, folders=[args.outdir],
                  overwrite=args.overwrite, command="identify")
    methods = chosen_methods(args, methods_in_store(stores, args.unverified_store))
    calibration = load_calibration_arg(args, methods)
    if args.search_scales and "mahalanobis" in methods:
        methods = ("pce",)
        print("camid: note: --search-scales runs PCE only (the Mahalanobis method has no scale/crop search)",
              file=sys.stderr)

    def write_extra(records, run) -> list[str]:
        if args.json:
            write_json(args.json, {"run": run, "images": records})
        if args.csv:
            write_csv(args.csv, records)
        return extra_files + ([write_evidence(args.outdir, records, calibration, run["params"],
                                              args.lr_outside_calibration)] if calibration else [])

    run, records = identify_run(stores, args.images, args.outdir, methods, params, config,
                                resume=args.resume, kind=args.kind, clip_given=clip_given(args),
                                given=given_of(args), argv=sys.argv, extra_outputs=write_extra,
                                on_records=answers.live_lines(args.quiet), unverified_store=args.unverified_store,
                                adopt_unverified=args.adopt_unverified)
    answers.print_answers(records, methods)
    print_hints(records, stores, run["params"])
    if calibration:
        print_evidence(os.path.join(args.outdir, "evidence.json"))
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
    print_manifest(run["manifest"], run["manifest_sha256"])
    return EXIT_PARTIAL if errors else EXIT_OK


def methods_in_store(fp_dir: str | list[str], unverified: bool = False) -> tuple[str, ...]:
    """The methods every fingerprint in ``fp_dir`` (one store or several) has (PCE first)."""
    from camid_gpu.store import load_stores

    store = load_stores(fp_dir, unverified=unverified)
    common = set.intersection(*(set(fp.methods) for fp in store))
    return tuple(m for m in ("pce", "mahalanobis") if m in common)


def cmd_cluster(args) -> int:
    from camid_gpu.cluster import cluster_images

    if str(args.region).lower() == "full":
        region = None
    elif str(args.region).lower() == "auto":
        region = "auto"
    elif str(args.region).isdigit():
        region = int(args.region)
    else:
        raise ValueError(f"--region must be 'auto', 'full' or a number of pixels, got {args.region!r}")
    params = cfg.ClusterParams(region=region, pfa=args.pfa, sigma=args.sigma, precision=args.gram_precision)
    result = cluster_images(args.images, args.outdir, params, config_of(args), resume=args.resume, argv=sys.argv,
                            adopt_unverified=args.adopt_unverified)
    print_clusters(result, args.outdir)
    print_skipped(result["skipped"])
    print_errors(result["errors"])
    print_run_manifest(args.outdir)
    return EXIT_PARTIAL if result["errors"] else EXIT_OK


def cmd_verify(args) -> int:
    from camid_gpu.cli.verify import verify

    return EXIT_OK if verify(args.manifest, args.expect_sha256, library=args.library) else EXIT_VERIFY_FAILED


def cmd_report(args) -> int:
    from camid_gpu.engine.run_folder import check_outputs
    from camid_gpu.report import write_checked_report

    output = args.output or os.path.join(args.run_dir, "report.html")
    check_outputs(_recorded_inputs(args.run_dir), files=[output, output + ".sha256"], overwrite=args.overwrite)
    output, digest, problems = write_checked_report(args.run_dir, output, fingerprints_dir=args.fingerprints,
                                                    progress=False if args.quiet else None,
                                                    host_budget=budget_of(args))
    print(f"report: {printable(output)}  SHA-256 {digest} (also in {printable(output)}.sha256)")
    for problem in problems:  # the report's banner says the same, at the top
        print(f"camid: warning: chain of custody: {printable(problem)}", file=sys.stderr)
    return EXIT_VERIFY_FAILED if problems else EXIT_OK


def _recorded_inputs(run_dir: str) -> list[str]:
    """The files a report reads (results, manifest, evaluation), the files its manifest lists, and the folders
    of the run's inputs, references and fingerprints: the report may be written beside the run's own files,
    never over them, and never into a folder of evidence (``report RUN -o seized/report.html`` wrote there)."""
    from camid_gpu._shared import custody
    from camid_gpu.provenance import MANIFEST_NAME

    found = [os.path.join(run_dir, n) for n in ("results.jsonl", MANIFEST_NAME, "evaluation.json", "run.json",
                                                "manifest.sha256")]
    try:
        recorded = custody.read_manifest(os.path.join(run_dir, MANIFEST_NAME))
        manifest = recorded.data
        evidence: list[str] = []
        for key in ("inputs", "fingerprints", "outputs"):
            for e in manifest.get(key) or []:
                where = custody.locate(e, recorded).where if isinstance(e, dict) else None  # where it lies now
                if where is not None:
                    found.append(where)
                    if key != "outputs":
                        evidence.append(os.path.dirname(where))
                for ref in (e.get("references") if isinstance(e, dict) else None) or []:
                    if isinstance(ref, dict) and isinstance(ref.get("path"), str):
                        evidence.append(os.path.dirname(os.path.abspath(ref["path"])))
        folders = (custody.resolve_folder(manifest.get(k), recorded) for k in ("fingerprints_dir", "dataset"))
        evidence += [f for f in folders if f is not None]
        run_home = os.path.realpath(run_dir)
        # a folder of evidence that is the run folder itself (an evaluate run's fingerprints/ lies inside it)
        # leaves the run folder's own files protected above, and the rest of it writable
        found += sorted({f for f in evidence if os.path.realpath(f) != run_home
                         and not run_home.startswith(os.path.realpath(f).rstrip(os.sep) + os.sep)})
    except (OSError, ValueError, AttributeError):
        pass  # no (readable) manifest: the report says so; the run folder's own files are still protected
    return found


def cmd_evaluate(args) -> int:
    from camid_gpu.engine.runner import evaluate_dataset
    from camid_gpu.evaluate import format_report

    from camid_gpu.engine.run_folder import check_outputs

    outdir = args.outdir or os.path.join(args.dataset_dir, "camid-eval")
    methods = chosen_methods(args)  # --paper: both methods on the paper's clipping
    params, config = params_of(args), config_of(args)
    inputs = [os.path.join(args.dataset_dir, "refs"), os.path.join(args.dataset_dir, "disputed")]
    check_outputs(inputs, files=[args.json] if args.json else [], folders=[outdir], overwrite=args.overwrite,
                  command="evaluate")
    calibration = load_calibration_arg(args, methods)
    summary = evaluate_dataset(args.dataset_dir, outdir, methods, params, config,
                               resume=args.resume, argv=sys.argv, adopt_unverified=args.adopt_unverified,
                               extra_outputs=(lambda records, summary: [write_evidence(
                                   outdir, records, calibration, summary["params"], args.lr_outside_calibration)])
                               if calibration else None)
    print(format_report(summary))
    if calibration:
        print_evidence(os.path.join(outdir, "evidence.json"))
    if args.json:
        write_json(args.json, summary)
    print(f"\nrun folder: {printable(outdir)} (fingerprints/, results.jsonl, evaluation.json, manifest.json)")
    print_manifest(summary["manifest"], summary["manifest_sha256"])
    print_skipped(summary.get("skipped_inputs", []))
    answers.print_warnings(summary.get("fingerprint_warnings", []))
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
    config = config_of(args)
    params = Params(mahalanobis_clip=cfg.parse_clip(size["clip"]))
    summary = evaluate_dataset(data, os.path.join(root, "run"), methods_of("both"), params, config)
    t2 = time.perf_counter()
    print(f"fingerprints + identification of {summary['images_total']} images on {summary['backend']}: "
          f"{t2 - t1:.1f} s\n")
    print(format_report(summary))
    print_manifest(summary["manifest"], summary["manifest_sha256"])
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
            "report": cmd_report, "demo": cmd_demo, "selftest": cmd_selftest, "calibrate": cmd_calibrate,
            "library": cmd_library}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_FAIL
    from camid_gpu.errors import CamidError

    from camid_gpu.pipeline.casework import recorded
    from camid_gpu.io.listing import including_hidden
    from camid_gpu.cli.video import video_options_of
    from camid_gpu.engine.video import video_options

    previous = _terminate_cleanly()
    try:
        with recorded(casework_from_args(args)), including_hidden(getattr(args, "include_hidden", False)), \
                video_options(video_options_of(args)):
            code = COMMANDS[args.command](args)  # every manifest of the command records the casework
        interrupts.check()  # a signal whose exception was swallowed on the way (it must not end as exit 0)
        return code
    except (CamidError, ValueError, OSError, RuntimeError) as exc:  # e.g. a CUDA device that is not there
        print(f"camid: error: {printable(exc)}{_remedy(exc, args)}", file=sys.stderr)
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
        interrupts.clear()
        for signum, handler in zip((signal.SIGTERM, signal.SIGINT), previous or ()):
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(signum, handler)


def _remedy(exc: BaseException, args) -> str:
    """What to do after a full disk (the error names the file being written): free space and go on."""
    from camid_gpu._shared.files import NO_SPACE_ERRNOS

    if not (isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS):
        return ""
    if hasattr(args, "resume"):
        return ("; free space on that disk (or choose another output) and run the same command with --resume: "
                "the results written so far are kept and checked, and the run goes on from there")
    return "; free space on that disk (or choose another output) and run the same command again"


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that files are closed and the pool shut down on the way out."""


def _terminate_cleanly():
    """Make SIGTERM unwind like Ctrl-C (results flushed, workers stopped), and neither be lost while processes
    fork (:mod:`camid_gpu._shared.interrupts`); returns the previous (SIGTERM, SIGINT) handlers, None outside the
    main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    interrupts.clear()

    def on_term(signum, frame):
        interrupts.request(_Terminated)

    def on_int(signum, frame):
        interrupts.request(KeyboardInterrupt)

    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # e.g. a background job: Ctrl-C stays ignored
    return signal.signal(signal.SIGTERM, on_term), None if ignored else signal.signal(signal.SIGINT, on_int)


if __name__ == "__main__":
    sys.exit(main())

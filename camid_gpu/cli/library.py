"""``camid library``: init, add, retire, list, info, search, link, verify (the parser and the commands)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from camid_gpu import config as cfg
from camid_gpu.cli.evidence import (
    add_calibration_option,
    add_casework_options,
    load_calibration_arg,
    print_evidence,
    write_evidence,
)
from camid_gpu.cli.video import add_frames_option
from camid_gpu.cli.exits import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, EXIT_VERIFY_FAILED
from camid_gpu.cli.options import config_of, print_manifest
from camid_gpu.io.listing import printable

SUBCOMMANDS = ("init", "add", "retire", "list", "info", "search", "link", "verify")


def add_library_parser(sub, add_backend_options, add_dask_option) -> None:
    """The ``library`` command group, on the top-level subparsers ``sub`` (``add_backend_options`` and
    ``add_dask_option``: the parser's execution options, passed in so that this module does not import it)."""
    top = sub.add_parser("library", help="the fingerprint library: every camera fingerprinted, searched at scale")
    cmds = top.add_subparsers(dest="library_command", metavar="SUBCOMMAND")
    p = cmds.add_parser("init", help="make an empty library folder")
    p.add_argument("library")
    p = cmds.add_parser("add", help="add fingerprint stores (camid fingerprint) and cluster runs (camid cluster)")
    p.add_argument("library")
    p.add_argument("stores", nargs="+", help="fingerprint folders, cluster run folders or their fingerprints/<group>")
    p.add_argument("--case", default=None, help="case identifier (required for cluster fingerprints: names them)")
    p.add_argument("--label", default=None, help="free text kept with every camera of this add")
    p = cmds.add_parser("retire", help="stop searching a camera (kept, with its history)")
    p.add_argument("library")
    p.add_argument("camera")
    p.add_argument("--reason", required=True)
    for name, text in (("list", "one line per camera"), ("info", "cameras, sensor sizes, cases, size on disk")):
        p = cmds.add_parser(name, help=text)
        p.add_argument("library")
        p.add_argument("--json", action="store_true", help="print JSON")
        _add_expect_version(p)
    p = cmds.add_parser("verify", help="check every array against its hash and the catalogue")
    p.add_argument("library")
    _add_expect_version(p)
    p = cmds.add_parser("link", help="pairs of library fingerprints that come from one camera")
    p.add_argument("library")
    _add_expect_version(p)
    p.add_argument("--pfa", type=float, default=cfg.LIBRARY_LINK_PFA,
                   help=f"probability of any false link over all comparisons (default {cfg.LIBRARY_LINK_PFA:g})")
    p.add_argument("--json", default=None, help="also write the links as JSON here")
    p = cmds.add_parser("search", help="which library cameras took these images (screen, then confirm by PCE)")
    p.add_argument("library")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--outdir", required=True, help="run folder (results.jsonl, manifest.json)")
    p.add_argument("--resume", action="store_true", help="continue the run folder's run (see identify --resume)")
    p.add_argument("--kind", choices=cfg.KIND_CHOICES, default=cfg.KIND)
    p.add_argument("--miss", type=float, default=cfg.LIBRARY_SCREEN_MISS,
                   help=f"screening miss rate at the decision threshold (default {cfg.LIBRARY_SCREEN_MISS:g})")
    p.add_argument("--sigma-query", type=float, default=cfg.SIGMA_QUERY)
    p.add_argument("--pce-threshold", type=float, default=cfg.PCE_THRESHOLD,
                   help=f"per-comparison PCE threshold ({cfg.PCE_THRESHOLD:g}); the decision's is raised by Sidak "
                        f"over the cameras compared")
    p.add_argument("--shift-range", default=cfg.shift_range_text(cfg.SHIFT_RANGE), help="as identify (a non-zero range is confirmed unscreened)")
    p.add_argument("--rotations", choices=cfg.ROTATION_CHOICES, default=cfg.ROTATIONS)
    p.add_argument("--search-scales", default=None, metavar="LO:HI:STEP", help="as identify (unscreened)")
    p.add_argument("--search-crops", action="store_true", default=cfg.SEARCH_CROPS, help="as identify")
    _add_expect_version(p)
    add_dask_option(p, "the screening tiles")
    add_backend_options(p)
    add_frames_option(p)  # a video query: its frames pooled
    add_calibration_option(p)
    add_casework_options(p)


def _add_expect_version(p) -> None:
    p.add_argument("--expect-version", default=None, metavar="HEX",
                   help="the library's version as kept outside it (printed by add, retire and verify): a library "
                        "whose catalogue is not that version is refused")


def _keep_version(library: str, version: str) -> None:
    print(f"library version {version}")
    _keep_hint(library, version)


def _keep_hint(library: str, version: str) -> None:
    print(f"  keep the version outside the library (case file, notes): 'camid library verify {printable(library)} "
          f"--expect-version {version}' checks the library against it, as does --expect-version on search, link, "
          f"list and info")


def _print_notes(out: dict) -> None:
    """What the catalogue check could not check, said (on stderr, first few and the count)."""
    for note in out.get("notes") or []:
        print(f"camid: note: {printable(note)}", file=sys.stderr)
    more = (out.get("notes_total") or 0) - len(out.get("notes") or [])
    if more > 0:
        print(f"camid: note: and {more} more such notes ('camid library verify' counts them)", file=sys.stderr)


def cmd_library(args: argparse.Namespace) -> int:
    if not args.library_command:
        print("camid library: give a subcommand: " + ", ".join(SUBCOMMANDS), file=sys.stderr)
        return EXIT_FAIL
    return globals()[f"_cmd_{args.library_command}"](args)


def _cmd_init(args) -> int:
    from camid_gpu.library import init_library

    init_library(args.library)
    print(f"library: {printable(args.library)} (empty)")
    return EXIT_OK


def _cmd_add(args) -> int:
    from camid_gpu.library import add_stores

    out = add_stores(args.library, args.stores, case=args.case, label=args.label)
    for name in out["added"]:
        print(f"added {printable(name)}")
    for name in out["unchanged"]:
        retired = out["retired"].get(name)
        print(f"unchanged {printable(name)} (the same fingerprint is in the library already"
              + (f"; it stays retired ({printable(retired)}) and is not searched)" if retired else ")"))
    _keep_version(args.library, out["version"])
    return EXIT_OK


def _cmd_retire(args) -> int:
    from camid_gpu.library import retire_camera

    version = retire_camera(args.library, args.camera, args.reason)
    print(f"retired {printable(args.camera)}")
    _keep_version(args.library, version)
    return EXIT_OK


def _cmd_list(args) -> int:
    from camid_gpu.library import library_info

    info = library_info(args.library, args.expect_version)
    _print_notes(info)
    if args.json:
        print(json.dumps(info["rows"], indent=1, sort_keys=True, default=str))
        return EXIT_OK
    for r in info["rows"]:
        state = f"retired {r['retired_utc']}: {r['retired_reason']}" if r["retired_utc"] else "active"
        print(f"{printable(r['name']):28s} {r['kind']:8s} {r['rows']}x{r['cols']:<6d} case {printable(r['case_id'] or '-'):12s} "
              f"added {r['added_utc']}  {printable(state)}")
    return EXIT_OK


def _cmd_info(args) -> int:
    from camid_gpu.library import library_info

    info = library_info(args.library, args.expect_version)
    _print_notes(info)
    info.pop("rows")
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True, default=str))
        return EXIT_OK
    print(f"library {printable(info['library'])}: {info['cameras']} cameras searched, {info['retired']} retired; "
          f"schema {info['schema']}; {info['disk_bytes'] / 2**20:.1f} MiB on disk; version {info['version']}")
    for name, count in info["geometries"].items():
        print(f"  {name}: {count} cameras")
    print(f"  cases: {', '.join(printable(c) for c in info['cases']) or '-'}")
    return EXIT_OK


def _cmd_verify(args) -> int:
    from camid_gpu.library import verify_library

    result = verify_library(args.library, args.expect_version)
    for problem in result["problems"]:
        print(f"INVALID  {printable(problem)}")
    for path in result["orphans"]:
        print(f"note: {printable(path)} is in no catalogue entry (left by an interrupted add, or put there: never "
              f"read by camid)")
    _print_notes(result)
    print(f"{result['cameras']} cameras checked, version {result['version']}"
          + (" (as expected)" if args.expect_version and result["ok"] else "") + ": "
          + ("all consistent" if result["ok"] else f"{len(result['problems'])} problem(s): FAILED"))
    if result["ok"] and not args.expect_version:
        _keep_hint(args.library, result["version"])
    return EXIT_OK if result["ok"] else EXIT_VERIFY_FAILED


def _cmd_link(args) -> int:
    from camid_gpu._shared.jsonio import write_json
    from camid_gpu.library.link import link_library

    out = link_library(args.library, args.pfa, expect_version=args.expect_version)
    for link in out["links"]:
        print(f"{printable(link['a'])} ~ {printable(link['b'])}: z {link['z']:.1f}, PCE {link['pce']:.1f}"
              f"{', turned ' + str(link['rotation']) if link['rotation'] else ''} (cases {link['cases']})")
    print(f"{len(out['links'])} link(s) among {out['cameras']} cameras ({out['tests']} comparisons, pfa {args.pfa:g})")
    if args.json:
        write_json(args.json, out)
    return EXIT_OK


def _cmd_search(args) -> int:
    from camid_gpu.cli.output import print_errors, print_skipped
    from camid_gpu.library import search_library
    from camid_gpu.pipeline.records import is_error

    try:
        shift = cfg.parse_shift_range(args.shift_range)
    except ValueError as exc:
        raise ValueError(f"--shift-range: {exc}") from None
    params = cfg.Params(sigma_query=args.sigma_query, pce_threshold=args.pce_threshold, shift_range=shift,
                        rotations=args.rotations, search_scales=cfg.parse_scales(args.search_scales),
                        search_crops=args.search_crops)
    calibration = load_calibration_arg(args)
    run, records = search_library(args.library, args.images, args.outdir, params, config_of(args), resume=args.resume,
                                  kind=args.kind, miss=args.miss, argv=sys.argv,
                                  extra_outputs=(lambda recs: [write_evidence(
                                      args.outdir, recs, calibration, params.to_dict(), args.lr_outside_calibration)])
                                  if calibration else None, on_records=_live_lines(args.quiet),
                                  expect_version=args.expect_version)
    errors = [r for r in records if is_error(r)]
    if args.quiet:  # each answer once: as it is done, or here when the live lines were off
        for r in records:
            print(search_line(r))
    for note in run["library"]["unchecked"]:
        print(f"camid: note: {printable(note)}", file=sys.stderr)
    refused = run["library"]["refused"]
    for camera, why in refused.items():
        print(f"camid: error: library camera {printable(camera)} was REFUSED (not compared): {printable(why)}",
              file=sys.stderr)
    print_skipped(run["skipped_inputs"])
    print_errors(errors)
    print(f"library {printable(args.library)} version {run['library']['version']}; {run['processed']} processed, "
          f"{run['skipped_as_done']} already done, {len(errors)} with errors"
          + (f"; {len(refused)} camera(s) refused: the answers above do not cover them" if refused else ""))
    if calibration:
        print_evidence(os.path.join(args.outdir, "evidence.json"))
    print_manifest(run["manifest"], run["manifest_sha256"])
    return EXIT_PARTIAL if errors or refused else EXIT_OK


def search_line(record: dict, index: int | None = None, total: int | None = None) -> str:
    """One image's answer: identify's line (:func:`camid_gpu.cli.answers.image_line`, one number format) with
    what the library search adds: cameras compared and shortlisted, "not comparable" when no camera of the
    library has a geometry the image matches or fits (never "no camera"), and the cameras refused."""
    from camid_gpu.cli.answers import image_line

    lib = record.get("library")
    counted = image_line(record, index or 0, total or 0)
    if index is None:  # the answers printed after the run (--quiet): no counter
        counted = counted.split("] ", 1)[1]
    if not lib:  # an error record
        return counted
    where = (f"[{index}/{total}] " if index is not None else "") + printable(record["path"])
    if not lib["compared"]:
        line = (f"{where}: not comparable (no library camera has a sensor frame this image matches or fits; "
                f"{lib['not_comparable']} of other geometries)")
    elif not record["pce"].get("scores"):
        best = lib["screen_top"][0] if lib["screen_top"] else None
        line = (f"{where}: none{' of the cameras compared' if lib.get('refused') else ''} ({lib['compared']} "
                f"compared, none shortlisted"
                + (f"; best screen z {best['z']:.1f} ({printable(best['camera'])}), threshold {lib['threshold']['z']:.1f}"
                   if best else "") + ")")
    else:
        line = f"{counted} [{lib['compared']} compared, {len(lib['shortlist'])} shortlisted]"
    if lib.get("refused"):
        line += f" REFUSED, not compared: {', '.join(printable(c) for c in lib['refused'])}"
    return line


def _live_lines(quiet: bool):
    """``on_records``: each image's :func:`search_line` as it is written; None when quiet."""
    if quiet:
        return None

    def show(records, progress) -> None:
        for i, record in enumerate(records):
            progress.note(search_line(record, progress.done + i + 1, progress.total))

    return show

"""The command line of evidence strength: ``camid calibrate``, ``--calibration`` on identify/evaluate, and the
casework options (``--case``, ``--exhibit``, ``--examiner``, ``--note``) of every command that makes a run."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from camid_gpu import config as cfg
from camid_gpu._shared.jsonio import write_json
from camid_gpu.pipeline import casework
from camid_gpu.io.listing import printable

#: the commands that make a run (a manifest), and the arguments naming their input folders (for --exhibit)
RUN_COMMANDS = {"fingerprint": ("refs_dir",), "identify": ("images",), "evaluate": ("dataset_dir",),
                "residual": ("images",), "cluster": ("images",), "calibrate": ("runs",),
                "library search": ("images",)}  # not "library add", whose --case names the cameras' case


def add_casework_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("casework record (kept in the manifest, shown at the top of the report)")
    g.add_argument("--case", default=None, help="case reference")
    g.add_argument("--exhibit", action="append", default=None, metavar="[FOLDER=]LABEL",
                   help="exhibit label of an input folder (FOLDER=LABEL; LABEL alone with one input; a LABEL holds "
                        "no '='); repeatable")
    g.add_argument("--examiner", default=None, help="the examiner's name or identifier")
    g.add_argument("--note", action="append", default=None, help="a note for the record; repeatable")


def add_calibration_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", default=None, metavar="CAL",
                   help="a calibration (camid calibrate -o CAL): each comparable (image, camera) pair within its "
                        "conditions also gets a bounded log10 likelihood ratio and its verbal equivalent "
                        "(RUN/evidence.json); the threshold decision is unchanged. PCE only. Needs NumPy only")
    p.add_argument("--lr-outside-calibration", action="store_true",
                   help="with --calibration: also show the number for pairs outside the calibration's conditions, "
                        "marked as such (never a verbal equivalent)")


def add_calibrate_parser(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="fit and validate a score-to-likelihood-ratio calibration: from evaluate "
                                         "runs, from the lab's own reference images, or simulated like a case")
    p.add_argument("runs", nargs="*", help="camid evaluate run folders (images of known cameras)")
    p.add_argument("-o", "--outdir", default=None, help="calibration folder (calibration.json, validation.html, "
                                                         "manifest.json)")
    p.add_argument("--references", default=None, metavar="REFS",
                   help="calibrate on the lab's own cameras: REFS/<camera>/ holds real images of each camera "
                        "(flats and naturals; kind by name or content as camid determines it); same-source pairs by "
                        "leave-one-image-out fingerprints, different-source pairs against the other cameras")
    p.add_argument("--library", default=None, metavar="LIB",
                   help="as --references, from the references recorded with each active camera of library LIB that "
                        "are still at hand and unchanged (checked against their recorded SHA-256)")
    p.add_argument("--like", default=None, metavar="SEIZED",
                   help="calibrate on simulated cameras matched to the images in SEIZED (sizes, scaled down; JPEG "
                        "qualities; kinds); every LR from it says 'calibrated on simulated data'")
    p.add_argument("--like-max-side", type=int, default=cfg.CALIBRATION_LIKE_MAX_SIDE, metavar="PX",
                   help="with --like: the simulated images' long side at most PX (the seized sizes scaled down, "
                        "aspect kept; stated in the calibration) (default %(default)s)")
    p.add_argument("--crops", type=float, default=None, metavar="FRACTION",
                   help="with --references, --library or --like: also calibrate the crop search, on centre crops of FRACTION of "
                        "each side of every held-out (or simulated) questioned image (e.g. 0.75)")
    p.add_argument("--validate", default=None, metavar="CAL",
                   help="print the validation of calibration CAL; with RUN folders of other cameras, validate CAL "
                        "on them instead (nothing is written)")
    p.add_argument("--calibrator", choices=cfg.CALIBRATORS, default="logistic",
                   help="score-to-LR model (lir): logistic regression (default), kde, isotonic (table models are "
                        "made non-decreasing in the score before they are stored)")
    p.add_argument("--different-source", choices=cfg.DIFFERENT_SOURCE_CHOICES, default="all",
                   help="population of the alternative hypothesis: every other camera (default) or only other "
                        "cameras of the same model")
    p.add_argument("--kind", choices=("flat", "natural"), action="append", default=None,
                   help="calibrate only this image kind (repeatable; default every kind in the runs)")
    p.add_argument("--models", default=None, metavar="JSON",
                   help="a JSON object camera -> model (default: a camid-synth ground truth, else with --references or "
                        "--library folder names <model>_<n> when they share models, else EXIF make/model)")
    p.add_argument("--overwrite", action="store_true", help="replace the calibration already in the folder")
    p.add_argument("--backend", choices=cfg.BACKEND_CHOICES, default=cfg.BACKEND,
                   help="with --references, --library or --like: the backend of the PCE runs (default %(default)s)")
    add_casework_options(p)


def casework_from_args(args: argparse.Namespace) -> casework.Casework | None:
    command = args.command if args.command != "library" else f"library {getattr(args, 'library_command', None)}"
    names = RUN_COMMANDS.get(command)
    if names is None:
        return None
    folders: list[str] = []
    for name in names:
        value = getattr(args, name, None)
        folders += list(value) if isinstance(value, list) else [value] if value else []
    return casework.casework_of(getattr(args, "case", None), getattr(args, "examiner", None),
                                getattr(args, "exhibit", None), getattr(args, "note", None), folders)


# ------------------------------------------------------------------------------------------------
# --calibration on identify and evaluate
# ------------------------------------------------------------------------------------------------
def load_calibration_arg(args: argparse.Namespace, methods: Sequence[str] = ("pce",)):
    """The calibration of ``--calibration`` (its folder and model checked before any image is read), or None.
    Refused with a method that has no calibrated score (the Mahalanobis method's memberships are not scores)."""
    if not getattr(args, "calibration", None):
        if getattr(args, "lr_outside_calibration", False):
            raise ValueError("--lr-outside-calibration needs --calibration CAL")
        return None
    if "pce" not in methods:
        raise ValueError("--calibration calibrates the PCE score; --method mahalanobis has no calibrated score, so no "
                         "likelihood ratio could be written: run with --method pce (or both)")
    from camid_gpu.evidence.apply import load_calibration

    return load_calibration(args.calibration)


def write_evidence(run_dir: str, records: Sequence[dict[str, Any]], calibration, geometry: dict[str, Any] | None = None,
                   show_outside: bool = False) -> str:
    """``RUN/evidence.json`` (see :func:`camid_gpu.evidence.apply.evidence_document`); returns its path."""
    from camid_gpu.evidence.apply import EVIDENCE_NAME, evidence_document

    return write_json(os.path.join(run_dir, EVIDENCE_NAME), evidence_document(records, calibration, geometry,
                                                                              show_outside))


def lr_text(cam: str, lr: dict[str, Any] | None) -> str:
    """One pair's LR in words for the console: the calibrated LR and its verbal equivalent, or why there is none
    (and the marked number with --lr-outside-calibration); "calibrated on simulated data" where it is."""
    if not lr:
        return f"{printable(cam)}: no LR"
    simulated = f" [{lr['calibrated_on']}]" if lr.get("calibrated_on") else ""
    if lr.get("log10_lr") is not None:
        bound = f" (at the {lr['at_bound']} bound)" if lr.get("at_bound") else ""
        return f"{printable(cam)}: log10 LR {lr['log10_lr']:+.2f}{bound}, {lr['verbal']}{simulated}"
    why = "; ".join(lr.get("outside") or []) or "no LR"
    shown = lr.get("log10_lr_outside_calibration")
    number = (f"; outside the calibration the model gives log10 LR {shown:+.2f} (NOT a calibrated LR; no verbal "
              f"equivalent)" if shown is not None else "")
    return f"{printable(cam)}: no calibrated LR ({printable(why)}){number}{simulated}"


def print_evidence(path: str) -> None:
    """One line per image: the threshold decision and, beside it, the LR of the best camera and of the
    runner-up (by the search-corrected score), each with its condition, or why there is no calibrated LR."""
    from camid_gpu.evidence.apply import VERBAL_SCALE_NAME

    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    cal = doc["calibration"]  # the hypotheses' text comes from the calibration file: printable() keeps escapes out
    print(f"\nlikelihood ratios (calibration {cal['sha256'][:16]}...; Hp: {printable(cal['hypotheses']['hp'])}; "
          f"Hd: {printable(cal['hypotheses']['hd'])}; verbal scale: {VERBAL_SCALE_NAME})")
    if cal.get("simulated"):
        print("  CALIBRATED ON SIMULATED DATA (camid calibrate --like): every LR below comes from simulated cameras; "
              "assumptions: " + printable("; ".join(cal.get("assumptions") or [])))
    outside = 0
    for img in doc["images"]:
        ranking = img.get("ranking") or list(img["cameras"])
        print(f"  {printable(img['path'])}: decision {printable(img['decision'] or '(none)')}")
        for label, cam in zip(("best", "runner-up"), ranking[:2]):
            lr = img["cameras"].get(cam)
            condition = f" [{lr['condition_text']}]" if lr and lr.get("condition_text") else ""
            print(f"    {label} {lr_text(cam, lr)}{printable(condition)}")
        outside += any(c.get("log10_lr") is None for c in img["cameras"].values())
    if outside:
        print(f"  {outside} image(s) with pairs outside the conditions the calibration was fitted on: those pairs have "
              f"no calibrated LR and no verbal equivalent (see each line; RUN/evidence.json lists every pair)")


# ------------------------------------------------------------------------------------------------
# camid calibrate
# ------------------------------------------------------------------------------------------------
def _models_arg(path: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        models = json.load(handle)
    if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
        raise ValueError(f"--models {path}: a JSON object camera -> model name is needed")
    return models


def format_validation(models: dict[str, Any]) -> str:
    from camid_gpu.evaluate import table

    rows = []
    for name, k in models.items():
        v = k["validation"]
        b = k.get("bounds") or {}
        rows.append([name, v["same_source"], v["different_source"], v["cllr"], v["cllr_min"],
                     v["rate_misleading_same_source"], v["rate_misleading_different_source"],
                     f"{b.get('lower', float('nan')):+.2f}..{b.get('upper', float('nan')):+.2f}" if b else "-"])
    text = table(["model (kind search)", "same-source", "different-source", "Cllr", "Cllr-min", "RME same",
                  "RME different", "log10 LR bounds"], rows)
    for name, k in models.items():
        text += f"\n{name}: rates of misleading evidence by population: " + ", ".join(
            f"{pop} {rate:.3f}" for pop, rate in k["validation"]["misleading_by_population"].items())
    return text


def _pairs_of(args: argparse.Namespace, work: str) -> tuple[Any, dict[str, Any], list[str]]:
    """(pairs, how they were made, input files) of the one source given: runs, --references or --like."""
    from camid_gpu.evidence.pairs import read_pairs

    given = [bool(args.runs), bool(args.references), bool(args.library), bool(args.like)]
    if sum(given) != 1 or not args.outdir:
        raise ValueError("camid calibrate (RUN... | --references REFS | --library LIB | --like SEIZED) -o CAL "
                         "(or --validate CAL [RUN...])")
    models = _models_arg(args.models)
    if args.library:
        from camid_gpu.cli.calibration_data import library_references, pairs_from_references

        cameras, notes = library_references(args.library)
        for note in notes:
            print(f"camid: note: {printable(note)}", file=sys.stderr)
        data, source, files = pairs_from_references(args.library, work, models, args.backend, args.crops, cameras)
        source["library_notes"] = notes
        return data, source, files
    if args.references:
        from camid_gpu.cli.calibration_data import pairs_from_references

        return pairs_from_references(args.references, work, models, args.backend, args.crops)
    if args.like:
        from camid_gpu.cli.calibration_data import pairs_like

        return pairs_like(args.like, work, args.like_max_side, args.backend, args.crops)
    if args.crops is not None:
        raise ValueError("--crops needs --references, --library or --like (evaluate runs bring their own crops, "
                         "if any)")
    inputs = [os.path.join(r, name) for r in args.runs for name in ("results.jsonl", "manifest.json")]
    return read_pairs(args.runs, models), {"from": "camid evaluate runs", "simulated": False}, inputs


def cmd_calibrate(args: argparse.Namespace) -> int:
    if args.validate:
        return _validate(args)
    import shutil
    import tempfile

    from camid_gpu.engine import run_folder
    from camid_gpu.evidence.apply import CALIBRATION_NAME
    from camid_gpu.evidence.fit import calibrate
    from camid_gpu.provenance import file_entry, utc_now

    started = utc_now()
    cal_path = os.path.join(args.outdir or ".", CALIBRATION_NAME)
    inputs = list(args.runs or []) + [p for p in (args.references, args.library, args.like) if p]
    run_folder.check_outputs(inputs, folders=[args.outdir] if args.outdir else [], command="calibrate")
    if os.path.exists(cal_path) and not args.overwrite:
        raise ValueError(f"{cal_path} exists; pass --overwrite to replace it, or choose another folder")
    work = tempfile.mkdtemp(prefix="camid-calibrate-")
    try:
        data, source, files = _pairs_of(args, work)
        calibration = calibrate(data, args.calibrator, args.different_source, args.kind, source)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(args.outdir, exist_ok=True)
    with run_folder.locked(args.outdir):
        write_json(cal_path, calibration)
        outputs = [cal_path] + _write_validation_page(args.outdir, calibration)
        params = {"calibrator": args.calibrator, "different_source": args.different_source, "kinds": args.kind,
                  "models": args.models, "references": args.references, "library": args.library, "like": args.like,
                  "like_max_side": args.like_max_side if args.like else None, "crops": args.crops}
        path, digest = run_folder.write_manifest(args.outdir, "calibrate", sys.argv, params, "numpy (lir)", started,
                                                 [file_entry(f, "calibration-input") for f in files], None, outputs,
                                                 kernels="not used")
    print(f"calibration of {len(data.pairs)} pairs ({printable(source['from'])}; models from: "
          f"{'; '.join(sorted(set(data.models_from)))}); score {calibration['score']['name']}, {args.calibrator}")
    if source.get("simulated"):
        print("CALIBRATED ON SIMULATED DATA; assumptions: " + printable("; ".join(source.get("assumptions") or [])))
    print(format_validation(calibration["models"]))
    for line in calibration["not_calibrated"]:
        print(f"camid: note: not calibrated (too few pairs): {printable(line)}; pairs of that kind and search get no "
              f"calibrated LR", file=sys.stderr)
    print(f"calibration: {printable(cal_path)}\nmanifest: {printable(path)} (SHA-256 {digest})")
    return 0


def _write_validation_page(outdir: str, calibration: dict[str, Any]) -> list[str]:
    from camid_gpu.errors import MissingExtraError

    try:
        from camid_gpu.report.evidence import write_validation_page

        return [write_validation_page(os.path.join(outdir, "validation.html"), calibration)]
    except MissingExtraError as exc:
        print(f"camid: note: no validation.html ({exc})", file=sys.stderr)
        return []


def _validate(args: argparse.Namespace) -> int:
    from camid_gpu.evidence.apply import load_calibration

    cal = load_calibration(args.validate)  # the folder checked against its manifest, the model checked
    print(f"calibration {printable(cal.path)} (SHA-256 {cal.sha256}); Hd: {printable(cal.data['hypotheses']['hd'])}")
    if cal.simulated:
        print("CALIBRATED ON SIMULATED DATA; assumptions: "
              + printable("; ".join(cal.data["data"].get("assumptions") or [])))
    if not args.runs:
        print("validation by cross-validation with cameras held out (recorded when it was made):")
        print(format_validation(cal.models))
        return 0
    from camid_gpu.evidence.fit import validate_on

    models = validate_on(cal, args.runs, _models_arg(args.models))
    print(f"validation on {len(args.runs)} other run(s) (none of their cameras was used to fit the calibration):")
    print(format_validation(models))
    for name, entry in models.items():
        if entry.get("outside_left_out"):
            print(f"{name}: {entry['outside_left_out']} pair(s) outside the calibration's conditions left out (they "
                  f"would get no calibrated LR)")
    return 0

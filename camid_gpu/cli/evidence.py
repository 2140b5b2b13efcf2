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
                   help="a calibration (camid calibrate -o CAL): each comparable (image, camera) pair also gets a "
                        "bounded log10 likelihood ratio and its verbal equivalent (RUN/evidence.json); the threshold "
                        "decision is unchanged. Needs NumPy only")


def add_calibrate_parser(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="fit and validate a PCE-to-likelihood-ratio calibration from evaluate runs")
    p.add_argument("runs", nargs="*", help="camid evaluate run folders (images of known cameras)")
    p.add_argument("-o", "--outdir", default=None, help="calibration folder (calibration.json, validation.html, "
                                                         "manifest.json)")
    p.add_argument("--validate", default=None, metavar="CAL",
                   help="print the validation of calibration CAL; with RUN folders of other cameras, validate CAL "
                        "on them instead (nothing is written)")
    p.add_argument("--calibrator", choices=cfg.CALIBRATORS, default="logistic",
                   help="score-to-LR model (lir): logistic regression (default), kde, isotonic")
    p.add_argument("--different-source", choices=cfg.DIFFERENT_SOURCE_CHOICES, default="all",
                   help="population of the alternative hypothesis: every other camera (default) or only other "
                        "cameras of the same model")
    p.add_argument("--kind", choices=("flat", "natural"), action="append", default=None,
                   help="calibrate only this image kind (repeatable; default every kind in the runs)")
    p.add_argument("--models", default=None, metavar="JSON",
                   help="a JSON object camera -> model (default: a camid-synth ground truth, else EXIF make/model)")
    p.add_argument("--overwrite", action="store_true", help="replace the calibration already in the folder")
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
def load_calibration_arg(args: argparse.Namespace):
    """The calibration of ``--calibration`` (checked against its manifest before any work), or None."""
    if not getattr(args, "calibration", None):
        return None
    from camid_gpu.evidence.apply import load_calibration

    return load_calibration(args.calibration)


def write_evidence(run_dir: str, records: Sequence[dict[str, Any]], calibration) -> str:
    """``RUN/evidence.json`` (see :func:`camid_gpu.evidence.apply.evidence_document`); returns its path."""
    from camid_gpu.evidence.apply import EVIDENCE_NAME, evidence_document

    return write_json(os.path.join(run_dir, EVIDENCE_NAME), evidence_document(records, calibration))


def print_evidence(path: str) -> None:
    """One line per image: the threshold decision and, beside it, the LR of the decided (else best) camera."""
    from camid_gpu.evidence.apply import VERBAL_SCALE_NAME

    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    cal = doc["calibration"]  # the hypotheses' text comes from the calibration file: printable() keeps escapes out
    print(f"\nlikelihood ratios (calibration {cal['sha256'][:16]}...; Hp: {printable(cal['hypotheses']['hp'])}; "
          f"Hd: {printable(cal['hypotheses']['hd'])}; verbal scale: {VERBAL_SCALE_NAME})")
    outside = 0
    for img in doc["images"]:
        cam = img["decision"] or img["best"]
        lr = img["cameras"].get(cam) if cam else None
        value = "-" if not lr or lr["log10_lr"] is None else f"{lr['log10_lr']:+.2f}" + (
            f" (at the {lr['at_bound']} bound)" if lr.get("at_bound") else "")
        flag = "" if img["within_calibration"] else "  OUTSIDE CALIBRATION: " + "; ".join(img["outside"])
        outside += not img["within_calibration"]
        print(f"  {printable(img['path'])}: decision {printable(img['decision'] or '(none)')}; "
              f"{printable(cam or '-')}: log10 LR {value}, {lr['verbal'] if lr else 'no LR'}{printable(flag)}")
    if outside:
        print(f"  {outside} image(s) outside the conditions the calibration was fitted on: their LRs are not "
              f"validated for them (see each line)")


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


def format_validation(kinds: dict[str, Any]) -> str:
    from camid_gpu.evaluate import table

    rows = []
    for kind, k in kinds.items():
        v = k["validation"]
        b = k.get("bounds") or {}
        rows.append([kind, v["same_source"], v["different_source"], v["cllr"], v["cllr_min"],
                     v["rate_misleading_same_source"], v["rate_misleading_different_source"],
                     f"{b.get('lower', float('nan')):+.2f}..{b.get('upper', float('nan')):+.2f}" if b else "-"])
    text = table(["kind", "same-source", "different-source", "Cllr", "Cllr-min", "RME same", "RME different",
                  "log10 LR bounds"], rows)
    for kind, k in kinds.items():
        text += f"\n{kind}: rates of misleading evidence by population: " + ", ".join(
            f"{pop} {rate:.3f}" for pop, rate in k["validation"]["misleading_by_population"].items())
    return text


def cmd_calibrate(args: argparse.Namespace) -> int:
    if args.validate:
        return _validate(args)
    if not args.runs or not args.outdir:
        raise ValueError("camid calibrate RUN... -o CAL (or --validate CAL [RUN...])")
    from camid_gpu.engine import run_folder
    from camid_gpu.evidence.apply import CALIBRATION_NAME
    from camid_gpu.evidence.fit import calibrate
    from camid_gpu.evidence.pairs import read_pairs
    from camid_gpu.provenance import file_entry, utc_now

    started = utc_now()
    cal_path = os.path.join(args.outdir, CALIBRATION_NAME)
    run_folder.check_outputs(args.runs, folders=[args.outdir], command="calibrate")
    if os.path.exists(cal_path) and not args.overwrite:
        raise ValueError(f"{cal_path} exists; pass --overwrite to replace it, or choose another folder")
    data = read_pairs(args.runs, _models_arg(args.models))
    calibration = calibrate(data, args.calibrator, args.different_source, args.kind)
    os.makedirs(args.outdir, exist_ok=True)
    with run_folder.locked(args.outdir):
        write_json(cal_path, calibration)
        outputs = [cal_path] + _write_validation_page(args.outdir, calibration)
        inputs = [file_entry(os.path.join(r, name), "calibration-run") for r in args.runs
                  for name in ("results.jsonl", "manifest.json")]
        params = {"calibrator": args.calibrator, "different_source": args.different_source, "kinds": args.kind,
                  "models": args.models}
        path, digest = run_folder.write_manifest(args.outdir, "calibrate", sys.argv, params, "numpy (lir)", started,
                                                 inputs, None, outputs, kernels="not used")
    print(f"calibration of {len(data.pairs)} pairs from {len(args.runs)} run(s) (models from: "
          f"{'; '.join(sorted(set(data.models_from)))}); score {calibration['score']['name']}, {args.calibrator}")
    print(format_validation(calibration["kinds"]))
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

    cal = load_calibration(args.validate)
    print(f"calibration {printable(cal.path)} (SHA-256 {cal.sha256}); Hd: {cal.data['hypotheses']['hd']}")
    if not args.runs:
        print("validation by cross-validation with cameras held out (recorded when it was made):")
        print(format_validation(cal.kinds))
        return 0
    from camid_gpu.evidence.fit import validate_on

    kinds = validate_on(cal, args.runs, _models_arg(args.models))
    print(f"validation on {len(args.runs)} other run(s) (none of their cameras was used to fit the calibration):")
    print(format_validation(kinds))
    return 0

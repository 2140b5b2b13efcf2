"""Golden outputs: a small synthetic run whose results must not change when the code is reorganised.

``python tests/golden/record.py --write`` regenerates the data from the current code and writes
``tests/golden/golden.json``: the SHA-256 of ``results.jsonl``, ``evaluation.json`` and one residual
TIFF, and the decoded values (every PCE, NCC, decision and Mahalanobis statistic, per image and camera;
the evaluation summary; residual pixels at fixed positions).  ``--check`` compares a fresh run with it:
strings, booleans and integers exactly, floats to a relative tolerance of 1e-6 (hashes may differ across
CPUs, so they are not checked).  ``--check-bytes`` also asserts the three hashes (same machine only).

Every option is passed explicitly, so a change of a default cannot hide behind the golden file.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_PATH = os.path.join(HERE, "golden.json")
REL_TOL = 1e-6
ABS_TOL = 1e-9

SYNTH_ARGS = ["synth", "data", "--cameras", "4", "--per-model", "2", "--refs", "4", "--flat", "1", "--natural", "1",
              "--height", "192", "--width", "256", "--quality", "92", "--format", "jpeg", "--portrait", "0",
              "--seed", "7"]
PARAM_ARGS = ["--method", "both", "--clip", "128", "--refs", "4", "--sigma-fingerprint", "3.0",
              "--sigma-query", "2.0", "--sigma-mahalanobis", "2.0", "--pce-threshold", "60.0",
              "--shift-range", "0", "--rotations", "auto", "--natural-mode", "aligned"]
EXEC_ARGS = ["--backend", "numpy", "--precision", "float64", "--workers", "1", "--max-host-memory", "1G", "--quiet"]
EVALUATE_ARGS = ["evaluate", "data", "-o", "eval", "--json", "eval.json", *PARAM_ARGS, *EXEC_ARGS]
RESIDUAL_ARGS = ["residual", "data/disputed/C01", "-o", "res", "--sigma", "3.0", "--levels", "4", "--wavelet", "db4",
                 "--clip", "128", "--channel", "color", "--wiener", "--backend", "numpy", "--precision", "float64", "--workers", "1",
                 "--max-host-memory", "1G", "--quiet"]
#: residual pixels recorded by value (row, column) in the 128x128 residual
PIXELS = [(0, 0), (0, 127), (127, 0), (127, 127), (64, 64), (10, 100), (100, 10), (33, 77)]


def sha256(path: str, workdir: str | None = None) -> str:
    """SHA-256 of the file's bytes; with ``workdir``, of a results file whose lines hold each record's
    ``realpath`` relative to ``workdir`` (the one field that names the temporary folder), rewritten as the
    results writer writes a line: otherwise no two runs could ever agree byte for byte."""
    with open(path, "rb") as handle:
        data = handle.read()
    if workdir is not None:
        home = os.path.realpath(workdir)
        lines = []
        for line in data.decode("utf-8").splitlines():
            r = json.loads(line)
            if isinstance(r.get("realpath"), str):
                r["realpath"] = os.path.relpath(r["realpath"], home)
            lines.append(json.dumps(r, sort_keys=True, allow_nan=False) + "\n")
        data = "".join(lines).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def _camid(argv: list[str]) -> None:
    from camid_gpu.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"camid {' '.join(argv)} exited with {code}")


def run(workdir: str) -> dict[str, Any]:
    """Synthesise, evaluate and extract residuals in ``workdir``; return the golden record."""
    import numpy as np
    import tifffile

    previous = os.getcwd()
    os.chdir(workdir)  # relative paths only, so the outputs do not depend on where they were made
    try:
        _camid(SYNTH_ARGS)
        _camid(EVALUATE_ARGS)
        _camid(RESIDUAL_ARGS)
        tiffs = sorted(f for f in os.listdir("res") if f.endswith(".tif"))
        residual = tifffile.imread(os.path.join("res", tiffs[0]))
        with open(os.path.join("eval", "results.jsonl"), encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle]
        with open(os.path.join("eval", "evaluation.json"), encoding="utf-8") as handle:
            evaluation = json.load(handle)
        return {
            "sha256": {"results.jsonl": sha256(os.path.join("eval", "results.jsonl"), workdir),
                       "evaluation.json": sha256(os.path.join("eval", "evaluation.json")),
                       "residual.tif": sha256(os.path.join("res", tiffs[0]))},
            # "realpath" (the canonical path, the key of a record on resume) depends on the temporary folder
            "records": {r["path"]: {k: v for k, v in r.items() if k != "realpath"} for r in records},
            "evaluation": evaluation,
            "residual": {"file": tiffs[0], "shape": list(residual.shape), "dtype": str(residual.dtype),
                         "std": float(np.std(residual.astype(np.float64))),
                         "pixels": [float(residual[y, x]) for y, x in PIXELS]},
        }
    finally:
        os.chdir(previous)


def differences(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Every place where ``actual`` differs from ``expected`` (floats to REL_TOL), as readable lines."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{where}/{k}: missing" for k in expected if k not in actual]
        out += [f"{where}/{k}: unexpected" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                out += differences(expected[k], actual[k], f"{where}/{k}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: length {len(actual)} != {len(expected)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{where}[{i}]")]
    if isinstance(expected, float) or isinstance(actual, float):
        if type(expected) is not type(actual):  # an int that became a float (or a string) is a change
            return [f"{where}: {actual!r} != {expected!r}"]
        if math.isnan(expected) and math.isnan(actual):
            return []
        if not math.isclose(expected, actual, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            return [f"{where}: {actual!r} != {expected!r}"]
        return []
    return [] if expected == actual and type(expected) is type(actual) else [f"{where}: {actual!r} != {expected!r}"]


def check(check_bytes: bool = False) -> list[str]:
    """Regenerate in a temporary folder and compare with the golden file; return the differences."""
    with open(GOLDEN_PATH, encoding="utf-8") as handle:
        golden = json.load(handle)
    with tempfile.TemporaryDirectory(prefix="camid-golden-") as workdir:
        fresh = run(workdir)
    problems = differences({k: v for k, v in golden.items() if k != "sha256"},
                           {k: v for k, v in fresh.items() if k != "sha256"})
    if check_bytes:
        problems += [f"sha256 of {name}: {fresh['sha256'][name]} != {digest}"
                     for name, digest in golden["sha256"].items() if fresh["sha256"][name] != digest]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate tests/golden/golden.json from this code")
    mode.add_argument("--check", action="store_true", help="compare values (tolerance 1e-6) and decisions")
    mode.add_argument("--check-bytes", action="store_true", help="--check, and the SHA-256 of the three outputs")
    args = parser.parse_args(argv)
    if args.write:
        with tempfile.TemporaryDirectory(prefix="camid-golden-") as workdir:
            record = run(workdir)
        with open(GOLDEN_PATH, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1, sort_keys=True)
            handle.write("\n")
        print(f"wrote {GOLDEN_PATH}: {json.dumps(record['sha256'])}")
        return 0
    problems = check(check_bytes=args.check_bytes)
    for line in problems:
        print(line)
    print("golden: OK" if not problems else f"golden: {len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

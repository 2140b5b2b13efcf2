"""The HTML report's bytes for a fixed set of run folders, to check that a reorganisation of
``camid_gpu.report`` changes nothing (same machine, same matplotlib).

    python tests/golden/report_bytes.py RUNS_DIR --make        # once: write the run folders
    python tests/golden/report_bytes.py RUNS_DIR -o OUT_DIR    # render every report, print SHA-256s

Render with the old code and the new (``PYTHONPATH=<checkout>``) into two folders and compare them
(``cmp``/``diff -r``): the run folder's absolute path is part of the page, so use the same RUNS_DIR.
Variants: ground truth with both methods, PCE only, no truth (a torn last line), no manifest, bare
results.jsonl, each with per-image charts; the PCE run also as labelled heat-maps and as one overview
heat-map (the limits are lowered to reach those branches).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import sys

HOSTILE = "natural_<script>alert(1)<_script>&'\"x.jpg"
RUNS = ("truth", "pce", "notruth", "nomanifest", "bare")
#: (variant name, run, module constants to set)
VARIANTS = [(run, run, {}) for run in RUNS] + [
    ("pce_heatmaps", "pce", {"MAX_IMAGE_CHARTS": 0, "HEATMAP_ROWS": 2}),
    ("pce_overview", "pce", {"MAX_IMAGE_CHARTS": 0, "HEATMAP_ROWS": 1, "MAX_HEATMAP_FIGURES": 1}),
    ("truth_few_details", "truth", {"MAX_DETAILED_IMAGES": 1, "MAX_CURVES": 1, "MAX_CAMERA_FIGURES": 1}),
]


def make_runs(root: str) -> None:
    from camid_gpu.config import Params, RunConfig
    from camid_gpu.datasets.synthetic import make_dataset
    from camid_gpu.engine.runner import evaluate_dataset

    data = os.path.join(root, "data")
    make_dataset(data, cameras=3, refs=3, disputed_flat=1, disputed_natural=1, height=160, width=192, workers=1)
    with open(os.path.join(data, "disputed", "C01", "zz_broken.jpg"), "wb"):
        pass
    shutil.copy(os.path.join(data, "disputed", "C02", "natural_000.jpg"),
                os.path.join(data, "disputed", "C02", HOSTILE))
    params, config = Params(clip=(128, 128), refs=3), RunConfig(backend="numpy")
    evaluate_dataset(data, os.path.join(root, "truth"), ("pce", "mahalanobis"), params, config)
    evaluate_dataset(data, os.path.join(root, "pce"), ("pce",), params, config)
    notruth = os.path.join(root, "notruth")
    shutil.copytree(os.path.join(root, "truth"), notruth)
    path = os.path.join(notruth, "results.jsonl")
    with open(path, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    with open(path, "w", encoding="utf-8") as handle:
        for r in records:
            r.pop("truth", None)
            handle.write(json.dumps(r) + "\n")
        handle.write('{"path": "half-written')
    os.remove(os.path.join(notruth, "evaluation.json"))
    shutil.copytree(os.path.join(root, "truth"), os.path.join(root, "nomanifest"))
    os.remove(os.path.join(root, "nomanifest", "manifest.json"))
    os.makedirs(os.path.join(root, "bare"))
    shutil.copy(os.path.join(root, "truth", "results.jsonl"), os.path.join(root, "bare"))


def _set_limits(values: dict[str, int]) -> list[tuple[object, str, int]]:
    """Set each constant in every report module that defines it; return what to restore."""
    saved = []
    for name in sorted(sys.modules):
        module = sys.modules[name]
        if not name.startswith("camid_gpu.report") or module is None:
            continue
        for key, value in values.items():
            if hasattr(module, key):
                saved.append((module, key, getattr(module, key)))
                setattr(module, key, value)
    return saved


def render_all(root: str, out: str) -> dict[str, str]:
    from camid_gpu.report import write_report

    # load every report module (old layout: one module; new: a package of sections)
    package = importlib.import_module("camid_gpu.report")
    for entry in sorted(os.listdir(os.path.dirname(package.__file__))):
        if entry.endswith(".py") and entry != "__init__.py":
            importlib.import_module(f"camid_gpu.report.{entry[:-3]}")
    os.makedirs(out, exist_ok=True)
    digests = {}
    for variant, run, limits in VARIANTS:
        saved = _set_limits(limits)
        try:
            path = write_report(os.path.join(root, run), os.path.join(out, f"{variant}.html"))
        finally:
            for module, key, value in saved:
                setattr(module, key, value)
        with open(path, "rb") as handle:
            digests[variant] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir")
    parser.add_argument("--make", action="store_true", help="write the run folders")
    parser.add_argument("-o", "--output", help="render the reports into this folder")
    args = parser.parse_args()
    if args.make:
        make_runs(args.runs_dir)
    if args.output:
        for variant, digest in render_all(args.runs_dir, args.output).items():
            print(f"{digest}  {variant}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

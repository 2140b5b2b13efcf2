"""Cllr and rates of misleading evidence per search condition, for `camid calibrate --references` and `--like`.

There are no real photos on this machine: the closest real-like data built here are camid-synth cameras (3 models
x twins, JPEG 92) at a moderate size (--height/--width; CPU-bound). Steps (every one a camid command):

1. LAB: 6 cameras, 7 flats each -> ``camid calibrate --references LAB/refs -o CALREF``;
2. TEST: 6 other cameras (fingerprints from 7 flats; 4 flat and 4 natural questioned images each) ->
   ``camid evaluate TEST --calibration CAL`` (aligned: full frame, zero shift);
3. CROPS: every TEST questioned image centre-cropped to 3/4 of each side, re-saved at JPEG 92 ->
   ``camid identify TEST-fingerprints CROPS --calibration CAL --lr-outside-calibration`` (crop search);
4. ``camid calibrate --like SEIZED`` with SEIZED = TEST's questioned images, and steps 2-3 again with it;
5. both calibrations again with ``--crops 0.75`` (crop-searched pairs calibrated too), and steps 2-3 with each.

Writes a JSON and a Markdown table (``-o``): per calibration and condition, the pairs, those with a calibrated LR,
Cllr over them, the rates of misleading evidence both ways (same-source LR < 1, different-source LR > 1) and, for
pairs outside the calibration, the same rates of the marked numbers ``--lr-outside-calibration`` shows.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from PIL import Image

from camid_gpu.cli.commands import main
from camid_gpu.datasets.synthetic import make_dataset


def _run(args: list[str]) -> None:
    started = time.time()
    code = main(args + (["--quiet"] if args[0] in ("evaluate", "identify") else []))
    print(f"[{time.time() - started:6.1f} s] camid {' '.join(args[:3])} ... -> {code}", file=sys.stderr)
    if code not in (0, 3):
        raise SystemExit(f"camid {args[0]} failed ({code})")


def _pairs(run: str, truth_of) -> list[dict]:
    with open(os.path.join(run, "evidence.json"), encoding="utf-8") as handle:
        doc = json.load(handle)
    out = []
    for img in doc["images"]:
        truth = truth_of(img["path"])
        for cam, lr in img["cameras"].items():
            out.append({"kind": img["conditions"]["kind"], "search": lr["condition"]["search"], "same": cam == truth,
                        "llr": lr["log10_lr"], "marked": lr.get("log10_lr_outside_calibration"), "pce": lr["pce"]})
    return out


def _cllr(llrs: list[float], same: list[bool]) -> float | None:
    ss = [v for v, s in zip(llrs, same) if s]
    ds = [v for v, s in zip(llrs, same) if not s]
    if not ss or not ds:
        return None
    return 0.5 * (sum(math.log2(1 + 10 ** -v) for v in ss) / len(ss) + sum(math.log2(1 + 10 ** v) for v in ds) / len(ds))


def _rates(pairs: list[dict], key: str) -> dict:
    got = [p for p in pairs if p[key] is not None]
    ss, ds = [p for p in got if p["same"]], [p for p in got if not p["same"]]
    return {"with_value": len(got), "same_source": len(ss), "different_source": len(ds),
            "cllr": _cllr([p[key] for p in got], [p["same"] for p in got]),
            "same_source_lr_below_1": sum(p[key] < 0 for p in ss), "different_source_lr_above_1": sum(p[key] > 0 for p in ds),
            "strongest_misleading_different_source": max((p[key] for p in ds), default=None)}


def summarise(pairs: list[dict]) -> dict:
    out = {}
    for kind in sorted({p["kind"] for p in pairs}):
        for search in sorted({p["search"] for p in pairs}):
            sel = [p for p in pairs if p["kind"] == kind and p["search"] == search]
            if sel:
                out[f"{kind} {search}"] = {"pairs": len(sel), "calibrated": _rates(sel, "llr"),
                                           "outside_marked": _rates(sel, "marked")}
    return out


def _crops(test: str, crops: str) -> dict[str, str]:
    truth = {}
    for cam in sorted(os.listdir(os.path.join(test, "disputed"))):
        for name in sorted(os.listdir(os.path.join(test, "disputed", cam))):
            with Image.open(os.path.join(test, "disputed", cam, name)) as im:
                w, h = im.size
                box = (w // 8, h // 8, w // 8 + (3 * w // 4), h // 8 + (3 * h // 4))
                out = os.path.join(crops, f"{cam}_{name}")
                im.crop(box).save(out, quality=92)
                truth[os.path.abspath(out)] = cam
    return truth


def measure(work: str, height: int, width: int, with_crops: bool = True) -> dict:
    lab, test, crops, seized = (os.path.join(work, n) for n in ("lab", "test", "crops", "seized"))
    make_dataset(lab, cameras=6, per_model=2, refs=7, disputed_flat=0, disputed_natural=0, height=height, width=width,
                 jpeg_quality=92, seed=31)
    make_dataset(test, cameras=6, per_model=2, refs=7, disputed_flat=4, disputed_natural=4, height=height,
                 width=width, jpeg_quality=92, seed=32)
    os.makedirs(crops)
    crop_truth = _crops(test, crops)
    os.makedirs(seized)
    for cam in sorted(os.listdir(os.path.join(test, "disputed"))):
        for name in sorted(os.listdir(os.path.join(test, "disputed", cam))):
            os.symlink(os.path.join(test, "disputed", cam, name), os.path.join(seized, f"{cam}_{name}"))
    results = {}
    timings = {}
    variants = [("references", ["--references", os.path.join(lab, "refs")]),
                ("like", ["--like", seized, "--like-max-side", str(max(height, width))])]
    variants += [(f"{label} --crops {crops}", extra + ["--crops", str(crops)]) for label, extra in variants for crops in
                 ([0.75] if with_crops else [])]
    for label, extra in variants:
        cal = os.path.join(work, "cal-" + label.replace(" ", "").replace("--", "-"))
        started = time.time()
        _run(["calibrate", *extra, "-o", cal])
        timings[f"calibrate --{label}"] = round(time.time() - started, 1)
        ev, cr = (os.path.join(work, f"{n}-" + label.replace(" ", "").replace("--", "-")) for n in ("eval", "crop"))
        _run(["evaluate", test, "-o", ev, "--refs", "all", "--calibration", cal, "--lr-outside-calibration"])
        _run(["identify", os.path.join(ev, "fingerprints"), crops, "-o", cr, "--calibration", cal,
              "--lr-outside-calibration"])
        pairs = _pairs(ev, lambda p: os.path.basename(os.path.dirname(p)))
        pairs += _pairs(cr, lambda p: crop_truth.get(os.path.abspath(p), os.path.basename(p).split("_")[0]))
        with open(os.path.join(cal, "calibration.json"), encoding="utf-8") as handle:
            doc = json.load(handle)
        results[label] = {"conditions": summarise(pairs),
                          "fitted": {k: {"cllr_held_out": v["validation"]["cllr"], "bounds": v["bounds"],
                                         "misleading": v["validation"]["misleading_by_population"]}
                                     for k, v in doc["models"].items()},
                          "not_calibrated": doc["not_calibrated"]}
    return {"size": [height, width], "timings_s": timings, "results": results}


def table(doc: dict) -> str:
    rows = ["| calibration | condition | pairs | with a calibrated LR | Cllr | same-source LR < 1 | different-source "
            "LR > 1 | largest different-source log10 LR | outside, marked numbers: same-source < 1, different-source > 1 |",
            "|---|---|---|---|---|---|---|---|---|"]
    for label, res in doc["results"].items():
        for cond, r in res["conditions"].items():
            c, m = r["calibrated"], r["outside_marked"]
            cllr = "-" if c["cllr"] is None else f"{c['cllr']:.3f}"
            top = c["strongest_misleading_different_source"]
            strongest = "-" if top is None else f"{top:+.2f}"
            rows.append(f"| --{label} | {cond} | {r['pairs']} | {c['with_value']} | {cllr} | "
                        f"{c['same_source_lr_below_1']}/{c['same_source']} | "
                        f"{c['different_source_lr_above_1']}/{c['different_source']} | {strongest} | "
                        f"{m['same_source_lr_below_1']}/{m['same_source']}, "
                        f"{m['different_source_lr_above_1']}/{m['different_source']} |")
    return "\n".join(rows)


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work")
    ap.add_argument("-o", "--output", required=True, help="JSON path (a .md table beside it)")
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--no-crops", action="store_true", help="skip step 5")
    a = ap.parse_args()
    doc = measure(a.work, a.height, a.width, not a.no_crops)
    with open(a.output, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=1)
    with open(os.path.splitext(a.output)[0] + ".md", "w", encoding="utf-8") as handle:
        handle.write(table(doc) + "\n")
    print(table(doc))


if __name__ == "__main__":
    cli()

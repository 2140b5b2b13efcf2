"""Residual NCC of one photo's re-encodes against distinct images of its camera (config.CLUSTER_DUPLICATE_NCC).

Synthetic flats (camid_gpu.datasets.synthetic, 160x192, 2 cameras, 5 flats each): the image-level residual NCC
that ``camid cluster`` computes (whole frames), for distinct flats of one camera, of two cameras, and for one
flat against its JPEG re-encodes (quality 95, 85, 75) and a PNG with 1 % of its samples changed by one level.
Writes bench/results/cpu-duplicate-ncc-DATE.json and prints a table.

    python bench/measure_duplicate_ncc.py
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile

import numpy as np
from PIL import Image

from camid_gpu.cli import main
from camid_gpu.datasets.synthetic import make_dataset


def measure() -> dict:
    root = tempfile.mkdtemp(prefix="dup-ncc-")
    make_dataset(os.path.join(root, "data"), cameras=2, per_model=1, refs=2, disputed_flat=5, disputed_natural=0,
                 height=160, width=192, seed=4)
    ev = os.path.join(root, "data", "disputed")
    c01 = os.path.join(ev, "C01")
    source = os.path.join(c01, sorted(os.listdir(c01))[0])
    photo = Image.open(source)
    photo.load()
    copies = {}
    for quality in (95, 85, 75):
        copies[f"jpeg q{quality}"] = f"reenc{quality}.jpg"
        photo.save(os.path.join(c01, copies[f"jpeg q{quality}"]), quality=quality)
    touched = np.asarray(photo).copy()
    rng = np.random.default_rng(0)
    touched.flat[rng.choice(touched.size, touched.size // 100, replace=False)] += 1
    copies["png, 1% of samples +1"] = "touched.png"
    Image.fromarray(touched).save(os.path.join(c01, copies["png, 1% of samples +1"]))
    run = os.path.join(root, "run")
    assert main(["cluster", ev, "-o", run, "--quiet", "--backend", "numpy"]) == 0
    result = json.load(open(os.path.join(run, "clusters.json")))
    group = result["groups"][0]
    sim = np.load(os.path.join(run, "similarity", f"{group['name']}.npy"))
    order = [os.path.relpath(p, ev) for p in group["order"]]
    index = {p: i for i, p in enumerate(order)}
    copy_names = {os.path.join("C01", n) for n in copies.values()}
    genuine = [p for p in order if p not in copy_names]
    same = [sim[index[a], index[b]] for a in genuine for b in genuine if a < b and a[:3] == b[:3]]
    other = [sim[index[a], index[b]] for a in genuine for b in genuine if a < b and a[:3] != b[:3]]
    first = index[os.path.relpath(source, ev)]
    return {"date": datetime.date.today().isoformat(), "size": [160, 192], "threshold": 0.9,
            "distinct_same_camera": [round(float(min(same)), 4), round(float(max(same)), 4)],
            "different_cameras": [round(float(min(other)), 4), round(float(max(other)), 4)],
            "copies": {k: round(float(sim[first, index[os.path.join("C01", v)]]), 4) for k, v in copies.items()}}


if __name__ == "__main__":
    out = measure()
    path = os.path.join(os.path.dirname(__file__), "results", f"cpu-duplicate-ncc-{out['date']}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=1)
    print("| pair | residual NCC |\n|---|---|")
    print(f"| distinct flats, one camera | {out['distinct_same_camera'][0]} .. {out['distinct_same_camera'][1]} |")
    print(f"| flats of two cameras | {out['different_cameras'][0]} .. {out['different_cameras'][1]} |")
    for name, value in out["copies"].items():
        print(f"| one flat and its {name} | {value} |")
    sys.exit(0)

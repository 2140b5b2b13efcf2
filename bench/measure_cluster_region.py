"""Same-camera and different-camera pair z-scores over whole frames and over the central square (issue 18 item 3).

An accuracy measurement with the CPU time of the residuals beside it. Synthetic cameras of camid_gpu.datasets
(natural scenes, JPEG quality 90), residuals as `camid cluster` computes them, over the whole frame and over the
central ``--square`` (the former default was 1024); z = NCC * sqrt(n); the pair threshold is that of a run of
``--images`` images (`--pfa 1e-6`, model spread). Run:

    PYTHONPATH=. python bench/measure_cluster_region.py --height 1536 --width 2048 --square 768 --prnu 0.008
"""
from __future__ import annotations

import argparse
import io
import itertools
import time

import numpy as np
from PIL import Image

from camid_gpu.backend import get_backend
from camid_gpu.cluster.run import residual_rows
from camid_gpu.cluster.threshold import stage_threshold
from camid_gpu.config import ClusterParams
from camid_gpu.datasets.scenes import natural_scene
from camid_gpu.datasets.sensor import SensorModel, develop, expose, make_camera, model_artefacts, rng_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=1536)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--square", type=int, default=768)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--per", type=int, default=3)
    ap.add_argument("--prnu", type=float, default=0.008)
    ap.add_argument("--bright", action="store_true", help="natural_level_range 0.3..0.6 (as the cluster tests)")
    ap.add_argument("--images", type=int, default=16, help="images of the run whose threshold is shown")
    args = ap.parse_args()
    h, w, s = args.height, args.width, args.square
    sensor = SensorModel(prnu_std=args.prnu, **({"natural_level_range": (0.3, 0.6)} if args.bright else {}))
    images, camera_of = [], []
    for index in range(args.cameras):
        camera = make_camera(index, f"c{index}", model_artefacts(index, h, w, 1, sensor), 1, sensor)
        for k in range(args.per):
            rng = rng_for(5, index, k)
            shot = develop(expose(natural_scene(rng, h, w, sensor), camera, sensor, rng), camera, sensor, 8)
            out = io.BytesIO()
            Image.fromarray(shot).save(out, format="JPEG", quality=90, subsampling=0)
            images.append(np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB")))
            camera_of.append(index)
    bk = get_backend("numpy", dtype="float32")
    pairs = list(itertools.combinations(range(len(images)), 2))
    tests = args.images * (args.images - 1) // 2
    print(f"{len(images)} images {h}x{w} ({args.cameras} cameras), PRNU {args.prnu:g}"
          f"{', bright scenes' if args.bright else ''}; threshold of a {args.images}-image run")
    for name, clip in (("whole frame", None), (f"central {s}x{s}", (s, s))):
        t0 = time.perf_counter()
        rows = []
        for image in images:  # one at a time: bounded memory
            part = image if clip is None else image[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
            rows.append(residual_rows(bk, [part], ClusterParams(region=None))[0][0])
        seconds = (time.perf_counter() - t0) / len(images)
        x = np.stack(rows).astype(np.float64)
        n = x.shape[1]
        z = x @ x.T * np.sqrt(n)
        same = np.array([z[i, j] for i, j in pairs if camera_of[i] == camera_of[j]])
        other = np.array([z[i, j] for i, j in pairs if camera_of[i] != camera_of[j]])
        t = stage_threshold("pairs", 1e-6, tests, n)
        print(f"{name:20s} n {n:>9d}: same-camera z min {same.min():6.1f} median {np.median(same):6.1f}; "
              f"other cameras |z| max {np.abs(other).max():4.1f}; threshold z {t.z:.2f}; "
              f"same-camera pairs over it {int((same > t.z).sum())}/{same.size}; residual {seconds:.2f} s/image (CPU)")


if __name__ == "__main__":
    main()

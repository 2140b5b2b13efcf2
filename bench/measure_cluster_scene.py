"""Same-scene pairs from different cameras (issue 15 item 10): how many pass the pair threshold, and how many
the same-scene guard (camid_gpu/cluster/scene.py) stops; how many pairs of different scenes it stops.

An accuracy measurement, not a speed one (no timings). Synthetic cameras of camid_gpu.datasets (two models of
two twins each, default sensor: 0.8 % PRNU), each photographing the same natural scenes; smooth scenes with
independent noise and no PRNU; re-saved copies of one picture at other JPEG qualities; burst shots of one
scene shifted by a few pixels. Residuals, thresholds and guard as `camid cluster` computes them
(`--pfa 1e-6` over the pairs of the whole set). Run:

    PYTHONPATH=. python bench/measure_cluster_scene.py [--size 512] [--scenes 6]
"""
from __future__ import annotations

import argparse
import io
import itertools

import numpy as np
from PIL import Image

from camid_gpu.backend import get_backend
from camid_gpu.cluster.run import residual_rows
from camid_gpu.cluster.scene import scene_guard, scene_rows
from camid_gpu.cluster.threshold import robust_spread, stage_threshold
from camid_gpu.config import ClusterParams
from camid_gpu.datasets.scenes import natural_scene
from camid_gpu.datasets.sensor import SensorModel, develop, expose, make_camera, model_artefacts, rng_for


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=quality, subsampling=0)
    return np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))


def smooth(size: int, variant: int, seed: int, sigma: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    f = 1 + variant
    scene = 128 + 60 * np.sin(f * np.pi * x + variant) * np.cos(2 * np.pi * y) + 30 * np.exp(
        -((x - .3 - .1 * variant) ** 2 + (y - .4) ** 2) / .02)
    noisy = scene[..., None] + np.random.default_rng(seed).normal(0, sigma, (size, size, 1))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8).repeat(3, axis=2)


def build(size: int, scenes: int):
    """Images and their labels (camera or None, scene, kind)."""
    sensor = SensorModel()
    cams = [make_camera(i, f"c{i}", model_artefacts(i // 2, size, size, 1, sensor), 1, sensor) for i in range(4)]
    qualities = (75, 85, 95, 90)
    images, labels = [], []
    for s in range(scenes):
        scene = natural_scene(rng_for(90, s), size + 8, size + 8, sensor)
        for cam in cams:
            rng = rng_for(91, cam.index, s)
            shot = develop(expose(scene[:size, :size], cam, sensor, rng), cam, sensor, 8)
            images.append(jpeg(shot, qualities[cam.index]))
            labels.append((cam.name, f"n{s}", "natural"))
        # a burst of camera 0: the same scene moved by 1, 2 and 4 pixels
        for shift in (1, 2, 4):
            rng = rng_for(92, s, shift)
            moved = scene[shift:shift + size, shift:shift + size]
            images.append(jpeg(develop(expose(moved, cams[0], sensor, rng), cams[0], sensor, 8), 90))
            labels.append((cams[0].name, f"n{s}", f"burst+{shift}"))
    # re-saved copies of one picture of camera 1 at three other qualities
    picture = develop(expose(natural_scene(rng_for(93, 0), size, size, sensor), cams[1], sensor, rng_for(93, 1)),
                      cams[1], sensor, 8)
    for q in (70, 80, 95):
        images.append(jpeg(picture, q))
        labels.append((cams[1].name, "picture", f"resaved-q{q}"))
    for variant in range(3):
        for k, sigma in enumerate((0.5, 1.0, 2.0)):
            for copy in range(2):
                images.append(jpeg(smooth(size, variant, 100 * variant + 10 * k + copy, sigma), 90))
                labels.append((None, f"smooth{variant}", f"smooth-s{sigma}"))
    return images, labels


def category(a, b) -> str:
    (ca, sa, ka), (cb, sb, kb) = a, b
    if sa == sb:
        if ka.startswith("smooth"):
            return "same smooth scene, no PRNU"
        if ka.startswith("resaved"):
            return "re-saved copies of one picture"
        if ka.startswith("burst") or kb.startswith("burst"):
            return "burst (same camera, shifted)" if ca == cb else "same scene, other camera, shifted"
        return "same scene, other camera"
    if ca is not None and ca == cb:
        return "different scenes, same camera"
    return "different scenes, other cameras"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--scenes", type=int, default=6)
    args = ap.parse_args()
    images, labels = build(args.size, args.scenes)
    rows, _ = residual_rows(get_backend("numpy"), images, ClusterParams(region=None))
    sim = rows.astype(np.float64) @ rows.T.astype(np.float64)
    n = rows.shape[1]
    iu = np.triu_indices(len(images), 1)
    t = stage_threshold("pairs", 1e-6, iu[0].size, n, robust_spread(sim[iu]))
    guard = scene_guard(scene_rows(images), [[i] for i in range(len(images))])
    table: dict[str, list] = {}
    for i, j in itertools.combinations(range(len(images)), 2):
        table.setdefault(category(labels[i], labels[j]), []).append(
            (sim[i, j] * np.sqrt(n), sim[i, j] > t.ncc, bool(guard.blocked[i, j]), guard.ncc[i, j]))
    print(f"{len(images)} images {args.size}x{args.size}, {iu[0].size} pairs, pair threshold z {t.z:.2f} "
          f"(NCC {t.ncc:.4g}, {t.null_source} spread)")
    print(f"{'pairs':34s} {'n':>4s} {'residual z med':>14s} {'[min, max]':>16s} {'over thr':>8s} {'guarded':>7s} "
          f"{'linkable after':>14s} {'scene NCC [min, max]':>20s}")
    for name, v in sorted(table.items()):
        z = np.array([x[0] for x in v])
        over = sum(x[1] for x in v)
        blocked = sum(x[2] for x in v)
        after = sum(x[1] and not x[2] for x in v)
        c = np.array([x[3] for x in v])
        print(f"{name:34s} {len(v):4d} {np.median(z):14.1f} [{z.min():6.1f}, {z.max():6.1f}] {over:8d} {blocked:7d} "
              f"{after:14d}   [{c.min():6.3f}, {c.max():6.3f}]")


if __name__ == "__main__":
    main()

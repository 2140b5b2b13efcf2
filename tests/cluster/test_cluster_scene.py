"""Same-scene guard: two images of one scene share the part of the scene the denoiser leaves
in their residuals, whatever cameras took them; such pairs must not be linked, neither by the pair stage nor
by the refinement, while flats and different scenes are never taken for one scene."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from camid_gpu.cluster import ClusterParams, cluster_images
from camid_gpu.cluster.scene import scene_guard, scene_lines, scene_rows
from camid_gpu.config import CLUSTER_SAME_SCENE_NCC, RunConfig
from camid_gpu.datasets.scenes import flat_scene, natural_scene
from camid_gpu.datasets.sensor import SensorModel, develop, expose, make_camera, model_artefacts, rng_for

CONFIG = RunConfig(backend="numpy", progress=False)
SIZE = (256, 256)


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=quality, subsampling=0)
    return out.getvalue()


def _cameras(count: int, sensor: SensorModel, twins: bool = False, size: tuple[int, int] = SIZE):
    h, w = size
    return [make_camera(i, f"c{i}", model_artefacts(i // 2 if twins else i, h, w, 1, sensor), 1, sensor)
            for i in range(count)]


def _shot(scene: np.ndarray, camera, sensor: SensorModel, *key: int) -> np.ndarray:
    return develop(expose(scene, camera, sensor, rng_for(11, camera.index, *key)), camera, sensor, 8)


def _smooth_scene(noise_seed: int) -> np.ndarray:
    """The issue's case: one smooth scene, independent noise, no PRNU at all (0..255 RGB)."""
    h, w = SIZE
    y, x = np.mgrid[0:h, 0:w] / h
    blob = 30 * np.exp(-((x - .5) ** 2 + (y - .4) ** 2) / .02)
    scene = 128 + 60 * np.sin(3 * np.pi * x) * np.cos(2 * np.pi * y) + blob
    noisy = scene[..., None] + np.random.default_rng(noise_seed).normal(0, 0.5, (h, w, 1))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8).repeat(3, axis=2)


def test_same_scene_pairs_of_different_cameras_are_not_linked(tmp_path):
    """Three cameras of three models photograph one textured scene (their residuals correlate at z ~ 200), and
    two images of one smooth scene carry no PRNU at all (z ~ 24): no cluster, every pair listed as same-scene."""
    sensor = SensorModel()
    scene = natural_scene(rng_for(99, 0), *SIZE, sensor)
    folder = tmp_path / "in"
    folder.mkdir()
    for camera in _cameras(3, sensor):
        (folder / f"scene-{camera.name}.jpg").write_bytes(_jpeg(_shot(scene, camera, sensor, 0)))
    for k in range(2):
        (folder / f"smooth-{k}.jpg").write_bytes(_jpeg(_smooth_scene(k)))
    result = cluster_images([str(folder)], str(tmp_path / "run"), ClusterParams(), CONFIG)
    assert result["clusters"] == [] and len(result["unclustered"]) == 5
    group = result["groups"][0]
    guard = group["same_scene"]
    assert guard["checked"] and guard["min_scene_ncc"] == CLUSTER_SAME_SCENE_NCC
    names = {tuple(sorted(p[k].rsplit("/", 1)[1] for k in "ab")) for p in guard["pairs"]}
    assert names == {("scene-c0.jpg", "scene-c1.jpg"), ("scene-c0.jpg", "scene-c2.jpg"),
                     ("scene-c1.jpg", "scene-c2.jpg"), ("smooth-0.jpg", "smooth-1.jpg")}
    # what the pairs would have been judged on: every one far above the pair threshold
    assert min(p["residual_ncc"] for p in guard["pairs"]) > group["threshold"]["ncc"]
    assert min(p["scene_ncc"] for p in guard["pairs"]) > 0.99
    assert group["candidate_pairs"] == 0
    saved = json.loads((tmp_path / "run" / "clusters.json").read_text())
    assert saved["groups"][0]["same_scene"] == guard
    lines = scene_lines(result, shown=3)
    assert len(lines) == 4 and lines[0].startswith("note: same scene, not linked") and "1 more" in lines[3]


def test_a_shared_scene_neither_joins_two_cameras_nor_breaks_their_clusters(tmp_path):
    """Cameras A and B (3 % PRNU) each take their own scenes and one shared scene; a third camera C takes only
    the shared scene. A and B stay two pure clusters with their shared-scene image each; C stays alone
    (the pair stage would have linked it with both at z ~ 200, and A's fingerprint holds the scene)."""
    sensor = SensorModel(prnu_std=0.03, natural_level_range=(0.3, 0.6))
    size = (512, 512)  # single pairs of different scenes link at this size (as in test_cluster_run)
    shared = natural_scene(rng_for(98, 0), *size, sensor)
    a, b, c = _cameras(3, sensor, size=size)
    folder = tmp_path / "in"
    folder.mkdir()
    for camera, own in ((a, 4), (b, 3)):
        for k in range(own):
            scene = natural_scene(rng_for(97, camera.index, k), *size, sensor)
            (folder / f"{camera.name}-own{k}.jpg").write_bytes(_jpeg(_shot(scene, camera, sensor, 1, k)))
    for camera in (a, b, c):
        (folder / f"{camera.name}-shared.jpg").write_bytes(_jpeg(_shot(shared, camera, sensor, 2)))
    result = cluster_images([str(folder)], str(tmp_path / "run"), ClusterParams(), CONFIG)
    members = sorted(sorted(m["path"].rsplit("/", 1)[1] for m in cl["members"]) for cl in result["clusters"])
    assert members == [["c0-own0.jpg", "c0-own1.jpg", "c0-own2.jpg", "c0-own3.jpg", "c0-shared.jpg"],
                       ["c1-own0.jpg", "c1-own1.jpg", "c1-own2.jpg", "c1-shared.jpg"]]
    assert [u["path"].rsplit("/", 1)[1] for u in result["unclustered"]] == ["c2-shared.jpg"]
    assert len(result["groups"][0]["same_scene"]["pairs"]) == 3


def test_descriptors_tell_one_scene_from_flats_and_other_scenes():
    """One scene through four cameras (two models, twins): descriptor NCC ~ 1. Different natural scenes stay far
    under the guard's NCC; flats of one camera, whose band-passed content is averaged PRNU and fixed pattern
    (their descriptor NCC can be high), are under its contrast and never blocked."""
    sensor = SensorModel()
    cams = _cameras(4, sensor, twins=True)
    shared = natural_scene(rng_for(96, 0), *SIZE, sensor)
    same = [_shot(shared, cam, sensor, 0) for cam in cams]
    other = [_shot(natural_scene(rng_for(95, k), *SIZE, sensor), cams[k % 4], sensor, 1, k) for k in range(8)]
    flats = [_shot(flat_scene(rng_for(94, k), *SIZE, sensor), cams[k % 2], sensor, 2, k) for k in range(6)]
    images = same + other + flats
    guard = scene_guard(scene_rows(images), [[i] for i in range(len(images))])
    iu = np.triu_indices(4, 1)
    assert guard.ncc[:4, :4][iu].min() > 0.99 and guard.blocked[:4, :4][iu].all()
    others = guard.ncc[4:12, 4:12][np.triu_indices(8, 1)]
    assert np.abs(others).max() < CLUSTER_SAME_SCENE_NCC / 2
    assert not guard.blocked[4:, 4:].any() and not guard.blocked[:4, 4:].any()
    assert guard.contrast[12:].max() < guard.contrast[:12].min() / 10
    # no descriptors (a run folder written before the guard): nothing blocked, and the record says so
    assert not scene_guard(None, [[0], [1]]).checked


def test_images_without_descriptors_are_unchecked_never_blocked(tmp_path):
    """A run folder made before the guard, resumed: the new images' descriptors are written after a gap; the old
    images have none (NaN), are listed as unchecked and never blocked, not read as featureless."""
    from camid_gpu.cluster.scene import SceneStore

    img = _smooth_scene(0)
    d = scene_rows([img, img])
    store = SceneStore(str(tmp_path), "256x256", d.shape[1])
    store.write([2, 3], d)  # rows 0 and 1: images of the earlier run
    got = store.read(5)
    assert np.isnan(got[:2]).all() and np.array_equal(got[2:4], d) and np.isnan(got[4]).all()
    guard = scene_guard(got[:4], [[0], [1], [2], [3]])
    assert guard.unchecked == [0, 1] and not guard.checked and guard.pairs() == [(2, 3)]
    records = [{"path": f"p{i}"} for i in range(4)]
    assert guard.to_json(records, np.eye(4))["unchecked"] == ["p0", "p1"]


def test_descriptor_is_the_same_for_16_bit_and_8_bit_pixels_and_tiny_clips_have_none():
    img = _smooth_scene(0)
    np.testing.assert_allclose(scene_rows([img.astype(np.uint16) * 257])[0], scene_rows([img])[0], atol=1e-3)
    tiny = scene_rows([img[:12, :12]])  # too few pixels to band-pass (runs compare at least 32 x 32)
    assert tiny.shape[0] == 1 and not tiny.any()


@pytest.mark.parametrize("kind", ["merge", "attach", "two-singles"])
def test_refinement_never_joins_across_a_same_scene_pair(kind):
    """Fingerprint merges and attachments well above the refinement threshold are refused when they would put
    the two images of a same-scene pair into one cluster."""
    from camid_gpu.backend import get_backend
    from camid_gpu.cluster.linkage import Cluster, refine
    from camid_gpu.cluster.scene import SceneGuard
    from camid_gpu.cluster.similarity import GramEngine
    from camid_gpu.cluster.threshold import pair_threshold
    from test_cluster_linkage import _planted, _RowOps

    n = 4096
    threshold = pair_threshold(1e-6, 1000, n, stage="refine")
    rows = _planted(n, 1.5 * threshold.ncc, 1.5 * threshold.ncc)
    if kind == "two-singles":  # images 4 and 5: one scene, both correlating with the first fingerprint
        rows = np.concatenate([rows, rows[4:5] + 0.01 * np.random.default_rng(1).standard_normal((1, n))])
    ops = _RowOps(rows)
    engine = GramEngine(get_backend("numpy"))
    blocked = np.zeros((len(rows), len(rows)), dtype=bool)
    pair = {"merge": (1, 2), "attach": (0, 4), "two-singles": (4, 5)}[kind]
    blocked[pair] = blocked[pair[::-1]] = True
    guard = SceneGuard(blocked, None, None)

    def run(g):
        clusters = [Cluster([(0, 0), (1, 0)], events=[{"kind": "pairs"}])]
        if kind == "merge":
            clusters.append(Cluster([(2, 0), (3, 0)], events=[{"kind": "pairs"}]))
        singles = {"merge": [], "attach": [4], "two-singles": [4, 5]}[kind]
        out, alone, _ = refine(clusters, singles, ops, threshold, engine, tile=8, max_rounds=20, guard=g)
        return [c.images for c in out], alone

    unguarded, guarded = run(None), run(guard)
    if kind == "merge":
        assert unguarded == ([[0, 1, 2, 3]], []) and guarded == ([[0, 1], [2, 3]], [])
    elif kind == "attach":
        assert unguarded == ([[0, 1, 4]], []) and guarded == ([[0, 1]], [4])
    else:
        assert unguarded == ([[0, 1, 4, 5]], [])
        clusters, alone = guarded
        assert len(clusters) == 1 and len(alone) == 1 and sorted(clusters[0] + alone) == [0, 1, 4, 5]


def test_same_scene_pairs_are_left_out_of_the_null_spread():
    """A burst's shifted frames correlate through their scene at z down to -20: counted as null pairs they
    widened the observed spread, and so the threshold every other pair must pass."""
    from camid_gpu.cluster.scene import SceneGuard
    from camid_gpu.cluster.threshold import robust_spread

    n, pixels = 40, 65536
    rng = np.random.default_rng(4)
    sim = rng.normal(0, 1 / np.sqrt(pixels), (n, n))
    sim = np.triu(sim, 1) + np.triu(sim, 1).T
    blocked = np.zeros((n, n), dtype=bool)
    burst = np.arange(10)
    for i in burst:  # ten shifted frames of one scene, every pair of them strongly negative
        for j in burst:
            if i != j:
                blocked[i, j] = True
                sim[i, j] = -20 / np.sqrt(pixels)
    guard = SceneGuard(blocked, None, None)
    assert guard.null_values(sim).size == n * (n - 1) // 2 - 45
    everything = robust_spread(sim[np.triu_indices(n, 1)]) * np.sqrt(pixels)
    null = robust_spread(guard.null_values(sim)) * np.sqrt(pixels)
    assert everything > 2.5 and null == pytest.approx(1.0, abs=0.1)

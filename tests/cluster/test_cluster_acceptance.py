"""The clustering issue's acceptance on synthetic cameras with known truth: 20 cameras (10 models of two
twins), 1 to 40 natural images each, JPEG quality 75 to 95, two sensor sizes. Adjusted Rand index
>= 0.95, pairwise precision >= 0.99 (no cluster mixes two cameras), and every cluster fingerprint
identifies a held-back image of its camera (PCE > 60). About 250 images: marked slow.
"""
from __future__ import annotations

import os

import pytest

from camid_gpu._shared.jsonio import read_jsonl as read_results
from camid_gpu.cluster import ClusterParams, cluster_images
from camid_gpu.config import Params, RunConfig
from camid_gpu.engine.runner import identify_files
from test_cluster_run import (CONFIG, adjusted_rand_index, build_set, camera_of, pairwise_precision,
                              truth_and_labels)

#: images per camera (1 to 40), four datasets: two sensor sizes, JPEG quality 75, 85, 90 and 95
COUNTS = {"A75": dict(zip(["C01", "C02", "C03", "C04", "C05", "C06"], [40, 1, 12, 3, 25, 2])),
          "A85": dict(zip(["C01", "C02", "C03", "C04", "C05", "C06"], [8, 30, 1, 5, 15, 6])),
          "B90": dict(zip(["C01", "C02", "C03", "C04"], [20, 2, 10, 4])),
          "B95": dict(zip(["C01", "C02", "C03", "C04"], [35, 1, 7, 9]))}
SIZES = {"A75": (512, 640, 75), "A85": (512, 640, 85), "B90": (576, 768, 90), "B95": (576, 768, 95)}


@pytest.mark.slow
def test_twenty_cameras_acceptance(tmp_path):
    inputs, held = build_set(tmp_path, COUNTS, SIZES, seed=40)
    config = RunConfig(backend="numpy", progress=False, workers=2)
    result = cluster_images([str(inputs)], str(tmp_path / "run"), ClusterParams(region=512), config)
    truth, labels = truth_and_labels(result, camera_of)
    ari, precision = adjusted_rand_index(truth, labels), pairwise_precision(truth, labels)
    print(f"ARI {ari:.4f}, pairwise precision {precision:.4f}, clusters {len(result['clusters'])}, "
          f"unclustered {len(result['unclustered'])}, timings {result['timings_s']}")
    assert ari >= 0.95 and precision >= 0.99
    for c in result["clusters"]:
        camera = camera_of(c["members"][0]["path"])
        out = tmp_path / f"{c['id']}.jsonl"
        identify_files(os.path.dirname(c["fingerprint"]["metadata"]), [held[camera]], str(out), ("pce",), Params(),
                       CONFIG)
        record = read_results(str(out))[0]
        assert record["pce"]["decision"] == c["id"] and record["pce"]["best_pce"] > 60, (camera, record["pce"])

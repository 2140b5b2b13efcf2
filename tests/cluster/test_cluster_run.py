"""Blind source clustering on synthetic cameras with known truth (twins, two sensor sizes, a portrait
image, a single-image camera, hostile files), its outputs, identification with the cluster
fingerprints, the all-singletons case, incremental runs, Dask and the command line.

The cameras use a stronger PRNU (3 %) and brighter scenes than the synth defaults, so that single
natural-image pairs at 512x512 link (the defaults are tuned for fingerprint-vs-image tests, where one
side is clean; pairs of two noisy residuals need more signal). Sizes are kept small for the default suite.
"""
from __future__ import annotations

import json
import os
import shutil
from itertools import combinations

import numpy as np
import pytest

from camid_gpu._shared.jsonio import read_jsonl as read_results
from camid_gpu._shared.jsonio import sha256_file
from camid_gpu.cli import EXIT_OK, EXIT_PARTIAL, main
from camid_gpu.cluster import ClusterParams, cluster_images
from camid_gpu.config import Params, RunConfig
from camid_gpu.datasets.synthetic import SensorModel, make_dataset
from camid_gpu.engine.runner import identify_files
from camid_gpu.store import load_store

SENSOR = SensorModel(prnu_std=0.03, natural_level_range=(0.3, 0.6))
CONFIG = RunConfig(backend="numpy", progress=False)


def adjusted_rand_index(truth: list[str], labels: list[str]) -> float:
    """ARI of two labelings (Hubert & Arabie)."""
    from math import comb

    pairs = {}
    for t, l in zip(truth, labels):
        pairs[(t, l)] = pairs.get((t, l), 0) + 1
    a, b = {}, {}
    for (t, l), n in pairs.items():
        a[t], b[l] = a.get(t, 0) + n, b.get(l, 0) + n
    index = sum(comb(n, 2) for n in pairs.values())
    sa, sb = sum(comb(n, 2) for n in a.values()), sum(comb(n, 2) for n in b.values())
    expected = sa * sb / comb(len(truth), 2)
    top = (sa + sb) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def truth_and_labels(result: dict, truth_of) -> tuple[list[str], list[str]]:
    labels = {m["path"]: c["id"] for c in result["clusters"] for m in c["members"]}
    paths = [p for g in result["groups"] for p in g["order"]]
    return [truth_of(p) for p in paths], [labels.get(p, f"single:{p}") for p in paths]


def pairwise_precision(truth: list[str], labels: list[str]) -> float:
    same = [(i, j) for i, j in combinations(range(len(labels)), 2) if labels[i] == labels[j]]
    return 1.0 if not same else sum(truth[i] == truth[j] for i, j in same) / len(same)


def camera_of(path: str) -> str:
    parts = path.split(os.sep)
    return parts[-4] + "/" + parts[-2]  # dataset/camera


def build_set(root, counts: dict[str, dict[str, int]], sizes: dict[str, tuple[int, int, int]], seed: int = 0,
              portrait: int = 0):
    """Datasets named by ``sizes`` (h, w, JPEG quality); keep ``counts[set][camera]`` natural images per
    camera and hold the last generated one back. Returns (inputs folder, held-back paths by camera)."""
    inputs, held = root / "inputs", {}
    for k, (name, (h, w, q)) in enumerate(sizes.items()):
        n_max = max(counts[name].values()) + 1
        make_dataset(root / name, cameras=len(counts[name]), per_model=2, refs=1, disputed_flat=0,
                     disputed_natural=n_max, height=h, width=w, jpeg_quality=q, seed=seed + k, sensor=SENSOR,
                     portrait=portrait)
        for cam, keep in counts[name].items():
            folder = root / name / "disputed" / cam
            files = sorted(os.listdir(folder))
            dest = inputs / name / "disputed" / cam
            dest.mkdir(parents=True)
            for f in files[:keep]:
                shutil.copy(folder / f, dest / f)
            held[f"{name}/{cam}"] = str(folder / files[-1])
    return inputs, held


COUNTS = {"A": {"C01": 6, "C02": 4, "C03": 3, "C04": 1}, "B": {"C01": 4, "C02": 3}}
SIZES = {"A": (512, 640, 85), "B": (512, 576, 95)}


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    inputs, held = build_set(root, COUNTS, SIZES, seed=20, portrait=1)
    bad = inputs / "hostile"
    bad.mkdir()
    (bad / "truncated.jpg").write_bytes((inputs / "A" / "disputed" / "C01" / "natural_001.jpg").read_bytes()[:900])
    (bad / "not-an-image.jpg").write_text("hello")
    result = cluster_images([str(inputs)], str(root / "run"), ClusterParams(region=512), CONFIG)
    return root, inputs, held, result


def test_known_truth_clusters(known):
    _, _, _, result = known
    truth, labels = truth_and_labels(result, camera_of)
    assert adjusted_rand_index(truth, labels) >= 0.95
    assert pairwise_precision(truth, labels) == 1.0  # no cluster mixes two cameras (twins included)
    assert {g["name"] for g in result["groups"]} == {"512x640", "512x576"}
    singles = {camera_of(u["path"]) for u in result["unclustered"]}
    assert "A/C04" in singles  # a camera with one image cannot form a cluster
    by_camera = {}
    for c in result["clusters"]:
        cams = {camera_of(m["path"]) for m in c["members"]}
        assert len(cams) == 1
        by_camera[cams.pop()] = c
    assert set(by_camera) == {"A/C01", "A/C02", "A/C03", "B/C01", "B/C02"}
    # the portrait image (stored turned 90 degrees) was turned back 270 to meet its camera
    rotations = {m["path"].split(os.sep)[-1]: m["rotation"] for m in by_camera["A/C01"]["members"]}
    assert rotations["natural_000.jpg"] == 270 and rotations["natural_001.jpg"] == 0


def test_hostile_files_are_errors_and_the_rest_is_clustered(known):
    _, _, _, result = known
    errors = {os.path.basename(e["path"]): e["error"]["kind"] for e in result["errors"]}
    assert errors == {"truncated.jpg": "decode", "not-an-image.jpg": "decode"}


def test_outputs_evidence_and_provenance(known):
    root, _, _, result = known
    run = root / "run"
    saved = json.loads((run / "clusters.json").read_text())
    assert saved == json.loads(json.dumps({k: v for k, v in result.items() if k != "timings_s"}))
    assert set(json.loads((run / "manifest.json").read_text())["timings_s"]) == {
        "residuals", "products", "pce_confirmation", "clustering"}
    for c in saved["clusters"]:
        for m in c["members"]:
            assert m["sha256"] == sha256_file(m["path"])
        assert c["events"][0]["kind"] == "pairs"
        t = next(g for g in saved["groups"] if g["name"] == c["group"])["threshold"]
        assert any(link["confirmed"] for link in c["links"])  # every cluster starts from linked pairs
        for link in c["links"]:
            assert link["ncc"] > t["ncc"]  # only pairs above the NCC threshold are candidates
            assert link["confirmed"] == (link["pce"] > t["pce"])
        for e in c["events"]:
            if e["kind"] in ("fingerprint-merge", "attach"):
                assert e["ncc"] > t["ncc"] and e["pce"] > t["pce"]
    for g in saved["groups"]:
        t = g["threshold"]
        assert t["pfa"] == 1e-6 and t["tests"] == saved["comparisons"]
        assert g["null"]["pairs"] == g["image_pairs"] and g["null"]["theory_std"] == pytest.approx(1 / 512)
    lines = (run / "clusters.csv").read_text().splitlines()
    images = sum(n for cams in COUNTS.values() for n in cams.values())
    assert lines[0] == "path,sha256,group,cluster,error" and len(lines) == 1 + images + 2
    assert main(["verify", str(run)]) == EXIT_OK


def test_clusters_json_records_both_stages_thresholds(known):
    """--pfa covers the pairs and the fingerprint refinement together: each group records both stages' share,
    comparisons, alpha, z, NCC and PCE; the refinement's bound is the whole run's sum of the groups' bounds,
    each from its clusters and unclustered images after the pair stage; merges and attachments passed the
    refinement's thresholds."""
    from camid_gpu.cluster.linkage import refine_comparisons
    from camid_gpu.cluster.threshold import split_pfa, stage_thresholds
    from camid_gpu.config import CLUSTER_MAX_ROUNDS, CLUSTER_PFA_PAIRS_SHARE

    root, _, _, result = known
    saved = json.loads((root / "run" / "clusters.json").read_text())
    records = read_results(str(root / "run" / "images.jsonl"))
    split = split_pfa(1e-6)
    assert saved["refine_comparisons"] == sum(g["refine_bound"]["comparisons"] for g in saved["groups"]) > 0
    for g in saved["groups"]:
        t, r, b = g["threshold"], g["refine_threshold"], g["refine_bound"]
        assert (t["stage"], r["stage"]) == ("pairs", "refine") and t["pfa"] == r["pfa"] == 1e-6
        assert t["share"] == CLUSTER_PFA_PAIRS_SHARE and t["share"] + r["share"] == 1.0
        assert (t["stage_pfa"], r["stage_pfa"]) == (split["pairs"][1], split["refine"][1])
        assert t["tests"] == saved["comparisons"] and r["tests"] == saved["refine_comparisons"]
        assert b["comparisons"] == refine_comparisons(b["clusters"], b["unclustered"], b["rotations"],
                                                      CLUSTER_MAX_ROUNDS)
        turns = {len(x["rows"]) for x in records if not x.get("error") and x["group"] == g["name"]}
        assert b["rotations"] == max(turns) == 2  # each group holds a portrait image (two turns)
        assert b["clusters"] >= len([c for c in saved["clusters"] if c["group"] == g["name"]])  # only merged away
        assert g["refine_rounds"] <= b["rounds"] <= CLUSTER_MAX_ROUNDS
        expected = stage_thresholds(1e-6, t["tests"], r["tests"], t["pixels"],
                                    t["null_std"] if t["null_source"] == "observed" else None)
        for stage, record in (("pairs", t), ("refine", r)):
            assert record == pytest.approx(expected[stage].to_dict())
        assert r["null_std"] == t["null_std"]  # the same region, the same null spread
    for c in saved["clusters"]:
        r = next(g for g in saved["groups"] if g["name"] == c["group"])["refine_threshold"]
        for e in c["events"]:
            if e["kind"] in ("fingerprint-merge", "attach"):
                assert e["ncc"] > r["ncc"] and e["pce"] > r["pce"]


def test_cluster_fingerprints_identify_held_back_images(known, tmp_path):
    root, _, held, result = known
    for c in result["clusters"]:
        camera = camera_of(c["members"][0]["path"])
        store = os.path.dirname(c["fingerprint"]["metadata"])
        assert [fp.camera for fp in load_store(store)] == sorted(x["id"] for x in result["clusters"]
                                                                  if x["group"] == c["group"])
        out = tmp_path / f"{c['id']}.jsonl"
        identify_files(store, [held[camera]], str(out), ("pce",), Params(), CONFIG)
        record = read_results(str(out))[0]
        assert record["pce"]["decision"] == c["id"], record["pce"]
        assert record["pce"]["best_pce"] > 60


def test_all_singletons_give_no_cluster(tmp_path):
    make_dataset(tmp_path / "d", cameras=10, per_model=2, refs=1, disputed_flat=0, disputed_natural=1, height=256,
                 width=320, jpeg_quality=90, seed=7, sensor=SENSOR)
    result = cluster_images([str(tmp_path / "d" / "disputed")], str(tmp_path / "run"), ClusterParams(), CONFIG)
    assert result["clusters"] == [] and len(result["unclustered"]) == 10
    # no cluster after the pairs: the refinement can compare nothing, and its bound says so
    assert result["refine_comparisons"] == 0
    assert [g["refine_bound"]["comparisons"] for g in result["groups"]] == [0]
    assert not os.path.exists(tmp_path / "run" / "fingerprints")


def test_false_links_of_all_different_cameras_match_pfa(tmp_path):
    """50 cameras, one natural image each: every link is false. At a false-alarm probability that expects
    `lam` false links in the whole run, the pair stage expects its share of them (the refinement the rest),
    and the number of linked pairs is within a factor of a few of that. The expectations are large enough
    (6 and 12 pairs) for one seed's Poisson count to say something: at 1.5 expected, none is a 22 % event."""
    import math

    from camid_gpu.config import CLUSTER_PFA_PAIRS_SHARE

    make_dataset(tmp_path / "d", cameras=50, per_model=1, refs=1, disputed_flat=0, disputed_natural=1, height=256,
                 width=256, jpeg_quality=90, seed=5)
    for lam in (12.0, 24.0):
        run = tmp_path / f"run{lam}"
        result = cluster_images([str(tmp_path / "d" / "disputed")], str(run),
                                ClusterParams(pfa=-math.expm1(-lam)), CONFIG)
        expected = lam * CLUSTER_PFA_PAIRS_SHARE
        linked = result["groups"][0]["confirmed_pairs"]
        assert expected / 4 <= linked <= expected * 4, (lam, linked, result["groups"][0]["threshold"])
        false_links = linked + sum(e["kind"] != "pairs" for c in result["clusters"] for e in c["events"])
        assert false_links <= lam * 4, (lam, false_links)


def test_incremental_run_reuses_pairs_and_matches_a_fresh_run(known, tmp_path):
    root, inputs, _, full = known
    cams = inputs / "A" / "disputed"
    run = tmp_path / "run"
    first = cluster_images([str(cams / c) for c in ("C02", "C03", "C04")], str(run), ClusterParams(region=512), CONFIG)
    old_rows = first["groups"][0]["gram"]["rows"]
    grown = cluster_images([str(inputs)], str(run), ClusterParams(region=512), CONFIG, resume=True)
    group_a = next(g for g in grown["groups"] if g["name"] == "512x640")
    assert group_a["gram"]["rows_reused"] == old_rows  # the old pairs were not multiplied again
    assert group_a["gram"]["rows"] > old_rows
    members = lambda r: sorted(sorted(m["path"] for m in c["members"]) for c in r["clusters"])  # noqa: E731
    assert members(grown) == members(full)
    assert len(read_results(str(run / "images.jsonl"))) == len(read_results(str(root / "run" / "images.jsonl")))


def test_resume_refuses_other_parameters_and_changed_files(known, tmp_path):
    from camid_gpu.errors import CamidError

    _, inputs, _, _ = known
    src = inputs / "B" / "disputed" / "C02"
    files = tmp_path / "files"
    shutil.copytree(src, files)
    run = tmp_path / "run"
    cluster_images([str(files)], str(run), ClusterParams(region=256), CONFIG)
    with pytest.raises(CamidError, match="region: run 256, requested 512"):
        cluster_images([str(files)], str(run), ClusterParams(region=512), CONFIG, resume=True)
    victim = sorted(files.iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"\0")  # one byte appended after the run
    with pytest.raises(CamidError, match="changed since"):
        cluster_images([str(files)], str(run), ClusterParams(region=256), CONFIG, resume=True)


def test_full_frame_region_and_a_one_image_group(known, tmp_path):
    _, inputs, _, _ = known
    lone = inputs / "A" / "disputed" / "C04"  # one 512x640 image: a group of its own
    result = cluster_images([str(inputs / "B" / "disputed" / "C02"), str(lone)], str(tmp_path / "run"),
                            ClusterParams(region=None), CONFIG)
    groups = {g["name"]: g for g in result["groups"]}
    assert groups["512x576"]["region"] == [512, 576] and groups["512x640"]["image_pairs"] == 0
    assert [c["size"] for c in result["clusters"]] == [3]
    assert load_store(os.path.dirname(result["clusters"][0]["fingerprint"]["metadata"]))[0].clip_of("pce") is None
    assert [u["group"] for u in result["unclustered"]] == ["512x640"]


def test_dask_gives_the_same_clusters(known, tmp_path):
    _, inputs, _, full = known
    config = RunConfig(backend="numpy", progress=False, dask="local:2")
    result = cluster_images([str(inputs / "B")], str(tmp_path / "dask"), ClusterParams(region=512), config)
    local = cluster_images([str(inputs / "B")], str(tmp_path / "local"), ClusterParams(region=512), CONFIG)
    gram_dask = np.load(tmp_path / "dask" / "gram" / "512x576.npy")
    gram_local = np.load(tmp_path / "local" / "gram" / "512x576.npy")
    np.testing.assert_array_equal(gram_dask, gram_local)
    members = lambda r: sorted(sorted(m["path"] for m in c["members"]) for c in r["clusters"])  # noqa: E731
    assert members(result) == members(local) and len(result["clusters"]) == 2


def test_cli_cluster_and_report(known, tmp_path, capsys):
    _, inputs, _, _ = known
    run = tmp_path / "run"
    rc = main(["cluster", str(inputs / "B"), str(inputs / "hostile"), "-o", str(run), "--region", "512",
               "--backend", "numpy", "--quiet"])
    assert rc == EXIT_PARTIAL  # two hostile files, reported
    out = capsys.readouterr()
    assert "2 clusters" in out.out and "truncated.jpg" in out.err
    assert "refinement: NCC threshold" in out.out and "--pfa 1e-06 for the whole run" in out.out
    assert main(["report", str(run)]) == EXIT_OK
    html = (run / "report.html").read_text()
    for text in ("similarity heat-map of group", "dendrogram of group", "cluster sizes of group",
                 "null histogram of group", "cluster-002", "not-an-image.jpg", "The two stages' thresholds"):
        assert text in html
    again = tmp_path / "again"  # the same inputs and parameters give the same bytes
    main(["cluster", str(inputs / "B"), str(inputs / "hostile"), "-o", str(again), "--region", "512",
          "--backend", "numpy", "--quiet"])
    for name in ("clusters.csv", "images.jsonl", "fingerprints/512x576/cluster-001.npz"):
        assert (again / name).read_bytes() == (run / name).read_bytes()
    assert (json.loads((again / "clusters.json").read_text().replace(str(again), str(run)))
            == json.loads((run / "clusters.json").read_text()))
    assert main(["cluster", str(inputs / "B"), "-o", str(run), "--quiet"]) != EXIT_OK  # exists: needs --resume
    assert main(["cluster", str(inputs / "B"), "-o", str(tmp_path / "x"), "--region", "8", "--quiet"]) != EXIT_OK
    assert main(["cluster", str(inputs / "B"), "-o", str(tmp_path / "y"), "--region", "big", "--quiet"]) != EXIT_OK
    assert "--region must be" in capsys.readouterr().err


def test_portrait_frames_turned_both_ways_form_one_frame(tmp_path):
    """One camera's portrait images, some stored turned 90 and some 270 degrees (180 apart): every member is
    put in one frame, so the cluster fingerprint identifies a landscape image of the camera."""
    from PIL import Image

    make_dataset(tmp_path / "p", cameras=2, per_model=2, refs=1, disputed_flat=0, disputed_natural=7, height=256,
                 width=320, jpeg_quality=95, seed=11, sensor=SENSOR, portrait=6)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        image = Image.open(tmp_path / "p" / "disputed" / "C01" / f"natural_{i:03d}.jpg")
        (image.rotate(180) if i % 2 else image).save(inputs / f"img{i}.png")
    result = cluster_images([str(inputs)], str(tmp_path / "run"), ClusterParams(region=256), CONFIG)
    assert [c["size"] for c in result["clusters"]] == [6]
    cluster = result["clusters"][0]
    frames = {(int(m["path"][-5]) % 2 * 180 + m["rotation"]) % 360 for m in cluster["members"]}
    assert len(frames) == 1, cluster["members"]
    assert cluster["frame_known"] is False  # no landscape member: known up to a half turn
    out = tmp_path / "id.jsonl"
    store = os.path.dirname(cluster["fingerprint"]["metadata"])
    identify_files(store, [str(tmp_path / "p" / "disputed" / "C01" / "natural_006.jpg")], str(out), ("pce",),
                   Params(), CONFIG)
    assert read_results(str(out))[0]["pce"]["best_pce"] > 60


def test_a_copy_follows_its_image_into_the_cluster(known, tmp_path):
    _, inputs, _, _ = known
    files = tmp_path / "files"
    shutil.copytree(inputs / "B" / "disputed" / "C02", files)
    first = sorted(files.iterdir())[0]
    shutil.copy(first, files / "zz-copy.jpg")
    result = cluster_images([str(files)], str(tmp_path / "run"), ClusterParams(region=512), CONFIG)
    (cluster,) = result["clusters"]
    assert cluster["size"] == 3 and cluster["copies"] == 1 and len(cluster["members"]) == 4
    copy = next(m for m in cluster["members"] if m["path"].endswith("zz-copy.jpg"))
    assert copy["identical_to"] == str(first)
    assert load_store(os.path.dirname(cluster["fingerprint"]["metadata"]))[0].params["refs"] == 3
    rows = (tmp_path / "run" / "clusters.csv").read_text().splitlines()
    assert sum(line.endswith(",cluster-001,") for line in rows) == 4

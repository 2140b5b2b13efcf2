"""Identification runs end to end on synthetic cameras: decisions, tables, backends, bad input, resume."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import requires_torch
from PIL import Image

from camid_gpu.config import Params, RunConfig
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.engine.runner import evaluate_dataset, fingerprint_folder, identify_files
from camid_gpu.engine.scheduler import read_results
from camid_gpu.errors import CamidError, FingerprintMismatchError
from camid_gpu.pipeline.prepare import rotations_to_try
from camid_gpu.store import load_store

CLIP = (256, 256)
REFS = 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_dataset(root, cameras=3, per_model=2, refs=REFS, disputed_flat=2, disputed_natural=2, height=320,
                 width=384, jpeg_quality=92, portrait=1, seed=7)
    return root


@pytest.fixture(scope="module")
def evaluation(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    params = Params(clip=CLIP, refs=REFS)
    summary = evaluate_dataset(str(dataset), str(out), ("pce", "mahalanobis"), params,
                               RunConfig(backend="numpy", progress=False))
    return out, summary


def test_pce_identifies_flats_and_separates_twins(evaluation):
    out, summary = evaluation
    pce = summary["pce"]
    assert pce["per_kind"]["flat"]["accuracy"] == 1.0
    records = read_results(os.path.join(out, "results.jsonl"))
    for r in records:
        if r["kind"] != "flat":
            continue
        own = r["pce"]["scores"][r["truth"]]["pce"]
        others = [s["pce"] for cam, s in r["pce"]["scores"].items() if cam != r["truth"]]
        assert own > 60 and max(others) < 60, r["path"]  # twins (C01/C02) included
    assert pce["far_at_threshold"] == 0.0
    assert pce["roc"]["auc"] > 0.95


def test_evaluation_json_has_the_issue_keys(evaluation):
    out, summary = evaluation
    on_disk = json.loads((out / "evaluation.json").read_text())
    for method in ("pce", "mahalanobis"):
        block = on_disk[method]
        assert {"accuracy", "per_kind", "confusion", "images"} <= set(block)
        assert 0.0 <= block["accuracy"] <= 1.0
        assert len(block["images"]) == 12 and set(block["per_kind"]) == {"flat", "natural"}
        counts = np.array(block["confusion"]["counts"])
        assert counts.sum() == 12 and counts.shape == (3, 6)  # + (none), (tie), (not comparable)


def test_mahalanobis_tables_have_the_paper_structure(evaluation):
    out, summary = evaluation
    records = read_results(os.path.join(out, "results.jsonl"))
    cams = summary["cameras"]
    for r in records:
        m = r["mahalanobis"]
        sat, unsat = np.array(m["pairwise"]["satisfied"]), np.array(m["pairwise"]["unsatisfied"])
        assert sat.shape == (3, 3)
        if r["kind"] == "flat":
            # every pair is counted over every pixel of the clipping
            off = ~np.eye(3, dtype=bool)
            assert ((sat + unsat)[off] == CLIP[0] * CLIP[1]).all()
        # membership = 100 * wins / (C - 1); association = the maxima, ties listed
        wins = (sat > unsat) & ~np.eye(3, dtype=bool)
        expected = 100 * wins.sum(1) / 2
        assert [m["membership"][c] for c in cams] == pytest.approx(expected.tolist(), abs=1e-3)
        best = [c for c, v in zip(cams, expected) if v == expected.max()]
        assert m["associated"] == best and m["tie"] == (len(best) > 1)
        assert set(m["diagnostics"]) >= {"closer_fraction", "vote_agreement", "driver"}
    eff = summary["mahalanobis"]["effectiveness"]
    assert set(eff) == set(cams) and all(e["images"] == 4 for e in eff.values())


def test_portrait_image_is_rotated_back(evaluation):
    out, _ = evaluation
    portrait = [r for r in read_results(os.path.join(out, "results.jsonl")) if r["size"][0] > r["size"][1]]
    assert len(portrait) == 3
    for r in portrait:
        assert r["rotations_tried"] == [0, 90, 180, 270]
        assert r["rotation"] in (90, 270)


def test_rotation_rule():
    assert rotations_to_try((300, 400), (600, 800), "auto") == [0]
    assert rotations_to_try((400, 300), (600, 800), "auto") == [0, 90, 180, 270]
    assert rotations_to_try((400, 300), (600, 800), "none") == [0]
    assert rotations_to_try((300, 400), (600, 800), "all") == [0, 90, 180, 270]


@requires_torch
def test_numpy_and_torch_give_the_same_decisions(dataset, evaluation, tmp_path):
    out, _ = evaluation
    fp_dir = out / "fingerprints"
    disputed = dataset / "disputed"
    decisions = {}
    for backend in ("numpy", "torch"):
        results = tmp_path / f"{backend}.jsonl"
        identify_files(str(fp_dir), [str(disputed)], str(results), ("pce", "mahalanobis"), Params(),
                       RunConfig(backend=backend, device="cpu", progress=False))
        decisions[backend] = [(r["path"], r["pce"]["decision"], r["rotation"], tuple(r["mahalanobis"]["associated"]))
                              for r in read_results(str(results))]
    assert decisions["numpy"] == decisions["torch"]


def test_fingerprints_from_torch_match_numpy(dataset, tmp_path):
    pytest.importorskip("torch")
    refs = dataset / "refs"
    params = Params(clip=(128, 128), refs=3)
    for backend in ("numpy", "torch"):
        fingerprint_folder(str(refs), str(tmp_path / backend), ("pce", "mahalanobis"), params,
                           RunConfig(backend=backend, device="cpu" if backend == "torch" else None))
    a, b = load_store(tmp_path / "numpy"), load_store(tmp_path / "torch")
    for fa, fb in zip(a, b):
        assert np.corrcoef(fa.k.ravel(), fb.k.ravel())[0, 1] > 0.9999
        np.testing.assert_allclose(fa.mean_i0, fb.mean_i0, atol=2e-3)
        assert [r["sha256"] for r in fa.references] == [r["sha256"] for r in fb.references]


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_input_is_reported_and_the_run_goes_on(dataset, evaluation, tmp_path, workers):
    out, _ = evaluation
    bad = tmp_path / "bad"
    bad.mkdir()
    good = sorted((dataset / "disputed" / "C01").glob("flat_*.jpg"))[0]
    shutil.copy(good, bad / "a_good.jpg")
    small = np.random.default_rng(3).integers(20, 230, size=(90, 100), dtype=np.uint8)
    Image.fromarray(small).save(bad / "b_small.png")  # smaller than the 256 clipping (a constant one is refused)
    (bad / "c_empty.jpg").write_bytes(b"")
    (bad / "d_text.jpg").write_text("hello")
    results = tmp_path / "r.jsonl"
    run = identify_files(str(out / "fingerprints"), [str(bad)], str(results), ("pce", "mahalanobis"), Params(),
                         RunConfig(backend="numpy", progress=False, workers=workers))
    records = read_results(str(results))
    assert [os.path.basename(r["path"]) for r in records] == ["a_good.jpg", "b_small.png", "c_empty.jpg", "d_text.jpg"]
    assert records[0]["error"] is None and records[0]["pce"]["decision"] == "C01"
    # smaller than every sensor frame, and the fingerprints are 256x256 clips: comparable with none of them
    assert records[1]["error"] is None and records[1]["pce"]["scores"] == {} and records[1]["pce"]["decision"] is None
    assert "a crop needs a full-frame fingerprint" in records[1]["pce"]["not_comparable"]["C01"]["reason"]
    assert records[1]["pce"]["not_comparable"]["C01"]["image_size"] == [90, 100]
    assert records[1]["mahalanobis"]["membership"] == {} and set(records[1]["mahalanobis"]["not_comparable"]) == {
        "C01", "C02", "C03"}
    assert records[2]["error"]["kind"] == "decode" and "empty file" in records[2]["error"]["reason"]
    assert records[3]["error"]["kind"] == "decode"
    assert run["processed"] == 4


def test_resume_skips_done_files_and_duplicates_nothing(evaluation, dataset, tmp_path):
    out, _ = evaluation
    disputed = dataset / "disputed"
    full = tmp_path / "full.jsonl"
    config = RunConfig(backend="numpy", progress=False, chunk=2)
    identify_files(str(out / "fingerprints"), [str(disputed)], str(full), ("pce",), Params(), config)
    lines = full.read_text().splitlines(keepends=True)
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])  # a crash mid-line
    with pytest.raises(CamidError, match="pass --resume"):
        identify_files(str(out / "fingerprints"), [str(disputed)], str(partial), ("pce",), Params(), config)
    run = identify_files(str(out / "fingerprints"), [str(disputed)], str(partial), ("pce",), Params(), config,
                         resume=True)
    assert run["skipped_as_done"] == 5 and run["processed"] == 7
    assert partial.read_bytes() == full.read_bytes()  # deterministic: byte-identical to the uninterrupted run


def test_fingerprint_errors(dataset, tmp_path):
    refs = tmp_path / "refs"
    shutil.copytree(dataset / "refs", refs)
    (refs / "empty_cam").mkdir()
    for p in sorted((refs / "C03").glob("*.jpg"))[2:]:
        p.unlink()
    (refs / "C02" / "ref_000.jpg").write_bytes(b"broken")
    summary = fingerprint_folder(str(refs), str(tmp_path / "fp"), ("pce",), Params(clip=(128, 128), refs=5),
                                 RunConfig(backend="numpy"))
    assert [c["camera"] for c in summary["cameras"]] == ["C01", "C02"]  # C02 still has 5 good references
    reasons = {os.path.basename(e["path"]): e["error"]["reason"] for e in summary["errors"]}
    assert "ref_000.jpg" in reasons and "empty_cam" in reasons
    # counted on the listing, before any decoding, and the message names the fix
    assert reasons["C03"] == ("camera 'C03' has 2 listed reference images, 5 required (--refs 5); pass --refs all "
                              "to use every usable one (or --refs 2), or add flat references to its folder")


def test_mismatched_parameters_are_refused(evaluation, dataset, tmp_path):
    out, _ = evaluation
    with pytest.raises(FingerprintMismatchError, match=r"requested pce clip \(300, 300\)"):
        identify_files(str(out / "fingerprints"), [str(dataset / "disputed")], str(tmp_path / "x.jsonl"), ("pce",),
                       Params(clip=(300, 300)), RunConfig(backend="numpy"), clip_given=True)


def test_dask_local_cluster_matches_single_process(evaluation, dataset, tmp_path):
    pytest.importorskip("dask.distributed")
    out, _ = evaluation
    files = [str(p) for p in sorted((dataset / "disputed" / "C02").glob("*.jpg"))]
    single, multi = tmp_path / "single.jsonl", tmp_path / "multi.jsonl"
    identify_files(str(out / "fingerprints"), files, str(single), ("pce", "mahalanobis"), Params(),
                   RunConfig(backend="numpy", progress=False))
    identify_files(str(out / "fingerprints"), files, str(multi), ("pce", "mahalanobis"), Params(),
                   RunConfig(backend="numpy", progress=False, dask="local:2", chunk=2))
    assert multi.read_bytes() == single.read_bytes()


def test_sixteen_bit_image_scores_like_its_eight_bit_twin(evaluation, dataset, tmp_path):
    """uint16 pixels are scaled to 0..255 before the residual: x*257 in 16 bits equals x in 8 bits."""
    import tifffile

    from camid_gpu.io.decode import read_image

    out, _ = evaluation
    src = sorted((dataset / "disputed" / "C03").glob("flat_*.jpg"))[0]
    pixels, _ = read_image(src)
    tifffile.imwrite(tmp_path / "flat16.tif", pixels.astype(np.uint16) * 257)
    Image.fromarray(pixels).save(tmp_path / "flat8.png")
    results = tmp_path / "r.jsonl"
    identify_files(str(out / "fingerprints"), [str(tmp_path)], str(results), ("pce", "mahalanobis"), Params(),
                   RunConfig(backend="numpy", progress=False))
    r16, r8 = read_results(str(results))
    assert r16["bit_depth"] == 16 and r8["bit_depth"] == 8
    assert r16["pce"]["decision"] == r8["pce"]["decision"] == "C03"
    for cam, s in r8["pce"]["scores"].items():
        assert r16["pce"]["scores"][cam]["pce"] == pytest.approx(s["pce"], rel=1e-4, abs=1e-3)
    assert r16["mahalanobis"]["membership"] == r8["mahalanobis"]["membership"]


def test_torch_backend_accepts_read_only_arrays():
    pytest.importorskip("torch")
    from camid_gpu.backend import get_backend

    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    x.setflags(write=False)  # as np.asarray(PIL image) gives
    bk = get_backend("torch", device="cpu")
    assert bk.to_numpy(bk.asarray(x)).tolist() == x.astype(np.float32).tolist()


def test_identify_with_scale_search(dataset, tmp_path):
    """--search-scales needs full-frame fingerprints; a downscaled, cropped flat is matched."""
    fp = tmp_path / "fp"
    fingerprint_folder(str(dataset / "refs"), str(fp), ("pce",), Params(clip=None, refs=REFS),
                       RunConfig(backend="numpy"))
    pixels = np.asarray(Image.open(sorted((dataset / "disputed" / "C02").glob("flat_*.jpg"))[0]))
    small = Image.fromarray(pixels).resize((346, 288), Image.Resampling.BICUBIC)  # scale 0.9
    small.crop((10, 8, 330, 280)).save(tmp_path / "resized_flat.jpg", quality=90)
    results = tmp_path / "r.jsonl"
    identify_files(str(fp), [str(tmp_path / "resized_flat.jpg")], str(results), ("pce",),
                   Params(clip=None, search_scales=(0.8, 1.0, 0.05)), RunConfig(backend="numpy"))
    (record,) = read_results(str(results))
    assert record["pce"]["method"] == "pce-scale-crop-search"
    assert record["pce"]["decision"] == "C02"
    assert record["pce"]["scores"]["C02"]["scale"] == pytest.approx(0.9, abs=0.05)
    clipped = tmp_path / "fp_clipped"
    fingerprint_folder(str(dataset / "refs"), str(clipped), ("pce",), Params(clip=(128, 128), refs=REFS),
                       RunConfig(backend="numpy"))
    with pytest.raises(FingerprintMismatchError, match="needs full-frame fingerprints"):
        identify_files(str(clipped), [str(dataset / "disputed")], str(tmp_path / "x.jsonl"), ("pce",),
                       Params(search_scales=(0.5, 1.0, 0.1)), RunConfig(backend="numpy"))

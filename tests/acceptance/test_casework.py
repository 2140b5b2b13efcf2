"""Casework acceptance: cameras of three sensor sizes (one portrait), twins, JPEG q90 and
full-frame fingerprints from 10 references, in one store; crops found by offset; early failure; symlinks.

The synthetic sensors are small (about 0.2 MP) so the default suite stays quick; their PRNU is set to 2 %
(natural scenes a little brighter than the default) so that a 0.2 MP frame carries about as much PRNU
evidence as a few-megapixel real one: genuine natural images measured PCE 124-258, unrelated cameras <= 6.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from camid_gpu.cli import main
from camid_gpu.config import Params, RunConfig
from camid_gpu.datasets.synthetic import SensorModel, make_dataset
from camid_gpu.engine.runner import evaluate_dataset, identify_files
from camid_gpu.engine.scheduler import read_results
from camid_gpu.errors import CamidError, FingerprintError
from camid_gpu.evaluate import NOT_COMPARABLE_LABEL, format_report

#: sensor sizes (rows, columns): landscape, portrait, wide
SENSORS = {"A": (384, 512), "P": (512, 384), "W": (320, 576)}
SENSOR = SensorModel(prnu_std=0.02, natural_level_range=(0.2, 0.4))
PARAMS = Params(refs=10, mahalanobis_clip=(256, 256))  # PCE: the default full frame
CROP = (64, 96, 288, 352)  # top, left, rows, columns of the crop of a natural image of A-C01


@pytest.fixture(scope="module")
def casework(tmp_path_factory):
    """Three synthetic datasets (two twin cameras each) joined into one case through symbolic links."""
    root = tmp_path_factory.mktemp("casework")
    for i, (tag, (h, w)) in enumerate(SENSORS.items()):
        make_dataset(root / f"src{tag}", cameras=2, per_model=2, refs=10, disputed_flat=2, disputed_natural=3,
                     height=h, width=w, jpeg_quality=90, seed=11 + i, sensor=SENSOR)
        for part in ("refs", "disputed"):
            (root / "case" / part).mkdir(parents=True, exist_ok=True)
            for cam in ("C01", "C02"):  # folders reached through links, for references and disputed images alike
                os.symlink(root / f"src{tag}" / part / cam, root / "case" / part / f"{tag}-{cam}")
    summary = evaluate_dataset(str(root / "case"), str(root / "run"), ("pce", "mahalanobis"), PARAMS,
                               RunConfig(backend="numpy", progress=False))
    return root, summary, read_results(str(root / "run" / "results.jsonl"))


def _sensor_of(camera: str) -> tuple[int, int]:
    return SENSORS[camera.split("-")[0]]


def test_every_image_is_scored_only_against_its_geometry(casework):
    _, summary, records = casework
    assert len(records) == 30 and not summary["images_with_errors"] and not summary["fingerprint_errors"]
    cameras = {f"{t}-{c}" for t in SENSORS for c in ("C01", "C02")}
    for r in records:
        shape = tuple(r["size"])
        comparable = {c for c in cameras if _sensor_of(c) in (shape, shape[::-1])}
        assert set(r["pce"]["scores"]) == comparable
        assert set(r["pce"]["not_comparable"]) == cameras - comparable
        for cam, entry in r["pce"]["not_comparable"].items():
            assert entry["image_size"] == list(shape) and entry["fingerprint_size"] == list(_sensor_of(cam))
            assert "other sensor size" in entry["reason"]
        for cam, s in r["pce"]["scores"].items():
            assert s["match"] == "full-frame"
            assert s["rotation"] in ((0,) if _sensor_of(cam) == shape else (90, 270))
        # the Mahalanobis votes compare cameras of the image's own geometry only
        assert set(r["mahalanobis"]["membership"]) == {c for c in cameras if _sensor_of(c) == shape}
        assert r["truth"] in r["pce"]["scores"] and r["truth"] in r["mahalanobis"]["membership"]


def test_decisions_flats_naturals_and_no_false_accusation(casework):
    _, summary, records = casework
    per_kind = summary["pce"]["per_kind"]
    assert per_kind["flat"]["count"] == 12 and per_kind["flat"]["accuracy"] == 1.0
    assert per_kind["natural"]["count"] == 18 and per_kind["natural"]["accuracy"] >= 0.95
    impostor = [s["pce"] for r in records for cam, s in r["pce"]["scores"].items() if cam != r["truth"]]
    assert len(impostor) == 20 * 3 + 10 * 1 and max(impostor) < 60 / 4  # (A and P are 90 degrees apart); measured <= 6
    genuine = [r["pce"]["scores"][r["truth"]]["pce"] for r in records]
    assert min(genuine) > 60 * 1.5  # measured 124: a comfortable margin over the threshold


def test_not_comparable_is_distinct_in_tables_and_csv(casework, tmp_path):
    root, summary, _ = casework
    assert summary["pce"]["not_comparable"] == {"pairs": 80, "own_camera_pairs": 0,
                                                "images_with_no_comparable_camera": 0}
    text = format_report(summary)
    assert "not comparable (other geometry; no score, not below threshold): 80 image-camera pairs" in text
    assert "n/c" in text and NOT_COMPARABLE_LABEL in summary["pce"]["confusion"]["columns"]
    csv_path = tmp_path / "run.csv"
    code = main(["identify", str(root / "run" / "fingerprints"), str(root / "case" / "disputed" / "P-C01"),
                 "-o", str(tmp_path / "run"), "--csv", str(csv_path), "--backend", "numpy", "--quiet"])
    assert code == 0
    import csv

    with csv_path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 * 6
    nc = [r for r in rows if r["pce_status"] == "not comparable"]
    assert len(nc) == 5 * 2 and all(r["pce"] == "" and "other sensor size" in r["not_comparable_reason"] for r in nc)
    assert {r["pce_status"] for r in rows} == {"scored", "not comparable"}


def test_crop_is_found_at_its_true_offset(casework, tmp_path):
    root, _, _ = casework
    top, left, h, w = CROP
    pixels = np.asarray(Image.open(root / "srcA" / "disputed" / "C01" / "natural_001.jpg"))
    Image.fromarray(pixels[top:top + h, left:left + w]).save(tmp_path / "crop.png")
    results = tmp_path / "r.jsonl"
    identify_files(str(root / "run" / "fingerprints"), [str(tmp_path / "crop.png")], str(results), ("pce",),
                   Params(), RunConfig(backend="numpy", progress=False))
    (r,) = read_results(str(results))
    own = r["pce"]["scores"]["A-C01"]
    assert r["pce"]["decision"] == "A-C01" and own["match"] == "crop" and own["offset"] == [top, left]
    assert own["positions_searched"] == (384 - h + 1) * (512 - w + 1)
    others = [s["pce"] for cam, s in r["pce"]["scores"].items() if cam != "A-C01"]
    assert others and max(others) < 60  # every other camera the crop fits in was searched too, and stays low


def test_early_failure_before_any_residual(casework, tmp_path, monkeypatch):
    """A bad store, a missing folder or a bad parameter fails before any residual is computed."""
    root, _, _ = casework
    import sys

    import camid_gpu.mahalanobis.traces  # noqa: F401  (every module that holds the denoiser is loaded)
    import camid_gpu.prnu.fingerprint  # noqa: F401

    def forbidden(*args, **kwargs):
        raise AssertionError("a residual was computed before the error")

    # noise_extract is the wavelet denoiser under every residual (PCE, fingerprints, Mahalanobis traces)
    holders = [m for name, m in list(sys.modules.items()) if name.startswith("camid_gpu") and
               getattr(m, "noise_extract", None) is not None]
    assert len(holders) >= 3
    for module in holders:
        monkeypatch.setattr(module, "noise_extract", forbidden)
    fp_dir = str(root / "run" / "fingerprints")
    with pytest.raises(CamidError, match="nothing: disputed-image folder does not exist"):
        identify_files(fp_dir, [str(tmp_path / "nothing")], str(tmp_path / "a.jsonl"), ("pce",), Params(),
                       RunConfig(backend="numpy"))
    bad_store = tmp_path / "store"
    bad_store.mkdir()
    (bad_store / "X.json").write_text("{not json")
    with pytest.raises(FingerprintError, match="X.json: cannot read fingerprint metadata"):
        identify_files(str(bad_store), [str(root / "case" / "disputed")], str(tmp_path / "b.jsonl"), ("pce",),
                       Params(), RunConfig(backend="numpy"))
    with pytest.raises(CamidError, match="needs full-frame"):
        evaluate_dataset(str(root / "case"), str(tmp_path / "e"), ("pce",),
                         Params(pce_clip=(128, 128), search_scales=(0.5, 1.0, 0.1)), RunConfig(backend="numpy"))
    empty = tmp_path / "empty_case"
    (empty / "refs" / "C01").mkdir(parents=True)
    (empty / "disputed").mkdir()
    with pytest.raises(CamidError, match="no images found"):  # before the references are fingerprinted
        evaluate_dataset(str(empty), str(tmp_path / "f"), ("pce",), PARAMS, RunConfig(backend="numpy"))
    assert main(["identify", fp_dir, str(root / "case" / "disputed"), "-o", str(tmp_path / "g"),
                 "--pce-clip", "8x8"]) == 1  # a bad parameter: refused by the parser's check, no work done
    assert not (tmp_path / "g" / "results.jsonl").exists()


def test_symlink_loops_end(tmp_path):
    from camid_gpu.io.listing import list_images

    real = tmp_path / "real" / "sub"
    real.mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(tmp_path / "real" / "a.png")
    Image.new("RGB", (20, 20)).save(real / "b.png")
    (tmp_path / "top").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "top" / "cam")
    os.symlink(tmp_path / "top", real / "loop")  # top/cam/sub/loop -> top: a loop
    found = list_images(tmp_path / "top")
    assert [os.path.relpath(p, tmp_path) for p in found] == ["top/cam/a.png", "top/cam/sub/b.png"]


def test_html_report_shows_not_comparable_apart_from_below_threshold(casework, tmp_path):
    pytest.importorskip("matplotlib")
    from camid_gpu.report import write_report

    root, _, _ = casework
    html = (tmp_path / "r.html")
    write_report(root / "run", html)
    text = html.read_text(encoding="utf-8")
    assert ('<span class="bad">not comparable</span>: image 384x512, fingerprint 320x576: other sensor size'
            in text)
    assert "which is not the same as a score below the threshold" in text


def test_scale_search_scores_every_camera_at_its_own_rotations(casework, tmp_path):
    """--search-scales in a mixed store: a portrait image is searched against the portrait cameras as it is and
    against the landscape ones turned; every camera searched keeps its score (none is called "not comparable"
    because another camera won at another rotation), and the false-alarm probability counts the rotations."""
    import math

    from camid_gpu.prnu.search import search_scale_crop

    root, _, _ = casework
    image = root / "case" / "disputed" / "P-C01" / "flat_000.jpg"
    results = tmp_path / "r.jsonl"
    identify_files(str(root / "run" / "fingerprints"), [str(image)], str(results), ("pce",),
                   Params(search_scales=(1.0, 1.0, 0.5)), RunConfig(backend="numpy", progress=False))
    (r,) = read_results(str(results))
    pce = r["pce"]
    assert pce["decision"] == "P-C01" and r["rotation"] == 0
    assert set(pce["scores"]) == {"P-C01", "P-C02", "A-C01", "A-C02"}  # A: 384x512, the image turned by 90/270
    assert set(pce["not_comparable"]) == {"W-C01", "W-C02"}
    assert pce["scores"]["P-C01"]["rotation"] == 0 and pce["scores"]["A-C01"]["rotation"] in (90, 270)
    # the landscape cameras were searched at two rotations: their P_FA is the union bound over both
    from camid_gpu.store import load_fingerprint

    k = load_fingerprint(root / "run" / "fingerprints" / "A-C02.json").k
    pixels = np.asarray(Image.open(image))
    d = pce["scores"]["A-C02"]["rotation"]
    (one,) = search_scale_crop("numpy", np.ascontiguousarray(np.rot90(pixels, d // 90)), [("A-C02", k)], scales=[1.0])
    assert pce["scores"]["A-C02"]["pce"] == pytest.approx(one.pce, rel=1e-4)
    assert pce["scores"]["A-C02"]["log10_p_fa"] == pytest.approx(min(0.0, one.log10_p_fa + math.log10(2)), abs=1e-4)


def test_mahalanobis_with_one_camera_of_the_geometry_is_no_vote_not_a_tie(casework, tmp_path):
    """With a single camera of the image's geometry the pairwise votes have no competitor: the record says so,
    and the evaluation counts the image as "(none)", never as a tie."""
    import shutil

    from camid_gpu.evaluate import NONE_LABEL, summarise

    root, _, _ = casework
    store = tmp_path / "store"
    store.mkdir()
    for cam in ("A-C01", "P-C01", "P-C02"):
        for ext in ("json", "npz"):
            shutil.copy(root / "run" / "fingerprints" / f"{cam}.{ext}", store)
    results = tmp_path / "r.jsonl"
    identify_files(str(store), [str(root / "case" / "disputed" / "A-C01" / "flat_000.jpg")], str(results),
                   ("pce", "mahalanobis"), Params(), RunConfig(backend="numpy", progress=False),
                   truth_root=str(root / "case" / "disputed"), unverified_store=True)  # hand-assembled: no manifest
    (r,) = read_results(str(results))
    maha = r["mahalanobis"]
    assert list(maha["membership"]) == ["A-C01"] and maha["associated"] == [] and not maha["tie"]
    assert "only one camera" in maha["undetermined"]
    summary = summarise([r], ["A-C01", "P-C01", "P-C02"], ("pce", "mahalanobis"))
    m = summary["mahalanobis"]
    row = m["confusion"]["counts"][0]
    assert row[m["confusion"]["columns"].index(NONE_LABEL)] == 1 and m["ties"] == 0
    assert row[m["confusion"]["columns"].index("(tie)")] == 0


def test_one_reference_folder_under_two_camera_names_is_refused(tmp_path):
    """Two camera folders that are one real folder (links), or share a reference file (a hard link, a nested
    folder), would give two identical fingerprints and a decision for whichever name sorts first: refused, naming
    both cameras and the file, before any reference is decoded."""
    from camid_gpu.engine.runner import fingerprint_folder

    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(60, 200, (32, 32, 3), dtype=np.uint8)).save(real / f"ref_{i}.png")
    refs = tmp_path / "refs"
    refs.mkdir()
    os.symlink(real, refs / "A")
    os.symlink(real, refs / "B")
    with pytest.raises(CamidError, match=r"cameras 'A' and 'B'.*ref_0\.png"):
        fingerprint_folder(str(refs), str(tmp_path / "fp"), ("pce",), Params(refs=2, clip=None),
                           RunConfig(backend="numpy", progress=False))
    os.unlink(refs / "B")
    (refs / "B").mkdir()
    os.link(real / "ref_1.png", refs / "B" / "other.png")  # the same file by another name
    with pytest.raises(CamidError, match=r"cameras 'A' and 'B'"):
        fingerprint_folder(str(refs), str(tmp_path / "fp"), ("pce",), Params(refs=2, clip=None),
                           RunConfig(backend="numpy", progress=False))
    assert not list((tmp_path / "fp").glob("*.json")) and not list((tmp_path / "fp").glob("*.npz"))


def test_residual_batches_hold_no_more_clips_than_the_chunk_has_images(casework, monkeypatch):
    """The chunk size is planned per image (config memory budget); an image tried at several rotations must not
    multiply the residual batch (a 24 MP portrait frame against landscape fingerprints doubled the working set),
    and a rotation that no fingerprint matches gets no residual at all."""
    from camid_gpu.pipeline import identify as ident
    from camid_gpu.pipeline.prepare import prepare_disputed
    from camid_gpu.store import load_store

    root, _, _ = casework
    store = load_store(str(root / "run" / "fingerprints"))
    params = Params(pce_clip=None, mahalanobis_clip=(256, 256))
    shapes = sorted({fp.source_shape for fp in store})
    item = prepare_disputed(str(root / "case" / "disputed" / "P-C01" / "flat_000.jpg"), params, shapes)
    assert item.rotations == [0, 90, 180, 270]  # 0 for the portrait cameras, 90/270 for the landscape ones
    batches = []
    real = ident.residual_native

    def spy(bk, pixels, *args, **kwargs):
        batches.append(tuple(pixels.shape[:3]))
        return real(bk, pixels, *args, **kwargs)

    monkeypatch.setattr(ident, "residual_native", spy)
    from camid_gpu.backend import get_backend

    (r,) = ident.identify_chunk(get_backend("numpy"), store, [item], params, ("pce",))
    assert sorted(batches) == [(1, 384, 512), (1, 384, 512), (1, 512, 384)]  # 90, 270 and 0; never 180
    assert r["pce"]["decision"] == "P-C01" and r["pce"]["scores"]["A-C01"]["rotation"] in (90, 270)


def test_an_image_no_fingerprint_can_be_compared_with_is_reported_as_such(casework, tmp_path, capsys):
    """An image of a geometry no fingerprint has: "not comparable" in the table, a note naming it on stderr and
    a count in the last line, so that it is not read as "no camera above the threshold"."""
    root, _, _ = casework
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(40, 220, (100, 700, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    code = main(["identify", str(root / "run" / "fingerprints"), str(tmp_path / "wide.png"), "-o",
                 str(tmp_path / "run"), "--backend", "numpy", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "not comparable" in out and "1 not comparable with any fingerprint" in out
    assert "wide.png: not comparable with any of the 6 fingerprints (no fingerprint of its geometry): image 100x700" \
        in err
    (r,) = read_results(str(tmp_path / "run" / "results.jsonl"))
    assert r["pce"]["scores"] == {} and r["pce"]["decision"] is None and len(r["pce"]["not_comparable"]) == 6


def test_a_camera_smaller_than_a_clipping_fails_at_its_first_reference(tmp_path, monkeypatch):
    """The clipping check needs only the first reference's size: the other references are not decoded."""
    from camid_gpu.engine.runner import fingerprint_folder
    from camid_gpu.pipeline import prepare

    rng = np.random.default_rng(0)
    (tmp_path / "refs" / "C01").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(rng.integers(60, 200, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "refs" / "C01" / f"{i}.png")
    calls = []
    real = prepare.load_reference
    monkeypatch.setattr(prepare, "load_reference", lambda path, *a: calls.append(path) or real(path, *a))
    summary = fingerprint_folder(str(tmp_path / "refs"), str(tmp_path / "fp"), ("pce", "mahalanobis"),
                                 Params(refs=5, pce_clip=None, mahalanobis_clip=(128, 128)),
                                 RunConfig(backend="numpy", workers=1, progress=False))
    assert not summary["cameras"] and len(calls) == 1
    (error,) = summary["errors"]
    assert "references are 64x80, smaller than the mahalanobis method's 128x128 clipping" in error["error"]["reason"]


def test_rotations_none_says_a_turned_image_would_be_comparable(casework, tmp_path):
    root, _, _ = casework
    results = tmp_path / "r.jsonl"
    identify_files(str(root / "run" / "fingerprints"), [str(root / "case" / "disputed" / "P-C01" / "flat_000.jpg")],
                   str(results), ("pce",), Params(rotations="none"), RunConfig(backend="numpy", progress=False))
    (r,) = read_results(str(results))
    assert set(r["pce"]["scores"]) == {"P-C01", "P-C02"}
    reason = r["pce"]["not_comparable"]["A-C01"]["reason"]
    assert reason.startswith("image 512x384, fingerprint 384x512: other sensor size") and "--rotations auto" in reason
    assert "--rotations" not in r["pce"]["not_comparable"]["W-C01"]["reason"]


def test_fingerprint_batches_follow_the_host_memory_budget(tmp_path, monkeypatch):
    """References are accumulated in batches the memory budget allows (fixed batches of 4 full 24 MP frames
    needed ~14 GB whatever --max-host-memory said); the fingerprint does not depend on the batch."""
    from camid_gpu.engine.runner import fingerprint_folder
    from camid_gpu.prnu import fingerprint as fpmod
    from camid_gpu.store import load_fingerprint

    rng = np.random.default_rng(0)
    (tmp_path / "refs" / "C01").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(rng.integers(60, 200, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "refs" / "C01" / f"{i}.png")
    sizes = []
    real = fpmod.FingerprintAccumulator.add
    monkeypatch.setattr(fpmod.FingerprintAccumulator, "add", lambda self, x: sizes.append(len(x)) or real(self, x))
    params = Params(refs=5, pce_clip=None, mahalanobis_clip=(32, 32))
    small = fingerprint_folder(str(tmp_path / "refs"), str(tmp_path / "a"), ("pce", "mahalanobis"), params,
                               RunConfig(backend="numpy", max_host_memory=1 << 20, progress=False))
    assert small["cameras"] and sizes == [1] * 5  # 64x80x3 frames: ~0.7 MB of working set each, 0.5 MB budget
    sizes.clear()
    large = fingerprint_folder(str(tmp_path / "refs"), str(tmp_path / "b"), ("pce", "mahalanobis"), params,
                               RunConfig(backend="numpy", progress=False))
    assert large["cameras"] and sizes == [4, 1]
    a, b = load_fingerprint(tmp_path / "a" / "C01.json"), load_fingerprint(tmp_path / "b" / "C01.json")
    np.testing.assert_allclose(a.k, b.k, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.mean_prnu, b.mean_prnu, rtol=1e-5, atol=1e-6)

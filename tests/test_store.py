"""Fingerprint store: round trip, determinism, version/parameter/hash checks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from camid_gpu.errors import FingerprintError, FingerprintMismatchError
from camid_gpu.store import CameraFingerprint, load_fingerprint, load_store, save_fingerprint


def make_fp(name="C01", shape=(16, 20), methods=("pce", "mahalanobis"), seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"k": rng.normal(size=shape).astype(np.float32)}
    if "mahalanobis" in methods:
        arrays["mean_i0"] = rng.uniform(0, 255, shape).astype(np.float32)
        arrays["mean_prnu"] = rng.normal(size=shape).astype(np.float32)
    return CameraFingerprint(camera=name, methods=methods, arrays=arrays, clips={m: shape for m in methods}, source_shape=shape,
                             params={"sigma_fingerprint": 3.0, "levels": 4, "wavelet": "db4", "refs": 15},
                             references=[{"path": "a.jpg", "sha256": "00" * 32}], software={"camid_gpu": "x"})


def test_round_trip_and_determinism(tmp_path):
    fp = make_fp()
    path = save_fingerprint(fp, tmp_path / "a")
    save_fingerprint(fp, tmp_path / "b")
    for ext in ("npz", "json"):
        assert (tmp_path / "a" / f"C01.{ext}").read_bytes() == (tmp_path / "b" / f"C01.{ext}").read_bytes()
    back = load_fingerprint(path)
    assert back.camera == "C01" and back.methods == ("pce", "mahalanobis")
    assert back.clips == {"pce": (16, 20), "mahalanobis": (16, 20)} and back.orientation == "landscape"
    for name in fp.arrays:
        np.testing.assert_array_equal(back.arrays[name], fp.arrays[name])
    meta = json.loads((tmp_path / "a" / "C01.json").read_text())
    assert meta["format"] == "camid-fingerprint" and meta["version"] == 2
    assert meta["references"][0]["sha256"] == "00" * 32


def test_parameter_mismatch_is_refused_by_name(tmp_path):
    path = save_fingerprint(make_fp(), tmp_path)
    load_fingerprint(path, expect={"sigma_fingerprint": 3.0, "pce_clip": (16, 20)})
    with pytest.raises(FingerprintMismatchError, match=r"sigma_fingerprint: stored 3.0, requested 2.0.*pce_clip"):
        load_fingerprint(path, expect={"sigma_fingerprint": 2.0, "pce_clip": (10, 10)})


def test_version_and_hash_checks(tmp_path):
    path = save_fingerprint(make_fp(), tmp_path)
    meta = json.loads((tmp_path / "C01.json").read_text())
    meta["version"] = 99
    (tmp_path / "C01.json").write_text(json.dumps(meta))
    with pytest.raises(FingerprintMismatchError, match="format version 99"):
        load_fingerprint(path)
    path = save_fingerprint(make_fp(), tmp_path)
    with open(tmp_path / "C01.npz", "r+b") as handle:
        handle.seek(60)
        handle.write(b"\x00\x01")
    with pytest.raises(FingerprintError, match="SHA-256 differs"):
        load_fingerprint(path)


def test_store_checks(tmp_path):
    save_fingerprint(make_fp("C02"), tmp_path)
    save_fingerprint(make_fp("C01", methods=("pce",)), tmp_path)
    assert [fp.camera for fp in load_store(tmp_path, unverified=True)] == ["C01", "C02"]
    with pytest.raises(FingerprintError, match="has no 'mahalanobis' method"):
        load_store(tmp_path, methods=("mahalanobis",), unverified=True)
    save_fingerprint(make_fp("C03", shape=(8, 8)), tmp_path)
    with pytest.raises(FingerprintMismatchError, match="'C01' .16x20 clip. and 'C03' .8x8 clip. have different geometries"):
        load_store(tmp_path, unverified=True)
    with pytest.raises(FingerprintError, match="does not exist"):
        load_store(tmp_path / "nope")
    with pytest.raises(ValueError, match="camera name"):
        save_fingerprint(make_fp("../evil"), tmp_path)


def make_full_frame_fp(name, sensor, maha_clip=(8, 8), seed=0):
    """A fingerprint with the default geometries: PCE on the whole ``sensor`` frame, Mahalanobis on a clip."""
    rng = np.random.default_rng(seed)
    arrays = {"k": rng.normal(size=sensor).astype(np.float32),
              "mean_i0": rng.uniform(0, 255, maha_clip).astype(np.float32),
              "mean_prnu": rng.normal(size=maha_clip).astype(np.float32)}
    return CameraFingerprint(camera=name, methods=("pce", "mahalanobis"), arrays=arrays,
                             clips={"pce": None, "mahalanobis": maha_clip}, source_shape=sensor,
                             params={"sigma_fingerprint": 3.0, "levels": 4, "wavelet": "db4", "refs": 10})


def test_mixed_geometries_round_trip(tmp_path):
    """One store, three sensor sizes (one portrait): every fingerprint keeps its own sensor size and geometry."""
    sensors = {"A1": (24, 32), "A2": (24, 32), "B1": (40, 30), "C1": (20, 36)}
    for i, (name, sensor) in enumerate(sensors.items()):
        save_fingerprint(make_full_frame_fp(name, sensor, seed=i), tmp_path)
    store = load_store(tmp_path, methods=("pce", "mahalanobis"), unverified=True)
    assert [fp.camera for fp in store] == ["A1", "A2", "B1", "C1"]
    for fp in store:
        assert fp.source_shape == sensors[fp.camera] and fp.shape_of("pce") == sensors[fp.camera]
        assert fp.clip_of("pce") is None and fp.clip_of("mahalanobis") == (8, 8) and fp.shape_of("mahalanobis") == (8, 8)
    assert store[2].orientation == "portrait"
    meta = json.loads((tmp_path / "B1.json").read_text())
    assert meta["geometry"] == {"pce": {"clip": None, "shape": [40, 30]}, "mahalanobis": {"clip": [8, 8], "shape": [8, 8]}}
    assert meta["source_shape"] == [40, 30]
    with pytest.raises(ValueError, match="has geometry"):  # arrays that contradict the geometry are not written
        bad = make_full_frame_fp("D1", (24, 32))
        bad.arrays["k"] = bad.arrays["k"][:10]
        save_fingerprint(bad, tmp_path / "bad")


def test_version_1_store_loads_with_one_clip_for_both_methods(tmp_path):
    """A store written before the per-method geometry (format version 1: one "clip") still loads."""
    path = save_fingerprint(make_fp(), tmp_path)
    meta = json.loads((tmp_path / "C01.json").read_text())
    del meta["geometry"]
    meta.update(version=1, clip=[16, 20])
    (tmp_path / "C01.json").write_text(json.dumps(meta))
    fp = load_fingerprint(path)
    assert fp.clips == {"pce": (16, 20), "mahalanobis": (16, 20)} and fp.shape_of("pce") == (16, 20)
    meta.pop("clip")  # a damaged version-1 file fails by name, not with a KeyError
    (tmp_path / "C01.json").write_text(json.dumps(meta))
    with pytest.raises(FingerprintError, match="C01.json: fingerprint metadata field 'clip' is missing"):
        load_fingerprint(path)


def test_two_cameras_with_identical_arrays_are_refused(tmp_path):
    """A reference folder copied under a second name gives a byte-identical fingerprint (the build is
    deterministic): two names for one sensor pattern, and a decision for whichever sorts first. Refused."""
    save_fingerprint(make_fp("C01"), tmp_path)
    save_fingerprint(make_fp("C02", seed=1), tmp_path)
    load_store(tmp_path, unverified=True)
    save_fingerprint(make_fp("C03"), tmp_path)  # C01's arrays under another name
    with pytest.raises(FingerprintError, match=r"'C01' and 'C03' have byte-identical fingerprint arrays"):
        load_store(tmp_path, unverified=True)

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
    return CameraFingerprint(camera=name, methods=methods, arrays=arrays, clip=shape, source_shape=(30, 40),
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
    assert back.clip == (16, 20) and back.orientation == "landscape"
    for name in fp.arrays:
        np.testing.assert_array_equal(back.arrays[name], fp.arrays[name])
    meta = json.loads((tmp_path / "a" / "C01.json").read_text())
    assert meta["format"] == "camid-fingerprint" and meta["version"] == 1
    assert meta["references"][0]["sha256"] == "00" * 32


def test_parameter_mismatch_is_refused_by_name(tmp_path):
    path = save_fingerprint(make_fp(), tmp_path)
    load_fingerprint(path, expect={"sigma_fingerprint": 3.0, "clip": (16, 20)})
    with pytest.raises(FingerprintMismatchError, match=r"sigma_fingerprint: stored 3.0, requested 2.0.*clip"):
        load_fingerprint(path, expect={"sigma_fingerprint": 2.0, "clip": (10, 10)})


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
    assert [fp.camera for fp in load_store(tmp_path)] == ["C01", "C02"]
    with pytest.raises(FingerprintError, match="has no 'mahalanobis' method"):
        load_store(tmp_path, methods=("mahalanobis",))
    save_fingerprint(make_fp("C03", shape=(8, 8)), tmp_path)
    with pytest.raises(FingerprintMismatchError, match="different shapes"):
        load_store(tmp_path)
    with pytest.raises(FingerprintError, match="does not exist"):
        load_store(tmp_path / "nope")
    with pytest.raises(ValueError, match="camera name"):
        save_fingerprint(make_fp("../evil"), tmp_path)

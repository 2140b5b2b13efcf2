"""Fingerprint stores for the library tests: a store's manifest written by the project's own writer, and stores of
random decoy fingerprints (cameras that took none of the images)."""
from __future__ import annotations

import os

import numpy as np

from camid_gpu.engine import run_folder
from camid_gpu.provenance import utc_now
from camid_gpu.store import CameraFingerprint, load_store, save_fingerprint


def write_store_manifest(folder: str) -> None:
    """The store's manifest, written by the project's own writer (as ``camid fingerprint`` does) over the
    fingerprint files the folder holds now: stores are checked against it when loaded."""
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.endswith((".json", ".npz")) and f != "manifest.json")
    run_folder.write_manifest(folder, "fingerprint", None, {}, "numpy", utc_now(), [], None, files,
                              kernels="not used")


def decoy_store(like: str, out: str, count: int, seed: int = 0, prefix: str = "D") -> str:
    """A store of its own (with its manifest) of random fingerprints of ``like``'s sensor size: cameras that
    took none of the images."""
    real = load_store(like)[0]
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    for n in range(count):
        k = (rng.standard_normal(real.k.shape) * 0.01).astype(np.float32)
        save_fingerprint(CameraFingerprint(camera=f"{prefix}{n:03d}", methods=("pce",), arrays={"k": k},
                                           clips={"pce": None}, source_shape=real.source_shape,
                                           params=dict(real.params), references=real.references), out)
    write_store_manifest(out)
    return out

"""The fingerprint store as the report reads it: every camera's metadata at once, its arrays only when a figure
needs them, one camera's at a time.

``camid report`` draws per camera (the I0 figures, the correlation surfaces) and lists every camera; loading a
store whole held every full-frame fingerprint at once (40 MB per 10 MP camera: a library-sized store would not
fit). The store is checked against its manifest here (:func:`camid_gpu.store.verify_store`) and each camera's
arrays by :func:`camid_gpu.store.load_fingerprint` when they are read (hash, shapes, values).
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from camid_gpu._shared.files import read_regular
from camid_gpu.errors import FingerprintError
from camid_gpu.store import FORMAT, CameraFingerprint, FingerprintStore, load_fingerprint, verify_store

#: the one camera whose arrays are held (path, fingerprint): a pass draws one camera after another
_held: list[tuple[str, CameraFingerprint]] = []


class StoredFingerprint:
    """One camera of a store: ``camera``, ``methods``, ``references`` and ``arrays_sha256`` from its metadata;
    ``k``, ``mean_i0`` and ``mean_prnu`` read (and checked) on use."""

    def __init__(self, json_path: str, meta: dict[str, Any]):
        self.path = json_path
        self.camera = str(meta["camera"])
        self.methods = tuple(str(m) for m in meta["methods"])
        self.references = [r for r in meta.get("references") or [] if isinstance(r, dict)]
        self.arrays_sha256 = str(meta.get("arrays_sha256"))

    def load(self) -> CameraFingerprint:
        """The whole fingerprint, checked; the last one read is held, so one camera's figures read it once."""
        if _held and _held[0][0] == self.path:
            return _held[0][1]
        _held.clear()  # the previous camera's arrays go before this one's are read
        fp = load_fingerprint(self.path)
        _held.append((self.path, fp))
        return fp

    @property
    def k(self) -> np.ndarray:
        return self.load().k

    @property
    def mean_i0(self) -> np.ndarray:
        return self.load().mean_i0

    @property
    def mean_prnu(self) -> np.ndarray:
        return self.load().mean_prnu


def release() -> None:
    """Drop the camera held (at the end of a report)."""
    _held.clear()


def open_store(directory: str) -> FingerprintStore:
    """The cameras of the store in ``directory`` (sorted by name), their files checked against the store's manifest
    (a store with none is read, as :func:`camid_gpu.store.load_store` with ``unverified``); raises
    :class:`FingerprintError` naming the file whose metadata cannot be used."""
    paths = sorted(os.path.join(directory, f) for f in os.listdir(directory)
                   if f.endswith(".json") and f != "manifest.json")
    cameras = []
    for path in paths:
        try:
            meta = json.loads(read_regular(path).decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise FingerprintError(f"{path}: cannot read fingerprint metadata ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("camera"), str) \
                or not isinstance(meta.get("methods"), list):
            raise FingerprintError(f"{path}: not a camid fingerprint (format, camera or methods missing)")
        cameras.append(StoredFingerprint(path, meta))
    if not cameras:
        raise FingerprintError(f"{directory}: no fingerprints (*.json) found")
    store = FingerprintStore(sorted(cameras, key=lambda fp: fp.camera))
    store.custody = verify_store(directory, unverified=True)
    return store

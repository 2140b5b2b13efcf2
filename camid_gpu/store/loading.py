"""Loading a fingerprint store: every fingerprint file checked on its own
(:func:`~camid_gpu.store.fingerprint.load_fingerprint`), then the store against its manifest
(:func:`verify_store`): every file has the SHA-256 the manifest recorded, none is missing or added. A store with
no manifest is refused unless the caller says it is used unverified (``--unverified-store``), and
``load_store(...).custody`` says which. Several stores searched together: :func:`load_stores`.
"""
from __future__ import annotations

import os
from typing import Any

from camid_gpu._shared import custody
from camid_gpu.errors import FingerprintError
from camid_gpu.store.fingerprint import _ARRAYS, CameraFingerprint, check_geometry, load_fingerprint


class FingerprintStore(list):
    """The fingerprints of a store (a list, sorted by camera name) and ``custody``: what its files were checked
    against (:func:`verify_store`), for the run to record."""

    custody: dict[str, Any]


#: what a run records when the store had no manifest and the caller said so (``--unverified-store``)
UNVERIFIED = "no manifest: used unverified (--unverified-store)"


def verify_store(directory: str | os.PathLike, unverified: bool = False,
                 known: dict[str, str] | None = None) -> dict[str, Any]:
    """Check a store's fingerprint files against the manifest that lists them, where the store lies now.

    The manifest is ``DIR/manifest.json`` (``camid fingerprint``) or that of the run folder the store lies in
    (``camid evaluate``'s ``RUN/fingerprints``, ``camid cluster``'s ``RUN/fingerprints/<group>``). Every
    ``.json``/``.npz`` in the folder must be listed with its SHA-256, every listed one present, and
    ``manifest.sha256`` beside the manifest (when there) must agree with it; anything else raises
    :class:`FingerprintError` naming each file. A store with no manifest is refused unless ``unverified``.
    ``known``: file name -> SHA-256 already computed from the bytes just read. Returns what was checked:
    ``{"verified": bool, "manifest": path or None, "manifest_sha256": hex or None, "files": n, "note": text}``.
    """
    directory = os.path.abspath(os.fspath(directory))
    try:
        manifest = custody.store_manifest(directory)
    except ValueError as exc:
        raise FingerprintError(f"{directory}: the fingerprint store's manifest cannot be used ({exc})") from None
    if manifest is None:
        if unverified:
            return {"verified": False, "manifest": None, "manifest_sha256": None, "files": 0, "note": UNVERIFIED}
        raise FingerprintError(f"{directory}: the fingerprint store has no manifest.json (and lies in no run folder "
                               f"whose manifest lists it): nothing to check its files against, so a changed or "
                               f"swapped fingerprint could not be told. Use a store written by camid fingerprint, or "
                               f"pass --unverified-store to use it anyway (the run records that it was unverified)")
    names = sorted(f for f in os.listdir(directory) if f.endswith((".json", ".npz")) and f != custody.MANIFEST_NAME)
    problems = custody.folder_differences(directory, manifest, names, known)
    if manifest.checksum not in ("agrees", "absent"):
        problems.insert(0, manifest.checksum)
    if problems:
        raise FingerprintError(f"{directory}: the fingerprint store does not match its manifest {manifest.path}: "
                               + "; ".join(problems) + f". It was changed after it was written: camid verify "
                               f"{manifest.folder} lists every difference; rebuild the store or use the original")
    return {"verified": True, "manifest": manifest.path, "manifest_sha256": manifest.sha256, "files": len(names),
            "note": f"checked against {manifest.path}"}


def load_store(directory: str | os.PathLike, expect: dict[str, Any] | None = None,
               methods: tuple[str, ...] = (), *, unverified: bool = False) -> FingerprintStore:
    """Every fingerprint in ``directory`` (sorted by camera name), of any sensor sizes and orientations, each
    file checked on its own (:func:`load_fingerprint`) and then the store against its manifest
    (:func:`verify_store`; ``unverified``: a store without a manifest is used, and ``custody`` says so).

    ``methods``: methods every fingerprint must have. Each method must have one clipping geometry across
    the store (a clip, or the full frame for all), so that a run has one geometry per method.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FingerprintError(f"{directory}: fingerprint folder does not exist")
    paths = sorted(os.path.join(directory, f) for f in os.listdir(directory)
                   if f.endswith(".json") and f != "manifest.json")  # a run manifest may sit beside them
    store = [load_fingerprint(p, expect) for p in paths]
    if not store:
        raise FingerprintError(f"{directory}: no fingerprints (*.json) found")
    seen: dict[str, str] = {}
    same_arrays: dict[str, str] = {}
    for fp, path in zip(store, paths):
        key = fp.camera.casefold()  # Cam1 and cam1 are one name on case-insensitive disks and to a reader
        if key in seen:
            raise FingerprintError(f"{directory}: camera name {fp.camera!r} appears twice ({seen[key]} and {path}); "
                                   f"camera names must be unique")
        seen[key] = path
        # one camera's arrays under two names: the decision between them would be a tie broken by name order
        if fp.arrays_sha256 in same_arrays:
            raise FingerprintError(f"{directory}: cameras {same_arrays[fp.arrays_sha256]!r} and {fp.camera!r} have "
                                   f"byte-identical fingerprint arrays (one camera under two names, or a copied "
                                   f"file); a store holds each camera once")
        same_arrays[fp.arrays_sha256] = fp.camera
    for fp in store:
        for method in methods:
            fp._array(method, _ARRAYS[method][0])
    check_geometry(store, directory)
    result = FingerprintStore(sorted(store, key=lambda fp: fp.camera))
    result.custody = verify_store(directory, unverified, {f"{fp.camera}.npz": fp.arrays_sha256 for fp in store})
    return result


def load_stores(directories: str | os.PathLike | list[str], expect: dict[str, Any] | None = None,
                methods: tuple[str, ...] = (), *, unverified: bool = False) -> FingerprintStore:
    """The fingerprints of one store (:func:`load_store`) or of several at once (``camid identify FP --store
    FP2``): each store checked by :func:`load_store` (against its own manifest), then, across them, camera names
    unique (case-insensitively), no arrays twice and one geometry per method. Sorted by camera name; ``custody``
    is verified only when every store's is, and lists each store's."""
    if isinstance(directories, (str, os.PathLike)):
        return load_store(directories, expect, methods, unverified=unverified)
    owner: dict[str, str] = {}
    store: list[CameraFingerprint] = []
    checks: list[dict[str, Any]] = []
    for directory in directories:
        loaded = load_store(directory, expect, methods, unverified=unverified)
        checks.append(loaded.custody)
        for fp in loaded:
            for key in (fp.camera.casefold(), fp.arrays_sha256):
                if key in owner:
                    raise FingerprintError(f"{directory}: camera {fp.camera!r} (or its byte-identical arrays) is also "
                                           f"in {owner[key]}; stores searched together hold each camera once")
                owner[key] = os.fspath(directory)
            store.append(fp)
    check_geometry(store, ", ".join(map(os.fspath, directories)))
    result = FingerprintStore(sorted(store, key=lambda fp: fp.camera))
    result.custody = {"verified": all(c["verified"] for c in checks), "stores": checks,
                      "note": "; ".join(f"{os.fspath(d)}: {c['note']}" for d, c in zip(directories, checks))}
    return result

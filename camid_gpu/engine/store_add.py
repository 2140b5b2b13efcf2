"""``camid fingerprint REFS -o STORE --add``: add cameras to an existing fingerprint store (issue 18, item 11).

The store's manifest must verify (every fingerprint and reference unchanged since it was written) and its
fingerprints must have the parameters and geometries of the new ones (one store, one computation). A camera
already in the store is refused unless ``--overwrite`` (then it is rebuilt). The new manifest lists the kept
cameras' references and fingerprint files beside the new ones, and records the SHA-256 of the manifest it
replaces, so the custody chain runs through every addition.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from camid_gpu.config import Params
from camid_gpu.errors import CamidError
from camid_gpu.provenance import MANIFEST_NAME, verify_manifest
from camid_gpu.store import load_store


@dataclass
class Kept:
    """What an addition keeps of the store: cameras, their manifest input entries and fingerprint files."""

    cameras: list[str] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    previous_manifest_sha256: str | None = None

    #: pixel hash -> (camera, path) of the kept cameras' references (recorded by fingerprints built since)
    pixels: dict[str, tuple[str, str]] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"cameras_kept": self.cameras, "previous_manifest_sha256": self.previous_manifest_sha256}


def kept_cameras(out_dir: str, cameras: Sequence[str], methods: Sequence[str], params: Params,
                 overwrite: bool) -> Kept:
    """Check that ``cameras`` may be added to the store in ``out_dir`` and return what stays of it (nothing
    when the folder holds no fingerprint yet)."""
    has_any = os.path.isdir(out_dir) and any(f.endswith(".json") and f != MANIFEST_NAME for f in os.listdir(out_dir))
    if not has_any:
        return Kept()
    manifest = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.isfile(manifest):
        raise CamidError(f"{out_dir}: --add needs the store's {MANIFEST_NAME} (the record of how its fingerprints "
                         f"were built); this folder has fingerprints without one")
    check = verify_manifest(manifest)
    if not check["ok"]:
        bad = [f"{e['path']} ({what})" for what in ("changed", "missing") for e in check[what]] + check["problems"]
        raise CamidError(f"{out_dir}: the store's manifest does not verify ({'; '.join(map(str, bad[:3]))}); "
                         f"cameras are added only to a store that is unchanged (camid verify {manifest})")
    store = load_store(out_dir)
    _check_same_computation(out_dir, store, methods, params)
    new = {c.casefold() for c in cameras}
    clash = sorted(fp.camera for fp in store if fp.camera.casefold() in new)
    if clash and not overwrite:
        raise CamidError(f"{out_dir}: camera(s) {', '.join(clash)} already in the store; pass --overwrite with "
                         f"--add to rebuild them, or rename their folders")
    keep = [fp for fp in store if fp.camera.casefold() not in new]
    refs = {os.path.abspath(r["abspath"]) for fp in keep for r in fp.references if isinstance(r.get("abspath"), str)}
    with open(manifest, encoding="utf-8") as handle:
        recorded = json.load(handle)
    return Kept(cameras=[fp.camera for fp in keep],
                inputs=[e for e in recorded.get("inputs", []) if isinstance(e, dict) and e.get("abspath") in refs],
                outputs=[os.path.join(out_dir, fp.camera + suffix) for fp in keep for suffix in (".json", ".npz")],
                previous_manifest_sha256=check["manifest_sha256"],
                pixels={r["pixels_sha256"]: (fp.camera, r.get("path")) for fp in keep for r in fp.references
                        if isinstance(r.get("pixels_sha256"), str)})


def _check_same_computation(out_dir: str, store: list, methods: Sequence[str], params: Params) -> None:
    """The store's fingerprints must have this run's methods, fingerprint parameters and geometries."""
    wanted = params.fingerprint_params()
    for fp in store:
        differ = sorted(k for k in wanted if k in fp.params and fp.params[k] != wanted[k])
        if set(fp.methods) != set(methods):
            differ.append(f"methods {'+'.join(fp.methods)} (this run: {'+'.join(methods)})")
        for method in methods:
            have = fp.clip_of(method) if method in fp.methods else None
            if method in fp.methods and (tuple(have) if have else None) != params.clip_of(method):
                differ.append(f"{method} geometry {fp.clip_of(method)} (this run: {params.clip_of(method)})")
        if differ:
            raise CamidError(f"{out_dir}: camera {fp.camera!r} of the store was built with other parameters "
                             f"({', '.join(map(str, differ))}); --add builds with the store's: pass the same "
                             f"--method, clips and sigmas, or build a new store")

"""Run manifests: every input, fingerprint, parameter, version and output of a run, with SHA-256s.

``RUN_DIR/manifest.json`` (format ``camid-manifest`` version 1) is written at the end of every
``camid fingerprint``, ``identify`` and ``evaluate`` run. ``camid verify MANIFEST`` re-hashes every
input, fingerprint and output file listed and reports each one that changed or disappeared.

EXIF facts (make, model, date, orientation) are recorded for the examiner; camid never uses them
for a decision.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from typing import Any, Iterable, Sequence

from camid_gpu._shared.jsonio import sha256_file, write_json
from camid_gpu.store import software_versions

FORMAT = "camid-manifest"
VERSION = 1
MANIFEST_NAME = "manifest.json"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """Software and library versions, including the optional ones that are loaded."""
    info = dict(software_versions())
    for name in ("torch", "pytorch_wavelets", "cupy", "dask", "tifffile", "PIL"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "loaded")
    info["platform"] = platform.platform()
    return info


def file_entry(path: str, role: str) -> dict[str, Any]:
    """Path, absolute path, size and SHA-256 of a file (``sha256`` None when it cannot be read)."""
    entry: dict[str, Any] = {"path": path, "abspath": os.path.abspath(path), "role": role}
    try:
        entry["size"] = os.path.getsize(path)
        entry["sha256"] = sha256_file(path)
    except OSError as exc:
        entry["size"], entry["sha256"] = None, None
        entry["unreadable"] = exc.strerror or str(exc)
    return entry


def input_entries(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Manifest entries of the disputed images from result records (hashes taken at analysis time)."""
    out = []
    for r in records:
        if r.get("error"):
            e = file_entry(r["path"], "disputed")
            e["error"] = r["error"]
        else:
            e = {"path": r["path"], "abspath": os.path.abspath(r["path"]), "role": "disputed",
                 "size": r["file_size"], "sha256": r["sha256"], "pixels": r["size"], "format": r["format"],
                 "exif": r.get("exif", {})}
        out.append(e)
    return out


def fingerprint_entries(fp_dir: str) -> list[dict[str, Any]]:
    """Entries of every fingerprint file (metadata and arrays), with their reference files."""
    out = []
    for name in sorted(os.listdir(fp_dir)):
        if name.endswith((".json", ".npz")) and name != MANIFEST_NAME:
            e = file_entry(os.path.join(fp_dir, name), "fingerprint")
            if name.endswith(".json"):
                with open(os.path.join(fp_dir, name), encoding="utf-8") as handle:
                    meta = json.load(handle)
                e["camera"] = meta.get("camera")
                e["references"] = meta.get("references", [])
            out.append(e)
    return out


def write_manifest(run_dir: str, command: str, argv: Sequence[str] | None, params: dict[str, Any],
                   backend: str, started: str, inputs: list[dict[str, Any]], fingerprints_dir: str | None,
                   outputs: Sequence[str], extra: dict[str, Any] | None = None, *, kernels: str) -> str:
    """Write ``run_dir/manifest.json``; outputs are hashed now (after they are complete).

    ``kernels``: what the fused CUDA kernels did in the run, "verified" (self-checked against their
    twins on the device), "fallback (reason)" (the twins were used) or "not used"
    (``camid_gpu._cuda.loader.kernels_status``).
    """
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "command": command,
        "argv": list(argv) if argv is not None else None,
        "started": started,
        "finished": utc_now(),
        "software": environment(),
        "backend": backend,
        "kernels": kernels,
        "params": params,
        "fingerprints_dir": os.path.abspath(fingerprints_dir) if fingerprints_dir else None,
        "fingerprints": fingerprint_entries(fingerprints_dir) if fingerprints_dir else [],
        "inputs": inputs,
        "outputs": [file_entry(p, "output") for p in outputs],
    }
    if extra:
        manifest.update(extra)
    path = os.path.join(run_dir, MANIFEST_NAME)
    return write_json(path, manifest)


def verify_manifest(path: str) -> dict[str, Any]:
    """Re-hash every file listed in a manifest.

    Returns ``{"checked": n, "changed": [...], "missing": [...], "ok": bool}``; each problem names
    the file, its role and the recorded and current SHA-256.
    """
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a camid manifest (format {manifest.get('format')!r})")
    entries = list(manifest.get("inputs", [])) + list(manifest.get("outputs", []))
    for fp in manifest.get("fingerprints", []):
        entries.append(fp)
        entries.extend(dict(ref, role="reference") for ref in fp.get("references", []))
    changed, missing, checked = [], [], 0
    for entry in entries:
        recorded = entry.get("sha256")
        if recorded is None:
            continue
        where = entry.get("abspath") or entry["path"]
        checked += 1
        if not os.path.exists(where):
            missing.append({"path": entry["path"], "role": entry.get("role"), "recorded": recorded})
            continue
        try:
            current = sha256_file(where)
        except OSError as exc:
            missing.append({"path": entry["path"], "role": entry.get("role"), "recorded": recorded,
                            "reason": exc.strerror or str(exc)})
            continue
        if current != recorded:
            changed.append({"path": entry["path"], "role": entry.get("role"), "recorded": recorded,
                            "current": current})
    return {"manifest": path, "checked": checked, "changed": changed, "missing": missing,
            "ok": not changed and not missing}

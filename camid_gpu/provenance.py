"""Run manifests: every input, fingerprint, parameter, version and output of a run, with SHA-256s.

``RUN_DIR/manifest.json`` (format ``camid-manifest`` version 1) is written at the end of every
``camid fingerprint``, ``identify``, ``evaluate`` and ``residual`` run (through
``camid_gpu.engine.run_folder.write_manifest``, which also writes its own SHA-256 to ``manifest.sha256``).
``camid verify MANIFEST`` re-hashes every input, fingerprint and output file listed and reports each one
that changed or disappeared; a manifest with nothing to check, or an entry without a hash and without a
recorded reason, fails; ``--expect-sha256`` also checks the manifest's own hash.

EXIF facts (make, model, date, orientation) are recorded for the examiner; camid never uses them
for a decision.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from typing import Any, Iterable, Sequence

from camid_gpu._shared.files import open_regular
from camid_gpu._shared.jsonio import sha256_file, write_json
from camid_gpu.pipeline.records import ImageRecord
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


def input_entries(records: Iterable[ImageRecord]) -> list[dict[str, Any]]:
    """Manifest entries of the disputed images from result records (hashes taken at analysis time)."""
    out = []
    for r in records:
        error = r.get("error")
        if error:
            e = file_entry(r["path"], "disputed")
            e["error"] = error
        else:
            e = {"path": r["path"], "abspath": os.path.abspath(r["path"]), "role": "disputed",
                 "size": r["file_size"], "sha256": r["sha256"], "pixels": r["size"], "format": r["format"],
                 "exif": r["exif"]}
        out.append(e)
    return out


def fingerprint_entries(fp_dir: str) -> list[dict[str, Any]]:
    """Entries of every fingerprint file (metadata and arrays), with their reference files (of each of several
    stores searched together)."""
    if not isinstance(fp_dir, (str, os.PathLike)):
        return [e for d in fp_dir for e in fingerprint_entries(d)]
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
        "fingerprints_dir": (os.path.abspath(fingerprints_dir) if isinstance(fingerprints_dir, (str, os.PathLike))
                             else [os.path.abspath(d) for d in fingerprints_dir] if fingerprints_dir else None),
        "fingerprints": fingerprint_entries(fingerprints_dir) if fingerprints_dir else [],
        "inputs": inputs,
        "outputs": [file_entry(p, "output") for p in outputs],
    }
    if extra:
        manifest.update(extra)
    path = os.path.join(run_dir, MANIFEST_NAME)
    return write_json(path, manifest)


def _manifest_problems(manifest: Any) -> list[str]:
    """What makes a manifest unusable for verification: missing or mistyped fields, entries without a hash."""
    if not isinstance(manifest, dict):
        return [f"the document is a {type(manifest).__name__}, not an object"]
    problems = []
    for key in ("inputs", "outputs", "fingerprints"):
        if key in manifest and not isinstance(manifest[key], list):
            problems.append(f"{key!r} is a {type(manifest[key]).__name__}, not a list")
    for key in ("inputs", "outputs"):
        if key not in manifest:
            problems.append(f"{key!r} is missing")
    return problems


def verify_manifest(path: str, expect_sha256: str | None = None) -> dict[str, Any]:
    """Re-hash every file listed in a manifest.

    Returns ``{"checked": n, "changed": [...], "missing": [...], "unhashed": [...], "problems": [...],
    "manifest_sha256": hex, "ok": bool}``; each file problem names the file, its role and the recorded and
    current SHA-256. Not ``ok`` when anything changed or is missing, when nothing could be checked (empty
    lists), when an entry has no recorded hash and no recorded reason (``unhashed``), or when the manifest's
    own SHA-256 differs from ``expect_sha256``. Raises ValueError on a file that is not a camid manifest.
    """
    try:
        with open_regular(path) as handle:
            raw = handle.read()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    own = hashlib.sha256(raw).hexdigest()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not a camid manifest (not JSON: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a camid manifest (format "
                         f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    problems = _manifest_problems(manifest)
    if expect_sha256 is not None and own != expect_sha256.strip().lower():
        problems.append(f"the manifest's own SHA-256 is {own}, expected {expect_sha256.strip().lower()} (the manifest "
                        f"was edited or is another run's)")
    entries: list[Any] = []
    for key in ("inputs", "outputs"):
        if isinstance(manifest.get(key), list):
            entries.extend(manifest[key])
    for fp in manifest.get("fingerprints") if isinstance(manifest.get("fingerprints"), list) else []:
        entries.append(fp)
        refs = fp.get("references") if isinstance(fp, dict) else None
        if isinstance(refs, list):
            entries.extend(dict(ref, role="reference") for ref in refs if isinstance(ref, dict))
    changed, missing, unhashed, checked = [], [], [], 0
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            problems.append(f"an entry is not an object with a 'path': {str(entry)[:80]!r}")
            continue
        recorded, role = entry.get("sha256"), str(entry.get("role"))
        if recorded is None:
            if not (entry.get("unreadable") or entry.get("error")):
                unhashed.append({"path": entry["path"], "role": role})
            continue  # recorded as unreadable at the time, with its reason: nothing to compare
        if not isinstance(recorded, str) or len(recorded) != 64 or recorded.strip("0123456789abcdefABCDEF"):
            problems.append(f"{entry['path']}: recorded SHA-256 {str(recorded)[:80]!r} is not a SHA-256")
            continue
        where = entry.get("abspath") if isinstance(entry.get("abspath"), str) else entry["path"]
        checked += 1
        if not os.path.lexists(where):
            missing.append({"path": entry["path"], "role": role, "recorded": recorded})
            continue
        try:
            current = sha256_file(where)
        except OSError as exc:
            missing.append({"path": entry["path"], "role": role, "recorded": recorded,
                            "reason": exc.strerror or str(exc)})
            continue
        if current != recorded:
            changed.append({"path": entry["path"], "role": role, "recorded": recorded, "current": current})
    if checked == 0:
        problems.append("no file with a recorded SHA-256 was listed: nothing could be verified")
    return {"manifest": path, "manifest_sha256": own, "checked": checked, "changed": changed, "missing": missing,
            "unhashed": unhashed, "problems": problems,
            "ok": not changed and not missing and not unhashed and not problems}

"""Run manifests: every input, fingerprint, parameter, version and output of a run, with SHA-256s.

``RUN_DIR/manifest.json`` (format ``camid-manifest`` version 2) is written at the end of every
``camid fingerprint``, ``identify``, ``evaluate``, ``residual`` and ``cluster`` run (through
``camid_gpu.engine.run_folder.write_manifest``, which also writes its own SHA-256 to ``manifest.sha256``).
Files inside the run folder are recorded by ``relpath`` (relative to the run folder, so a copied or moved
folder checks its own files), files outside it by ``abspath``; ``run_dir`` says where the run wrote it.
``camid verify MANIFEST`` re-hashes every input, fingerprint and output file listed where it lies now
(:mod:`camid_gpu._shared.custody`) and reports each one that changed or disappeared, and whether it was
checked in the run folder or at its recorded path; a manifest with nothing to check, an entry without a hash
and without a recorded reason, or a ``manifest.sha256`` beside it that disagrees, fails; ``--expect-sha256``
also checks the manifest's own hash. Version 1 manifests (absolute paths only) are still verified: paths under
the folder the run wrote (inferred from the outputs) are resolved under the manifest's folder now.

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

from camid_gpu._shared import custody
from camid_gpu._shared.jsonio import sha256_file, write_json
from camid_gpu.pipeline import casework
from camid_gpu.pipeline.records import ImageRecord
from camid_gpu.store import software_versions

FORMAT = custody.MANIFEST_FORMAT
#: 2: files inside the run folder by ``relpath``, ``run_dir`` recorded (1: absolute paths only)
VERSION = 2
MANIFEST_NAME = custody.MANIFEST_NAME


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """Software and library versions (of the installed distributions), including the optional ones loaded."""
    from camid_gpu._shared.versions import installed_version

    info = dict(software_versions())
    for name in ("torch", "pytorch_wavelets", "cupy", "dask", "tifffile", "PIL"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = installed_version(name) or "loaded"
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
    (``camid_gpu._cuda.loader.kernels_status``). Every file inside ``run_dir`` is recorded by its path
    relative to it (:func:`in_run_folder`), ``fingerprints_dir`` too when it lies inside.
    """
    home = os.path.abspath(run_dir)
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
        "run_dir": home,
        "fingerprints_dir": _folder_field(fingerprints_dir, home),
        "fingerprints": in_run_folder(fingerprint_entries(fingerprints_dir), home) if fingerprints_dir else [],
        "inputs": in_run_folder(inputs, home),
        "outputs": in_run_folder([file_entry(p, "output") for p in outputs], home),
    }
    if extra:
        manifest.update(extra)
    if casework.current() is not None:  # --case/--exhibit/--examiner/--note of the command running
        manifest["casework"] = casework.current()
    path = os.path.join(run_dir, MANIFEST_NAME)
    return write_json(path, manifest)


def _folder_field(folder: str | list[str] | None, home: str) -> str | list[str] | None:
    """A folder for the manifest: relative to the run folder when inside it (``fingerprints``), else absolute;
    a list for several stores searched together (``identify --store``)."""
    if not folder:
        return None
    if not isinstance(folder, (str, os.PathLike)):
        return [_folder_field(f, home) for f in folder]
    folder = os.path.abspath(folder)
    return os.path.relpath(folder, home) if custody.inside(folder, home) else folder


def in_run_folder(entries: list[dict[str, Any]], home: str) -> list[dict[str, Any]]:
    """Entries of files inside the run folder ``home`` get ``relpath`` (and ``path`` = it) instead of ``abspath``:
    a copied or moved run folder is then verified where it lies. Files outside it keep their absolute path."""
    out = []
    for entry in entries:
        where = entry.get("abspath")
        if isinstance(where, str) and custody.inside(os.path.normpath(where), home):
            entry = {k: v for k, v in entry.items() if k != "abspath"}
            entry["path"] = entry["relpath"] = os.path.relpath(where, home)
        out.append(entry)
    return out


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
    """Re-hash every file listed in a manifest, where the run folder lies now.

    Returns ``{"checked": n, "in_run": n, "external": n, "changed": [...], "missing": [...], "unhashed": [...],
    "problems": [...], "manifest_sha256": hex, "run_folder": folder now, "recorded_dir": folder written in,
    "checksum": what manifest.sha256 says, "ok": bool}``; each file problem names the file, its role, whether it
    was checked in the run folder (``in_run``) or at its recorded path, ``where`` it was looked for, and the
    recorded and current SHA-256. Not ``ok`` when anything changed or is missing, when nothing could be
    checked (empty lists), when an entry has no recorded hash and no recorded reason (``unhashed``), when
    ``manifest.sha256`` beside it disagrees, when the manifest's own SHA-256 differs from ``expect_sha256``, or
    when the run folder holds files the manifest does not list (``foreign``, relative paths:
    :func:`camid_gpu._shared.custody.foreign_files`). Raises ValueError on a file that is not a camid manifest.
    """
    manifest = custody.read_manifest(path)
    own = manifest.sha256
    problems = _manifest_problems(manifest.data)
    if manifest.checksum not in ("agrees", "absent"):
        problems.append(manifest.checksum)
    if expect_sha256 is not None and own != expect_sha256.strip().lower():
        problems.append(f"the manifest's own SHA-256 is {own}, expected {expect_sha256.strip().lower()} (the manifest "
                        f"was edited or is another run's)")
    changed, missing, unhashed, counts = [], [], [], {"in_run": 0, "external": 0}
    for entry in custody.file_entries(manifest.data):
        result = custody.check_entry(entry, manifest)
        status = result.pop("status")
        if status == "invalid":
            problems.append(result["reason"])
        elif status == "unhashed":
            unhashed.append(result)
        elif status != "noted":  # recorded as unreadable at the time, with its reason: nothing to compare
            counts["in_run" if result["in_run"] else "external"] += 1
            if status == "missing":
                missing.append(result)
            elif status == "changed":
                changed.append(result)
    checked = counts["in_run"] + counts["external"]
    if checked == 0:
        problems.append("no file with a recorded SHA-256 was listed: nothing could be verified")
    foreign = custody.foreign_files(manifest)  # in the run folder, not in its manifest: added after the run
    return {"manifest": path, "manifest_sha256": own, "checked": checked, **counts, "changed": changed,
            "missing": missing, "unhashed": unhashed, "problems": problems, "foreign": foreign,
            "run_folder": manifest.folder, "recorded_dir": manifest.recorded_dir,
            "version": manifest.data.get("version"), "checksum": manifest.checksum,
            "ok": not changed and not missing and not unhashed and not problems and not foreign}

"""Making and changing a library: ``init``, ``add`` (atomic), ``retire``, ``info``, ``verify``.

**Adding is atomic.** Under the writer's lock (``LIB/.camid.lock``, ``flock``; searches never take it) an add
loads every store first (:func:`camid_gpu.store.load_store`: every array checked against its hash), refuses the
whole add before writing anything when a name is taken by another fingerprint or one fingerprint would be there
under two names, then writes the arrays (content-addressed files, fsync'ed) and the screening rows (appended,
fsync'ed), and only then inserts every camera in one transaction that also updates the library's version. A
kill at any point leaves the catalogue as it was (files nothing points to, which the next add reuses or
overwrites and ``verify`` lists as harmless) or with every camera of the add. The same fingerprint added again
(same name, same arrays) is a no-op, recorded in the history.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu._shared import custody
from camid_gpu._shared.files import read_regular
from camid_gpu._version import __version__
from camid_gpu.engine import run_folder
from camid_gpu.errors import LibraryError
from camid_gpu.library import arrays as arr
from camid_gpu.library import catalogue as cat
from camid_gpu.library import integrity
from camid_gpu.provenance import utc_now
from camid_gpu.store import CameraFingerprint, check_camera_name, load_store

#: called with a stage name during an add ("arrays-written": the files are durable, the transaction not yet
#: begun); tests set it to kill the process there
ADD_HOOK: Callable[[str], None] | None = None


def init_library(library: str) -> dict[str, str]:
    """Make an empty library folder (refused when one is there already)."""
    if os.path.exists(cat.catalogue_path(library)):
        raise LibraryError(f"{library}: a library is already there")
    if os.path.isdir(library) and os.listdir(library):
        raise LibraryError(f"{library}: the folder is not empty; a library needs a folder of its own")
    os.makedirs(os.path.join(library, cat.ARRAYS_DIR), exist_ok=True)
    os.makedirs(os.path.join(library, cat.SCREEN_DIR), exist_ok=True)
    con = cat.connect(library, create=True)
    try:
        with cat.transaction(con):
            now = utc_now()
            cat.set_meta(con, created=now, camid_version=__version__, version=cat.content_version(con))
            cat.record_history(con, now, "init", None, {"camid_version": __version__})
    finally:
        con.close()
    return {"library": library, "created": now}


def writer_lock(library: str):
    """The writer's lock (``LIB/.camid.lock``, as a run folder's: ``flock``, refused at once when held): one add
    or retire at a time; searches never take it. A library that cannot be written here is refused by name."""
    if os.path.isfile(cat.catalogue_path(library)) and not cat.writable(library):
        raise LibraryError(f"{cat.catalogue_path(library)}: the library is read-only here (read-only media or no "
                           f"write permission): add and retire write to it; search, list, info, link and verify "
                           f"read it as it is")
    return run_folder.locked(library)


def store_folders(source: str) -> list[tuple[str, str]]:
    """(store folder, kind) of a source given to ``add``: a fingerprint store (``seized``), a cluster run folder
    (each of its ``fingerprints/<group>/`` stores) or one such group folder (``unknown``)."""
    if os.path.isfile(os.path.join(source, "clusters.json")):
        root = os.path.join(source, "fingerprints")
        groups = sorted(os.path.join(root, g) for g in os.listdir(root)) if os.path.isdir(root) else []
        if not groups:
            raise LibraryError(f"{source}: the cluster run has no cluster fingerprints")
        return [(g, "unknown") for g in groups]
    run = os.path.dirname(os.path.dirname(os.path.abspath(source)))
    if os.path.isfile(os.path.join(run, "clusters.json")):
        return [(source, "unknown")]
    return [(source, "seized")]


def _source_manifest(folder: str) -> tuple[bytes | None, str | None]:
    """The bytes and SHA-256 of the manifest that lists the store's files (the one :func:`load_store` checked
    it against): kept in the library, so that each camera's name is checked against it ever after."""
    found = custody.store_manifest(folder)
    if found is None:
        return None, None
    blob = read_regular(found.path)
    return blob, hashlib.sha256(blob).hexdigest()


def _planned(sources: Sequence[str], case: str | None, label: str | None) -> list[dict[str, Any]]:
    """Every fingerprint of the sources, loaded and checked, with the catalogue row it would get."""
    planned = []
    for source in sources:
        for folder, kind in store_folders(source):
            if kind == "unknown" and not case:
                raise LibraryError(f"{source}: cluster fingerprints are unknown cameras named by case and cluster; "
                                   f"give --case")
            store = load_store(folder, methods=("pce",))
            manifest_blob, manifest_sha = _source_manifest(folder)
            for fp in store:
                name = f"{case}.{fp.camera}" if kind == "unknown" else fp.camera
                check_camera_name(name)
                npz = os.path.join(folder, f"{fp.camera}.npz")
                meta_bytes = read_regular(os.path.join(folder, f"{fp.camera}.json"))
                planned.append({"fp": fp, "name": name, "kind": kind, "case_id": case, "label": label,
                                "source_store": os.path.abspath(folder), "source_manifest_sha256": manifest_sha,
                                "manifest_blob": manifest_blob,
                                "metadata_json": meta_bytes.decode("utf-8"),
                                "metadata_sha256": hashlib.sha256(meta_bytes).hexdigest(), "npz": npz})
    return planned


def _check_conflicts(planned: list[dict[str, Any]], existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fingerprints to add (the no-ops left out, each marked); refuses the whole add on any conflict."""
    by_name = {r["name"].casefold(): r for r in existing}
    by_sha = {r["arrays_sha256"]: r for r in existing}
    new, seen_names, seen_sha = [], {}, {}
    for p in planned:
        sha, key = p["fp"].arrays_sha256, p["name"].casefold()
        old = by_name.get(key)
        if old is not None and old["arrays_sha256"] == sha:
            p["noop"] = True
            p["retired"] = old["retired_utc"] and f"retired {old['retired_utc']}: {old['retired_reason']}"
            continue
        if old is not None:
            raise LibraryError(f"{p['source_store']}: camera name {p['name']!r} is taken in the library by another "
                               f"fingerprint (arrays {old['arrays_sha256'][:16]}..., added {old['added_utc']}); "
                               f"nothing was added: rename the camera")
        twin = by_sha.get(sha) or seen_sha.get(sha)
        if twin is not None:
            raise LibraryError(f"{p['source_store']}: the fingerprint of {p['name']!r} is already in the library as "
                               f"{twin['name']!r} (byte-identical arrays); nothing was added")
        if key in seen_names:
            raise LibraryError(f"camera name {p['name']!r} comes twice in this add ({seen_names[key]} and "
                               f"{p['source_store']}); nothing was added")
        seen_names[key], seen_sha[sha] = p["source_store"], p
        new.append(p)
    return new


def _check_params(meta: dict[str, str], planned: list[dict[str, Any]]) -> dict[str, str]:
    """The residual parameters every fingerprint shares (the first add fixes them); refuses others."""
    fixed = {k: meta[k] for k in ("levels", "wavelet") if k in meta}
    for p in planned:
        mine = {k: str(p["fp"].params.get(k)) for k in ("levels", "wavelet")}
        for k, v in mine.items():
            if fixed.setdefault(k, v) != v:
                raise LibraryError(f"{p['source_store']}: fingerprint {p['name']!r} was made with {k} {v}, the "
                                   f"library's fingerprints with {fixed[k]}; nothing was added")
    return fixed


def add_stores(library: str, sources: Sequence[str], case: str | None = None,
               label: str | None = None) -> dict[str, Any]:
    """``camid library add``: returns ``{"added": [names], "unchanged": [names], "version": hex}``."""
    if case is not None:
        check_camera_name(case)
    cat.connect(library).close()  # a library (migrated) before any store is read
    return add_entries(library, lambda: _planned(sources, case, label))


def add_entries(library: str, plan: Callable[[], list[dict[str, Any]]], durable: bool = True) -> dict[str, Any]:
    """Add the fingerprints ``plan()`` lists (under the writer's lock): each entry has ``fp`` (a loaded
    CameraFingerprint), ``blob`` (its ``.npz`` bytes) or ``npz`` (their file), and the catalogue's provenance
    fields. ``durable=False`` skips the fsync of each array file (bench/bench_library.py builds 10^5 decoys so;
    never a case library)."""
    with writer_lock(library):
        con = cat.connect(library)
        try:
            existing = integrity.checked_catalogue(con, library, _without_metadata).rows
            planned = plan()
            new = _check_conflicts(planned, existing)
            fixed = _check_params(cat.get_meta(con), new)
            _write_arrays(library, new, existing, durable)
            if ADD_HOOK is not None:
                ADD_HOOK("arrays-written")
            version = _commit(library, con, new, planned, fixed)
        finally:
            con.close()
    return {"added": [p["name"] for p in new], "unchanged": [p["name"] for p in planned if p.get("noop")],
            "retired": {p["name"]: p["retired"] for p in planned if p.get("noop") and p.get("retired")},
            "version": version}


def _without_metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "metadata_json"}


def _write_arrays(library: str, new: list[dict[str, Any]], existing: list[dict[str, Any]], durable: bool) -> None:
    """Content-addressed arrays and screening rows of ``new``, durable before the catalogue names them."""
    by_geometry: dict[str, list[dict[str, Any]]] = {}
    for p in new:
        fp: CameraFingerprint = p["fp"]
        blob = p["blob"] if "blob" in p else read_regular(p["npz"])
        if arr.store_blob(library, blob, durable) != fp.arrays_sha256:  # changed since load_store checked it
            raise LibraryError(f"{p.get('npz', p['name'])}: the arrays changed while being added; nothing was added")
        clip = fp.clip_of("pce")
        p["geometry"] = arr.geometry_name(*fp.source_shape, clip)
        p["screen"] = arr.screen_form(fp.k)
        by_geometry.setdefault(p["geometry"], []).append(p)
        if p.get("manifest_blob") is not None:  # named by its hash: the row's source_manifest_sha256
            integrity.keep_manifest(library, p["manifest_blob"], durable)
    for name, members in by_geometry.items():
        used = [r["screen_row"] for r in existing if r["screen_file"] == name]
        rows = arr.append_screen_rows(library, name, [p["screen"] for p in members], max(used, default=-1) + 1)
        for p, row in zip(members, rows):
            p["screen_row"] = row


def _commit(library: str, con, new: list[dict[str, Any]], planned: list[dict[str, Any]],
            fixed: dict[str, str]) -> str:
    now = utc_now()
    manifests = integrity.StoreManifests(library)
    with cat.transaction(con):
        for p in new:
            fp: CameraFingerprint = p["fp"]
            clip = fp.clip_of("pce")
            values = {"name": p["name"], "kind": p["kind"], "case_id": p["case_id"], "label": p["label"],
                      "source_store": p["source_store"], "source_manifest_sha256": p["source_manifest_sha256"],
                      "metadata_json": p["metadata_json"], "metadata_sha256": p["metadata_sha256"],
                      "arrays_sha256": fp.arrays_sha256, "rows": fp.source_shape[0], "cols": fp.source_shape[1],
                      "clip_rows": clip[0] if clip else None, "clip_cols": clip[1] if clip else None,
                      "screen_file": p["geometry"], "screen_row": p["screen_row"],
                      "screen_sha256": arr.row_sha256(p["screen"]), "added_utc": now, "camid_version": __version__,
                      "retired_utc": None, "retired_reason": None}
            problems, _ = integrity.row_problems(values, manifests)  # what every reader will check, checked now
            if problems:
                raise LibraryError(f"{p['source_store']}: {problems[0]}; nothing was added")
            con.execute(f"INSERT INTO cameras ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                        list(values.values()))
            cat.record_history(con, now, "add", p["name"], {"arrays_sha256": fp.arrays_sha256,
                                                            "source_store": p["source_store"]})
        for p in planned:
            if p.get("noop"):
                cat.record_history(con, now, "add-unchanged", p["name"], {"source_store": p["source_store"],
                                   "reason": "the same fingerprint is already in the library under this name"})
        version = cat.content_version(con)
        cat.set_meta(con, version=version, **fixed)
    return version


def retire_camera(library: str, camera: str, reason: str) -> str:
    """Retire ``camera`` (kept, with its history; no longer searched); returns the new version."""
    if not reason.strip():
        raise LibraryError("retire needs a reason (--reason TEXT)")
    with writer_lock(library):
        con = cat.connect(library)
        try:
            with cat.transaction(con):
                integrity.checked_catalogue(con, library, lambda r: None)
                row = con.execute("SELECT name, retired_utc FROM cameras WHERE name = ?", (camera,)).fetchone()
                if row is None:
                    raise LibraryError(f"{library}: no camera named {camera!r}")
                if row[1] is not None:
                    raise LibraryError(f"{library}: camera {row[0]!r} was retired already ({row[1]})")
                now = utc_now()
                con.execute("UPDATE cameras SET retired_utc = ?, retired_reason = ? WHERE name = ?",
                            (now, reason, camera))
                cat.record_history(con, now, "retire", row[0], {"reason": reason})
                version = cat.content_version(con)
                cat.set_meta(con, version=version)
        finally:
            con.close()
    return version


def library_info(library: str, expect_version: str | None = None) -> dict[str, Any]:
    """Cameras (all, retired included), sensor sizes, cases, size on disk, version and history; the catalogue
    checked first (:func:`integrity.checked_catalogue`)."""
    checked, events, schema = integrity.read_checked(library, expect_version)
    rows, meta = checked.rows, checked.meta
    active = [r for r in rows if r["retired_utc"] is None]
    sizes: dict[str, int] = {}
    for r in active:
        sizes[r["screen_file"]] = sizes.get(r["screen_file"], 0) + 1
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(library) for f in files)
    return {"library": library, "version": checked.version, "schema": schema, "created": meta.get("created"),
            "cameras": len(active), "retired": len(rows) - len(active), "geometries": dict(sorted(sizes.items())),
            "cases": sorted({r["case_id"] for r in active if r["case_id"]}), "disk_bytes": disk,
            "params": {k: meta[k] for k in ("levels", "wavelet") if k in meta}, "rows": rows, "history": events,
            "notes": checked.notes, "notes_total": checked.notes_total}


def verify_library(library: str, expect_version: str | None = None) -> dict[str, Any]:
    """``camid library verify``: the catalogue's integrity and version, each row against its metadata and its
    source store's manifest (:func:`integrity.row_problems`), every array against its hash and the catalogue,
    every screening row against its hash and against the fingerprint it comes from; with ``expect_version``, the
    version against the one kept outside the library. Files nothing points to (an interrupted add) are listed
    as notes, not problems."""
    expected = integrity.check_version_text(expect_version)
    con = cat.connect(library, reader=True)
    try:
        with cat.transaction(con, immediate=False):
            integrity_check = con.execute("PRAGMA integrity_check").fetchone()[0]
            checked, problems = integrity.catalogue_problems(con, library)
    finally:
        con.close()
    rows = checked.rows
    if integrity_check != "ok":
        problems.insert(0, f"catalogue integrity check: {integrity_check}")
    if expected is not None and checked.version != expected:
        problems.insert(0, f"the library's version is {checked.version}, expected {expected} (the version kept "
                           f"outside the library): the catalogue was changed since")
    for r in rows:
        problems.extend(_verify_camera(library, r))
    return {"library": library, "cameras": len(rows), "version": checked.version, "problems": problems,
            "orphans": _orphans(library, rows), "notes": checked.notes, "notes_total": checked.notes_total,
            "ok": not problems}


def _verify_camera(library: str, r: dict[str, Any]) -> list[str]:
    """The camera's arrays and screening row (its metadata is :func:`integrity.row_problems`')."""
    name = r["name"]
    try:
        k = arr.k_from_blob(arr.read_blob(library, r["arrays_sha256"]), arr.blob_path(library, r["arrays_sha256"]))
    except LibraryError as exc:
        return [f"{name}: {exc}"]
    want = (r["clip_rows"], r["clip_cols"]) if r["clip_rows"] else (r["rows"], r["cols"])
    if tuple(k.shape) != tuple(want):
        return [f"{name}: fingerprint is {k.shape[0]}x{k.shape[1]}, the catalogue says {want[0]}x{want[1]}"]
    try:
        rows = arr.screen_rows(library, r["screen_file"], k.size, r["screen_row"] + 1)
    except (LibraryError, ValueError) as exc:
        return [f"{name}: {exc}"]
    row = np.array(rows[r["screen_row"]])
    if arr.row_sha256(row) != r["screen_sha256"]:
        return [f"{name}: screening row {r['screen_row']} of {r['screen_file']} differs from its SHA-256"]
    if not np.array_equal(row, arr.screen_form(k)):
        return [f"{name}: screening row {r['screen_row']} is not the compact form of its fingerprint"]
    return []


def _orphans(library: str, rows: list[dict[str, Any]]) -> list[str]:
    """Files of the library no catalogue row points to (never read by a search: harmless, listed): arrays and
    screening rows an interrupted add left, kept manifests no row names, and anything else put there."""
    known = {os.path.join(cat.ARRAYS_DIR, r["arrays_sha256"][:2], r["arrays_sha256"] + ".npz") for r in rows}
    known |= {os.path.join(cat.SCREEN_DIR, r["screen_file"] + ".f16") for r in rows}
    known |= {os.path.join(integrity.MANIFESTS_DIR, f"{r['source_manifest_sha256']}.json") for r in rows}
    own = {cat.CATALOGUE_NAME + suffix for suffix in ("", "-wal", "-shm", "-journal")} | {run_folder.LOCK_NAME}
    found = []
    for folder, _, files in os.walk(library):
        for f in files:
            rel = os.path.relpath(os.path.join(folder, f), library)
            if rel not in known and rel not in own:
                found.append(os.path.join(folder, f))
    return sorted(found)

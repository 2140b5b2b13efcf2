"""A library search run's record of the library it read, and ``camid verify``'s re-check of it.

``RUN/library.jsonl`` (an output, hashed into the run's manifest): a first line with the library's path,
version and camera count, then one line per camera the search compared: its name, the SHA-256 of its arrays,
metadata, source store manifest and screening row, and where that row lies. ``camid verify RUN`` checks the
file against the manifest like every output, then re-checks the library against it (:func:`verify_search_run`):
the catalogue is consistent (:func:`integrity.catalogue_problems`), every camera compared is still there under
its name with the same hashes (a later retirement is said, not a problem), every screening row read back has its
SHA-256, and the arrays of every camera the run scored (its confirmations) have theirs. A consistent edit of the
catalogue (names swapped, hashes and version recomputed) after the search is so caught.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

import numpy as np

from camid_gpu._shared import custody
from camid_gpu._shared.files import atomic_write, open_regular
from camid_gpu.errors import LibraryError
from camid_gpu.library import arrays as arr
from camid_gpu.library import catalogue as cat
from camid_gpu.library import integrity

SNAPSHOT_NAME = "library.jsonl"
#: what the snapshot keeps of each camera compared
SNAPSHOT_FIELDS = ("name", "arrays_sha256", "metadata_sha256", "source_manifest_sha256", "screen_file", "screen_row",
                   "screen_sha256")
#: screening rows re-hashed per read
ROWS_PER_READ = 64


def write_snapshot(run_dir: str, library: str, version: str, rows: list[dict[str, Any]]) -> str:
    """``RUN/library.jsonl`` of the cameras searched (``rows``, the active ones of version ``version``)."""
    path = os.path.join(run_dir, SNAPSHOT_NAME)
    with atomic_write(path) as handle:
        handle.write(json.dumps({"library": os.path.abspath(library), "version": version, "cameras": len(rows)},
                                sort_keys=True) + "\n")
        for r in rows:
            handle.write(json.dumps({k: r[k] for k in SNAPSHOT_FIELDS}, sort_keys=True) + "\n")
    return path


def _lines(path: str) -> Iterator[dict[str, Any]]:
    with open_regular(path) as handle:
        for n, line in enumerate(handle, 1):
            try:
                value = json.loads(line)
            except ValueError:
                value = None
            if not isinstance(value, dict):
                raise LibraryError(f"{path}: line {n} is not a JSON object")
            yield value


def _located(manifest: custody.Manifest, name: str) -> str | None:
    for entry in manifest.data.get("outputs") or []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str) and os.path.basename(entry["path"]) == name:
            return custody.locate(entry, manifest).where
    return None


def verify_search_run(manifest: custody.Manifest, library: str | None = None) -> dict[str, Any]:
    """Re-check the library a search run read (``library``: where it lies now, default its recorded path).
    Returns ``{"library": path, "problems": [...], "notes": [...], "cameras": n, "rows": n, "arrays": n}``."""
    recorded = manifest.data.get("library") if isinstance(manifest.data.get("library"), dict) else {}
    where = library or recorded.get("path")
    out: dict[str, Any] = {"library": where, "problems": [], "notes": [], "cameras": 0, "rows": 0, "arrays": 0}
    snapshot = _located(manifest, SNAPSHOT_NAME)
    if snapshot is None:
        out["notes"].append(f"NOT CHECKED: the run lists no {SNAPSHOT_NAME} (a search run of an older camid): the "
                            f"cameras it compared cannot be checked against the library, only its version "
                            f"{recorded.get('version')} ('camid library verify LIB --expect-version' it)")
        return out
    if not isinstance(where, str) or not os.path.isfile(cat.catalogue_path(where)):
        out["problems"].append(f"the library the run searched is not at {where} (give its place now: camid verify "
                               f"RUN --library LIB): the cameras it compared could not be checked")
        return out
    try:
        _check(manifest, snapshot, where, out)
    except (LibraryError, OSError, KeyError, TypeError, ValueError) as exc:
        out["problems"].append(f"{where}: {exc}")
    return out


def _check(manifest: custody.Manifest, snapshot: str, library: str, out: dict[str, Any]) -> None:
    con = cat.connect(library, reader=True)
    try:
        with cat.transaction(con, immediate=False):
            checked, problems = integrity.catalogue_problems(con, library, lambda r: {k: r[k] for k in (
                *SNAPSHOT_FIELDS, "retired_utc")})
    finally:
        con.close()
    out["problems"] += [f"the library now: {p}" for p in problems]
    now = {r["name"]: r for r in checked.rows}
    lines = _lines(snapshot)
    head = next(lines)
    if head.get("version") != checked.version:
        out["notes"].append(f"the library's version is {checked.version} now, {head.get('version')} when searched "
                            f"(changed since by camid: 'camid library info' shows its history)")
    compared: list[dict[str, Any]] = []
    for line in lines:
        row = now.get(line.get("name"))
        if row is None:
            out["problems"].append(f"camera {line.get('name')!r} compared by the run is no longer in the library")
            continue
        differ = [k for k in SNAPSHOT_FIELDS if row[k] != line.get(k)]
        if differ:
            out["problems"].append(f"camera {line['name']!r} compared by the run has another {', '.join(differ)} in "
                                   f"the library now")
            continue
        if row["retired_utc"] is not None:
            out["notes"].append(f"camera {line['name']!r} was retired after the search ({row['retired_utc']})")
        compared.append(row)
    out["cameras"] = len(compared)
    out["problems"] += _rows_problems(library, compared, out)
    out["problems"] += _arrays_problems(manifest, library, {r["name"]: r for r in compared}, out)


def _rows_problems(library: str, compared: list[dict[str, Any]], out: dict[str, Any]) -> list[str]:
    """Every compared camera's screening row re-hashed, a few rows per read (memory bounded by ROWS_PER_READ)."""
    problems = []
    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in compared:
        by_file.setdefault(r["screen_file"], []).append(r)
    for name, members in sorted(by_file.items()):
        members.sort(key=lambda r: r["screen_row"])
        path = arr.screen_path(library, name)
        pixels = _row_pixels(path)
        buffer = np.empty((ROWS_PER_READ, pixels), arr.SCREEN_DTYPE)
        for start in range(0, len(members), ROWS_PER_READ):
            part = members[start:start + ROWS_PER_READ]
            rows = arr.read_screen_rows(path, pixels, np.array([r["screen_row"] for r in part]), buffer)
            for i in arr.screen_row_mismatches(rows, [r["screen_sha256"] for r in part]):
                problems.append(f"camera {part[i]['name']!r}: screening row {part[i]['screen_row']} of {path} differs "
                                f"from the SHA-256 the run recorded")
            out["rows"] += len(part)
    return problems


def _row_pixels(path: str) -> int:
    """Pixels per row of a screening file, from its name (``HxW-full`` or ``HxW-clipHxW``)."""
    stem = os.path.basename(path)[:-len(".f16")]
    frame, _, clip = stem.partition("-")
    h, w = (int(v) for v in (clip[len("clip"):] if clip.startswith("clip") else frame).split("x"))
    return h * w


def _arrays_problems(manifest: custody.Manifest, library: str, compared: dict[str, dict[str, Any]],
                     out: dict[str, Any]) -> list[str]:
    """The arrays of every camera the run scored (its confirmations), re-hashed."""
    results = _located(manifest, "results.jsonl")
    scored: set[str] = set()
    if results is not None and os.path.isfile(results):
        for record in _lines(results):
            scores = (record.get("pce") or {}).get("scores") if isinstance(record.get("pce"), dict) else None
            scored.update(scores or {})
    problems = []
    for name in sorted(scored):
        row = compared.get(name)
        if row is None:
            continue  # named above (no longer in the library, or changed)
        try:
            arr.read_blob(library, row["arrays_sha256"])
        except LibraryError as exc:
            problems.append(f"camera {name!r}: {exc}")
        out["arrays"] += 1
    return problems

"""What every command that reads a library checks first: the catalogue against its version, each camera row
against its own metadata and the manifest of the store it was added from, and the version against the one the
examiner kept (``--expect-version``).

- **Version**: ``meta.version`` is the SHA-256 of the catalogue's content (:func:`catalogue.content_version`);
  an edit made outside camid that did not recompute it is refused by every reader (:func:`checked_catalogue`).
- **Rows**: each row's ``metadata_json`` has its ``metadata_sha256``; the metadata names the row's camera (``C01``,
  or ``CASE.g01`` for a cluster fingerprint of case ``CASE``) and its arrays' SHA-256; the manifest of the store
  it was added from (a copy kept in the library at add time, ``LIB/manifests/<sha256>.json``, named by its
  SHA-256, which the row records as ``source_manifest_sha256``) lists ``<camera>.json`` and ``<camera>.npz``
  with those very hashes. Two camera names swapped in the catalogue are so refused even when the version was
  recomputed.
- **Anchor**: a careful editor can recompute everything above; the version printed by ``add``, ``retire`` and
  ``verify``, kept outside the library (a case file, a notebook), is the anchor: ``--expect-version V`` refuses a
  library whose content is not that version (as ``camid verify --expect-sha256`` for a run folder).
- **Search runs** keep the catalogue rows they compared in ``RUN/library.jsonl`` (hashed into the run's
  manifest); ``camid verify RUN`` re-checks them against the library (:mod:`.runcheck`).

Libraries made before the manifest copies were kept: the source store's manifest is read where it was (when it
still has the recorded SHA-256); when it is gone, the check says that the name was checked against the camera's
own metadata only (a note, never silent).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from camid_gpu._shared import custody
from camid_gpu._shared.files import read_regular
from camid_gpu.errors import LibraryError
from camid_gpu.library import arrays as arr
from camid_gpu.library import catalogue as cat

MANIFESTS_DIR = "manifests"
#: problems quoted in a refusal (``camid library verify`` lists every one)
QUOTED_PROBLEMS = 4
#: notes kept (of a library of 10^5 cameras added without manifests, say: their count is kept)
QUOTED_NOTES = 20


def manifest_copy_path(library: str, sha256: str) -> str:
    return os.path.join(library, MANIFESTS_DIR, f"{sha256}.json")


def keep_manifest(library: str, blob: bytes, durable: bool = True) -> str:
    """Keep a store's manifest (its very bytes) in the library under its SHA-256; returns the hash."""
    digest = hashlib.sha256(blob).hexdigest()
    arr.store_addressed(manifest_copy_path(library, digest), blob, digest, durable)
    return digest


class StoreManifests:
    """The source stores' manifests by SHA-256, each read once: file name -> the SHA-256s it lists."""

    def __init__(self, library: str):
        self.library = library
        self.listed: dict[str, dict[str, set[str]] | str] = {}

    def files(self, sha256: str, source_store: str) -> dict[str, set[str]] | str:
        """The files the manifest lists, or a sentence: why it cannot be used (``"not kept: ..."`` for a
        library made before the copies were kept, the source manifest gone)."""
        if sha256 not in self.listed:
            self.listed[sha256] = self._read(sha256, source_store)
        return self.listed[sha256]

    def _read(self, sha256: str, source_store: str) -> dict[str, set[str]] | str:
        kept = manifest_copy_path(self.library, sha256)
        where = kept if os.path.exists(kept) else _source_manifest(source_store)
        if where is None:
            return (f"not kept: the manifest of the store it was added from is neither in the library (added by "
                    f"an older camid) nor at {source_store}")
        try:
            blob = read_regular(where)
        except OSError as exc:
            return f"{where} cannot be read ({exc.strerror or exc})"
        if hashlib.sha256(blob).hexdigest() != sha256:
            return (f"{where} does not have the SHA-256 the catalogue records for it ({sha256[:16]}...)"
                    if where == kept else f"not kept: the manifest at {where} changed since the add")
        try:
            data = json.loads(blob)
        except ValueError as exc:
            return f"{where} is not readable JSON ({exc})"
        listed: dict[str, set[str]] = {}
        for entry in custody.file_entries(data if isinstance(data, dict) else {}):
            if isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("sha256"), str):
                listed.setdefault(os.path.basename(entry["path"]), set()).add(entry["sha256"].lower())
        return listed


def _source_manifest(source_store: str) -> str | None:
    try:
        found = custody.store_manifest(source_store)
    except (OSError, ValueError):
        return None
    return found.path if found is not None else None


def row_problems(row: dict[str, Any], manifests: StoreManifests) -> tuple[list[str], list[str]]:
    """(problems, notes) of one catalogue row (``id`` and every :data:`catalogue.CAMERA_COLUMNS`).

    The metadata against its SHA-256; then the kept manifest of the source store must list ``<camera>.json`` and
    ``<camera>.npz`` (the camera the row's name says) with the row's metadata and arrays hashes, which binds the
    name to the metadata without parsing it (a row costs a hash and two look-ups). The metadata is parsed only
    to explain a difference, or where no manifest is at hand (:func:`_metadata_problems`)."""
    name, text = row["name"], row["metadata_json"]
    if not isinstance(text, str) or hashlib.sha256(text.encode("utf-8")).hexdigest() != row["metadata_sha256"]:
        return [f"camera {name!r}: its metadata differs from its recorded SHA-256"], []
    case = row["case_id"] if row["kind"] != "seized" else None
    if case is not None and not (isinstance(case, str) and name.startswith(case + ".")):
        return [f"camera {name!r}: a cluster fingerprint of case {case!r} is named '<case>.<cluster>'"], []
    camera = name if case is None else name[len(case) + 1:]
    sha = row["source_manifest_sha256"]
    listed = manifests.files(sha, row["source_store"]) if custody.is_sha256(sha) else "not kept: no manifest"
    if isinstance(listed, str) and not listed.startswith("not kept"):
        return [f"camera {name!r}: the manifest of its source store: {listed}"], []
    if isinstance(listed, dict):
        for suffix, want in ((".json", row["metadata_sha256"]), (".npz", row["arrays_sha256"])):
            if want not in listed.get(camera + suffix, ()):
                explained = _metadata_problems(row, text, camera)
                return explained or [f"camera {name!r}: the manifest of the store it was added from "
                                     f"({row['source_store']}) lists no {camera}{suffix} with SHA-256 "
                                     f"{str(want)[:16]}..."], []
        return [], []
    problems = _metadata_problems(row, text, camera)
    why = "added from a store without a manifest" if listed == "not kept: no manifest" else listed
    return problems, [] if problems else [f"camera {name!r}: {why}: checked against its own metadata only"]


def _metadata_problems(row: dict[str, Any], text: str, camera: str) -> list[str]:
    """The metadata's own camera and arrays against the row's."""
    name = row["name"]
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    own = meta.get("camera") if isinstance(meta, dict) else None
    if not isinstance(own, str):
        return [f"camera {name!r}: its metadata names no camera"]
    if own != camera:
        shown = own if row["kind"] == "seized" else f"{row['case_id']}.{own}"
        return [f"camera {name!r}: its own metadata names camera {shown!r} (names changed in the catalogue)"]
    if meta.get("arrays_sha256") != row["arrays_sha256"]:
        return [f"camera {name!r}: its metadata names arrays {str(meta.get('arrays_sha256'))[:16]}..., the catalogue "
                f"{str(row['arrays_sha256'])[:16]}..."]
    return []


@dataclass
class Checked:
    """A catalogue as read and checked: its version (content hash), the rows kept, its meta, and notes (what
    could not be checked, said)."""

    version: str
    rows: list[dict[str, Any]]
    meta: dict[str, str]
    notes: list[str] = field(default_factory=list)   # the first QUOTED_NOTES, of notes_total
    cameras: int = 0
    notes_total: int = 0


def catalogue_problems(con, library: str, keep: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda r: r,
                       ) -> tuple[Checked, list[str]]:
    """One pass over the catalogue: its version recomputed and every row checked (:func:`row_problems`);
    ``keep(row)`` gives what to keep of each row (None: nothing). Returns (what was read, problems)."""
    meta = cat.get_meta(con)
    manifests = StoreManifests(library)
    problems: list[str] = []
    kept: list[dict[str, Any]] = []
    notes: list[str] = []
    count, noted = [0], [0]

    def visit(row: dict[str, Any]) -> None:
        count[0] += 1
        bad, said = row_problems(row, manifests)
        problems.extend(bad)
        notes.extend(said[:max(0, QUOTED_NOTES - len(notes))])
        noted[0] += len(said)
        if count[0] == 1:
            problems.extend(_params_problems(meta, row))
        mine = keep(row)
        if mine is not None:
            kept.append(mine)

    version = cat.content_version(con, visit)
    if meta.get("version") != version:
        problems.insert(0, f"its recorded version {meta.get('version')} is not the hash of its content ({version}): "
                           f"it was changed outside camid")
    return Checked(version, kept, meta, notes, count[0], noted[0]), problems


def _params_problems(meta: dict[str, str], row: dict[str, Any]) -> list[str]:
    """The residual parameters the library records (a search computes the images' residuals with them) against
    those of its first fingerprint (every add checks that all fingerprints share them; each row's metadata is
    bound to its hash): ``levels`` or ``wavelet`` edited in ``meta`` would score every image with other residuals."""
    try:
        params = json.loads(row["metadata_json"]).get("params") or {}
    except (ValueError, AttributeError):
        return []  # the row's own check names it
    return [f"the library records {key} {meta[key]}, its fingerprints were made with {params.get(key)} (the "
            f"catalogue's meta table was changed)" for key in ("levels", "wavelet")
            if key in meta and str(params.get(key)) != meta[key]]


def checked_catalogue(con, library: str, keep: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda r: r,
                      expect_version: str | None = None) -> Checked:
    """:func:`catalogue_problems`, refused (:class:`LibraryError`, naming the catalogue and the first problems)
    when anything is wrong, or when the version is not ``expect_version``."""
    checked, problems = catalogue_problems(con, library, keep)
    if problems:
        more = f"; and {len(problems) - QUOTED_PROBLEMS} more" if len(problems) > QUOTED_PROBLEMS else ""
        raise LibraryError(f"{cat.catalogue_path(library)}: the catalogue does not hold what it recorded: "
                           + "; ".join(problems[:QUOTED_PROBLEMS]) + more + f". Nothing was read from it; 'camid "
                           f"library verify {library}' lists every problem")
    check_expected_version(library, checked.version, expect_version)
    return checked


def check_version_text(expect_version: str | None) -> str | None:
    """``--expect-version``: 64 hexadecimal digits (lower-cased), or None."""
    if expect_version is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", expect_version.strip()):
        raise ValueError(f"--expect-version must be 64 hexadecimal digits (the version 'camid library add' or "
                         f"'verify' printed), got {expect_version!r}")
    return expect_version.strip().lower()


def check_expected_version(library: str, version: str, expect_version: str | None) -> None:
    expected = check_version_text(expect_version)
    if expected is not None and version != expected:
        raise LibraryError(f"{library}: the library's version is {version}, expected {expected}: its catalogue was "
                           f"changed since that version was kept (by camid: 'camid library info' shows its history; "
                           f"or outside camid, consistently)")


def search_row(row: dict[str, Any]) -> dict[str, Any] | None:
    """What a search keeps of a row: the active cameras, without their metadata JSON."""
    if row["retired_utc"] is not None:
        return None
    return {k: row[k] for k in ("id",) + cat.SEARCH_COLUMNS}


def snapshot(library: str, expect_version: str | None = None, notes: list[str] | None = None,
             ) -> tuple[str, list[dict[str, Any]], dict[str, str]]:
    """(version, active camera rows without their metadata JSON, meta), read in one transaction (a consistent
    view while an add runs) and checked (:func:`checked_catalogue`); what could not be checked is appended to
    ``notes`` (the first :data:`QUOTED_NOTES`, then a count)."""
    con = cat.connect(library, reader=True)
    try:
        with cat.transaction(con, immediate=False):
            checked = checked_catalogue(con, library, search_row, expect_version)
    finally:
        con.close()
    if notes is not None:
        more = checked.notes_total - len(checked.notes)
        notes.extend(checked.notes + ([f"and {more} more such notes ('camid library verify' counts them)"]
                                      if more else []))
    return checked.version, checked.rows, checked.meta


def read_checked(library: str, expect_version: str | None = None) -> tuple[Checked, list[dict[str, Any]], int]:
    """Every row (retired ones too), checked, with the history and the schema version (``list``, ``info``)."""
    con = cat.connect(library, reader=True)
    try:
        with cat.transaction(con, immediate=False):
            checked = checked_catalogue(con, library, expect_version=expect_version)
            events, schema = cat.history(con), cat.schema_version(con)
    finally:
        con.close()
    return checked, events, schema

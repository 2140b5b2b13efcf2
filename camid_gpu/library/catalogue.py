"""The library's catalogue: one SQLite database (``LIB/catalogue.sqlite``, standard library, WAL journal).

Tables (schema :data:`~camid_gpu.config.LIBRARY_SCHEMA_VERSION`, in ``PRAGMA user_version``):

- ``meta``: key/value facts of the library: ``created``, ``camid_version`` that created it, the residual
  parameters every fingerprint shares (``levels``, ``wavelet``, fixed by the first add) and ``version``: the
  SHA-256 of the catalogue's content (:func:`content_version`), updated in the same transaction as every change;
- ``cameras``: one row per fingerprint: name (unique, case-insensitively), kind (``seized``: from ``camid
  fingerprint``; ``unknown``: a cluster of ``camid cluster``), case, label, provenance (source store folder, its
  manifest's SHA-256, the store's metadata JSON and its SHA-256, when added, the camid version), sensor geometry
  (``rows``, ``cols`` of the sensor frame; ``clip_rows``, ``clip_cols`` of the PCE geometry or NULL for the full
  frame), the content address of its arrays (``arrays_sha256``: the store's ``.npz`` bytes), its compact screening
  row (``screen_file``, ``screen_row``, ``screen_sha256``) and, once retired, when and why;
- ``history`` (added in schema 2): every add, no-op add and retirement, with its time and detail.

Migrations (:data:`MIGRATIONS`) take a catalogue of any older schema to the current one, step by step, in one
transaction each; a catalogue of a newer schema is refused by name.

Every change runs in one ``BEGIN IMMEDIATE`` transaction (:func:`transaction`): a reader (a search) that reads
in one transaction sees the catalogue before or after it, never half of it (WAL snapshots).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from typing import Any, Iterator

from camid_gpu.config import LIBRARY_SCHEMA_VERSION
from camid_gpu.errors import LibraryError

CATALOGUE_NAME = "catalogue.sqlite"
ARRAYS_DIR = "arrays"
SCREEN_DIR = "screen"

#: schema steps: MIGRATIONS[v] takes a catalogue of version v to v + 1
MIGRATIONS: dict[int, list[str]] = {
    0: [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE cameras (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            kind TEXT NOT NULL CHECK (kind IN ('seized', 'unknown')),
            case_id TEXT, label TEXT,
            source_store TEXT NOT NULL, source_manifest_sha256 TEXT,
            metadata_json TEXT NOT NULL, metadata_sha256 TEXT NOT NULL,
            arrays_sha256 TEXT NOT NULL UNIQUE,
            rows INTEGER NOT NULL, cols INTEGER NOT NULL, clip_rows INTEGER, clip_cols INTEGER,
            screen_file TEXT NOT NULL, screen_row INTEGER NOT NULL, screen_sha256 TEXT NOT NULL,
            added_utc TEXT NOT NULL, camid_version TEXT NOT NULL,
            retired_utc TEXT, retired_reason TEXT)""",
    ],
    1: [
        """CREATE TABLE history (id INTEGER PRIMARY KEY, at_utc TEXT NOT NULL, action TEXT NOT NULL,
            camera TEXT, detail TEXT NOT NULL)""",
        "CREATE INDEX cameras_geometry ON cameras (rows, cols, clip_rows, clip_cols)",
    ],
}
#: the camera columns that are the library's content (all but the row id): the version hashes them
CAMERA_COLUMNS = ("name", "kind", "case_id", "label", "source_store", "source_manifest_sha256", "metadata_json",
                  "metadata_sha256", "arrays_sha256", "rows", "cols", "clip_rows", "clip_cols", "screen_file",
                  "screen_row", "screen_sha256", "added_utc", "camid_version", "retired_utc", "retired_reason")


def catalogue_path(library: str) -> str:
    return os.path.join(library, CATALOGUE_NAME)


def connect(library: str, create: bool = False) -> sqlite3.Connection:
    """Open ``LIB/catalogue.sqlite`` (WAL), migrated to the current schema; ``create`` makes a new one."""
    path = catalogue_path(library)
    if not create and not os.path.isfile(path):
        raise LibraryError(f"{library}: not a camid library (no {CATALOGUE_NAME}); make one with "
                           f"'camid library init {library}'")
    try:
        con = sqlite3.connect(path, timeout=30.0, isolation_level=None)  # transactions are explicit
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")  # a committed add survives a power cut, not only a crash
        con.execute("PRAGMA foreign_keys=ON")
        migrate(con, library)
    except sqlite3.DatabaseError as exc:
        raise LibraryError(f"{path}: cannot open the catalogue ({exc})") from None
    return con


def schema_version(con: sqlite3.Connection) -> int:
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def migrate(con: sqlite3.Connection, library: str = "") -> int:
    """Bring the catalogue to :data:`LIBRARY_SCHEMA_VERSION`, one transaction per step; returns the version."""
    version = schema_version(con)
    if version > LIBRARY_SCHEMA_VERSION:
        raise LibraryError(f"{library}: the catalogue has schema version {version}, this camid reads up to "
                           f"{LIBRARY_SCHEMA_VERSION}; use a newer camid")
    while version < LIBRARY_SCHEMA_VERSION:
        with transaction(con):
            if schema_version(con) != version:  # another process migrated meanwhile
                version = schema_version(con)
                continue
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            version += 1
            con.execute(f"PRAGMA user_version = {version}")
    return version


@contextlib.contextmanager
def transaction(con: sqlite3.Connection, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction: ``BEGIN IMMEDIATE`` for a writer (takes the write lock at once), ``BEGIN`` for a
    reader (its first read fixes the snapshot it sees until the end)."""
    con.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def get_meta(con: sqlite3.Connection) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM meta"))


def set_meta(con: sqlite3.Connection, **values: Any) -> None:
    con.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [(k, str(v)) for k, v in values.items()])


def camera_rows(con: sqlite3.Connection, active_only: bool = False,
                columns: tuple[str, ...] = CAMERA_COLUMNS) -> list[dict[str, Any]]:
    """Every camera row as a dict (by id: the order of adding), or only those not retired."""
    where = " WHERE retired_utc IS NULL" if active_only else ""
    cursor = con.execute(f"SELECT id, {', '.join(columns)} FROM cameras{where} ORDER BY id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def content_version(con: sqlite3.Connection) -> str:
    """SHA-256 of the catalogue's content: every camera row (retired ones too) in id order, canonical JSON.
    A search records it; the same version is the same library, camera for camera, array for array."""
    digest = hashlib.sha256()
    cursor = con.execute(f"SELECT id, {', '.join(CAMERA_COLUMNS)} FROM cameras ORDER BY id")
    for row in cursor:
        digest.update(json.dumps(list(row), separators=(",", ":")).encode("utf-8") + b"\n")
    return digest.hexdigest()


def record_history(con: sqlite3.Connection, at_utc: str, action: str, camera: str | None, detail: dict) -> None:
    con.execute("INSERT INTO history (at_utc, action, camera, detail) VALUES (?, ?, ?, ?)",
                (at_utc, action, camera, json.dumps(detail, sort_keys=True)))


def history(con: sqlite3.Connection) -> list[dict[str, Any]]:
    return [{"at_utc": a, "action": b, "camera": c, "detail": json.loads(d)}
            for a, b, c, d in con.execute("SELECT at_utc, action, camera, detail FROM history ORDER BY id")]


#: what a search keeps of each camera row (the metadata JSON, kilobytes with its references, is read per camera
#: when a camera is confirmed: a row never changes once inserted, but for its retirement)
SEARCH_COLUMNS = tuple(c for c in CAMERA_COLUMNS if c != "metadata_json")


def metadata_json(library: str, camera_id: int) -> str:
    con = connect(library)
    try:
        return con.execute("SELECT metadata_json FROM cameras WHERE id = ?", (camera_id,)).fetchone()[0]
    finally:
        con.close()


def snapshot(library: str) -> tuple[str, list[dict[str, Any]], dict[str, str]]:
    """(version, active camera rows without their metadata JSON, meta) read in one transaction: a consistent
    view while an add runs."""
    con = connect(library)
    try:
        with transaction(con, immediate=False):
            meta = get_meta(con)
            rows = camera_rows(con, active_only=True, columns=SEARCH_COLUMNS)
            version = meta.get("version", content_version(con))
    finally:
        con.close()
    return version, rows, meta

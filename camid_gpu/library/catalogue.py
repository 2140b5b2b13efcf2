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
import pathlib
import sqlite3
from typing import Any, Callable, Iterator

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


def connect(library: str, create: bool = False, reader: bool = False) -> sqlite3.Connection:
    """Open ``LIB/catalogue.sqlite`` (WAL), migrated to the current schema; ``create`` makes a new one.
    ``reader``: a command that only reads (search, list, info, link, verify); on read-only media (or a folder
    this user cannot write) the catalogue is then opened read-only (:func:`connect_read_only`)."""
    path = catalogue_path(library)
    if not create and not os.path.isfile(path):
        raise LibraryError(f"{library}: not a camid library (no {CATALOGUE_NAME}); make one with "
                           f"'camid library init {library}'")
    if reader and not writable(library):
        return connect_read_only(library)
    try:
        con = sqlite3.connect(path, timeout=30.0, isolation_level=None)  # transactions are explicit
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")  # a committed add survives a power cut, not only a crash
        con.execute("PRAGMA foreign_keys=ON")
        migrate(con, library)
    except sqlite3.DatabaseError as exc:
        raise LibraryError(f"{path}: cannot open the catalogue ({exc})") from None
    return con


def writable(library: str) -> bool:
    """The library's folder and catalogue can be written (WAL needs its ``-shm`` and ``-wal`` files beside it)."""
    path = catalogue_path(library)
    try:
        if os.statvfs(library).f_flag & os.ST_RDONLY:  # read-only media: even root cannot write
            return False
    except OSError:
        return False
    return os.access(library, os.W_OK) and os.access(path, os.W_OK)


def connect_read_only(library: str) -> sqlite3.Connection:
    """The catalogue of a library on read-only media, opened read-only and immutable (no lock, no ``-shm``:
    nothing can be written there, so nothing can change it meanwhile). Refused, naming the file, when a
    ``-wal`` file holds committed changes not yet in the catalogue (the immutable view would not see them),
    and when the schema is older than this camid's (a migration needs to write)."""
    path = catalogue_path(library)
    wal = path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        raise LibraryError(f"{wal}: the library is read-only here but this journal holds changes not yet written "
                           f"into {CATALOGUE_NAME}; open the library once where it can be written (any camid "
                           f"library command), then copy it to the read-only medium again")
    try:
        con = sqlite3.connect(f"{pathlib.Path(os.path.abspath(path)).as_uri()}?mode=ro&immutable=1", uri=True,
                              timeout=30.0, isolation_level=None)
        version = schema_version(con)
    except sqlite3.DatabaseError as exc:
        raise LibraryError(f"{path}: cannot open the catalogue read-only ({exc})") from None
    if version != LIBRARY_SCHEMA_VERSION:
        con.close()
        if version > LIBRARY_SCHEMA_VERSION:
            raise LibraryError(f"{library}: the catalogue has schema version {version}, this camid reads up to "
                               f"{LIBRARY_SCHEMA_VERSION}; use a newer camid")
        raise LibraryError(f"{path}: the catalogue has schema version {version} and is read-only here; it must be "
                           f"migrated to version {LIBRARY_SCHEMA_VERSION} where it can be written (any camid "
                           f"library command there does it)")
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


def content_version(con: sqlite3.Connection, visit: Callable[[dict[str, Any]], None] | None = None) -> str:
    """SHA-256 of the catalogue's content: every camera row (retired ones too) in id order, canonical JSON.
    A search records it; the same version is the same library, camera for camera, array for array.
    ``visit(row)``: called with every row (a dict of ``id`` and :data:`CAMERA_COLUMNS`) as it is hashed, so
    that a caller checks each row in the same pass (:func:`camid_gpu.library.integrity.checked_catalogue`)."""
    digest = hashlib.sha256()
    cursor = con.execute(f"SELECT id, {', '.join(CAMERA_COLUMNS)} FROM cameras ORDER BY id")
    names = [d[0] for d in cursor.description]
    for row in cursor:
        digest.update(json.dumps(list(row), separators=(",", ":")).encode("utf-8") + b"\n")
        if visit is not None:
            visit(dict(zip(names, row)))
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
    con = connect(library, reader=True)
    try:
        return con.execute("SELECT metadata_json FROM cameras WHERE id = ?", (camera_id,)).fetchone()[0]
    finally:
        con.close()

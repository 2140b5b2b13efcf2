"""The library's arrays: content-addressed fingerprint files and the compact screening rows.

- ``LIB/arrays/<aa>/<sha256>.npz``: a fingerprint's arrays, the very bytes of the store's ``<camera>.npz``,
  named by their SHA-256 (which is also the store's ``arrays_sha256``). Written through a temporary file, fsync
  and rename; an existing file of that name is checked, never rewritten.
- ``LIB/screen/<geometry>.f16``: the screening form of every fingerprint of one geometry (sensor frame and PCE
  clip), one row each: ``K / rms(K)`` over the whole PCE frame in float16 (the normalisation keeps float16 in
  its normal range; the NCC does not see it). Append-only: an add appends its rows and fsyncs before its
  catalogue transaction, so a row a catalogue entry points to is always complete; rows an interrupted add left
  past the last catalogued one are unreferenced, and the next add writes over them.

A search streams the rows of one geometry tile by tile (:func:`read_screen_rows`), so a library larger than
memory is screened without holding it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any, Sequence

import numpy as np

from camid_gpu._shared.files import read_regular, write_bytes_atomic
from camid_gpu.errors import LibraryError
from camid_gpu.library.catalogue import ARRAYS_DIR, SCREEN_DIR, metadata_json
from camid_gpu.store import CameraFingerprint, check_arrays

SCREEN_DTYPE = np.float16


def blob_path(library: str, sha256: str) -> str:
    return os.path.join(library, ARRAYS_DIR, sha256[:2], f"{sha256}.npz")


def store_blob(library: str, blob: bytes, durable: bool = True) -> str:
    """Write ``blob`` under its SHA-256 (durably: fsync'ed, unless ``durable`` is False) unless a file with those
    very bytes is there; returns the hash."""
    digest = hashlib.sha256(blob).hexdigest()
    store_addressed(blob_path(library, digest), blob, digest, durable)
    return digest


def store_addressed(path: str, blob: bytes, digest: str, durable: bool = True) -> None:
    """Write ``blob`` (SHA-256 ``digest``) at its content-addressed ``path`` unless a file with those very bytes is
    there; through a temporary name either way, so an interrupted write never leaves wrong bytes under the name."""
    if os.path.exists(path):
        if hashlib.sha256(read_regular(path)).hexdigest() == digest:
            return
        os.remove(path)  # a damaged copy (never catalogued with these bytes): replaced by the right ones
    if durable:
        write_bytes_atomic(path, blob)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "wb") as handle:
            handle.write(blob)
        os.replace(path + ".tmp", path)


def read_blob(library: str, sha256: str) -> bytes:
    """The bytes stored under ``sha256``, checked against it."""
    path = blob_path(library, sha256)
    try:
        blob = read_regular(path)
    except OSError as exc:
        raise LibraryError(f"{path}: cannot read the fingerprint arrays ({exc.strerror or exc})") from None
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise LibraryError(f"{path}: SHA-256 differs from its name (the arrays were changed or damaged); run "
                           f"'camid library verify'")
    return blob


def k_from_blob(blob: bytes, where: str) -> np.ndarray:
    """The PCE fingerprint ``k`` (float32) of a store ``.npz``."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            k = np.ascontiguousarray(npz["k"], dtype=np.float32)
    except (KeyError, ValueError, OSError) as exc:
        raise LibraryError(f"{where}: no readable PCE fingerprint 'k' in the arrays ({exc})") from None
    check_arrays({"k": k}, where)
    return k


def screen_form(k: np.ndarray) -> np.ndarray:
    """The compact screening row of a fingerprint: ``K / rms(K)``, flattened, float16."""
    k64 = np.asarray(k, np.float64).ravel()
    rms = float(np.sqrt(np.mean(k64 * k64)))
    return (k64 / rms).astype(SCREEN_DTYPE)


def geometry_name(rows: int, cols: int, clip: tuple[int, int] | None) -> str:
    return f"{rows}x{cols}-" + ("full" if clip is None else f"clip{clip[0]}x{clip[1]}")


def screen_path(library: str, name: str) -> str:
    return os.path.join(library, SCREEN_DIR, f"{name}.f16")


def append_screen_rows(library: str, name: str, rows: Sequence[np.ndarray], first_free: int) -> list[int]:
    """Write ``rows`` (one per fingerprint, float16, all of one length) at row ``first_free`` of the geometry's
    screening file (rows past the catalogued ones, left by an interrupted add, are written over) and fsync;
    returns their row numbers."""
    path = screen_path(library, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    width = rows[0].size * np.dtype(SCREEN_DTYPE).itemsize
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, first_free * width)  # drop what an interrupted add left (nothing points there)
        os.lseek(fd, first_free * width, os.SEEK_SET)
        for row in rows:
            data = np.ascontiguousarray(row, SCREEN_DTYPE).tobytes()
            while data:
                data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return list(range(first_free, first_free + len(rows)))


def screen_rows(library: str, name: str, pixels: int, count: int) -> np.ndarray:
    """The first ``count`` screening rows of a geometry, memory-mapped read-only ``(count, pixels)`` float16."""
    path = screen_path(library, name)
    need = count * pixels * np.dtype(SCREEN_DTYPE).itemsize
    size = os.path.getsize(path) if os.path.exists(path) else -1
    if size < need:
        raise LibraryError(f"{path}: the screening file holds {max(size, 0)} bytes, the catalogue needs {need}; "
                           f"run 'camid library verify'")
    return np.memmap(path, dtype=SCREEN_DTYPE, mode="r", shape=(count, pixels))


def read_screen_rows(path: str, pixels: int, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``index`` (sorted) of a screening file as float16 ``(len(index), pixels)``, read run by run straight
    into ``out`` (a reused buffer; a memory map would keep the pages it touched resident)."""
    width = pixels * np.dtype(SCREEN_DTYPE).itemsize
    out = np.empty((len(index), pixels), SCREEN_DTYPE) if out is None else out[:len(index)]
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    with open(path, "rb", buffering=0) as handle:
        for run in np.split(np.arange(len(index)), breaks):
            if not run.size:
                continue
            handle.seek(int(index[run[0]]) * width)
            view = memoryview(out[run[0]:run[-1] + 1]).cast("B")
            got = 0
            while got < len(view):
                n = handle.readinto(view[got:])
                if not n:
                    raise LibraryError(f"{path}: rows {index[run[0]]}..{index[run[-1]]} are past the end of the file; "
                                       f"run 'camid library verify'")
                got += n
    return out


def screen_row_mismatches(rows: np.ndarray, expected: Sequence[str]) -> list[int]:
    """Positions of the screening rows (float16, as just read) whose SHA-256 is not the catalogue's
    ``expected``; those rows are zeroed, so that they score nothing (a zero row's screen z is 0)."""
    def digest(i: int) -> str:
        return row_sha256(rows[i])

    threads = max(1, min(8, os.cpu_count() or 1, len(expected)))
    if threads == 1:
        found = [digest(i) for i in range(len(expected))]
    else:  # hashlib releases the GIL on large buffers: the rows are hashed on every CPU, as they are converted
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            found = list(pool.map(digest, range(len(expected))))
    bad = [i for i, (got, want) in enumerate(zip(found, expected)) if got != want]
    for i in bad:
        rows[i] = 0
    return bad


def row_sha256(row: np.ndarray) -> str:
    """The SHA-256 of one screening row as stored (float16 samples, C order): the one definition the catalogue,
    the screening read, verify and link share."""
    return hashlib.sha256(np.ascontiguousarray(row, SCREEN_DTYPE)).hexdigest()


def camera_fingerprint(library: str, row: dict[str, Any]) -> CameraFingerprint:
    """The PCE fingerprint of a catalogued camera, under its library name, its arrays checked against the
    catalogue's hash (for the confirmation, which scores it exactly as ``identify`` would)."""
    blob = read_blob(library, row["arrays_sha256"])
    where = blob_path(library, row["arrays_sha256"])
    k = k_from_blob(blob, where)
    clip = (row["clip_rows"], row["clip_cols"]) if row["clip_rows"] else None
    if tuple(k.shape) != tuple(clip or (row["rows"], row["cols"])):
        raise LibraryError(f"{where}: fingerprint is {k.shape}, the catalogue says {clip or (row['rows'], row['cols'])}")
    text = row["metadata_json"] if "metadata_json" in row else metadata_json(library, row["id"])
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != row["metadata_sha256"]:  # read after the snapshot
        raise LibraryError(f"{library}: the metadata of camera {row['name']!r} differs from its recorded SHA-256; "
                           f"run 'camid library verify'")
    meta = json.loads(text)
    return CameraFingerprint(camera=row["name"], methods=("pce",), arrays={"k": k}, clips={"pce": clip},
                             source_shape=(int(row["rows"]), int(row["cols"])), params=meta.get("params", {}),
                             references=meta.get("references", []), software=meta.get("software", {}),
                             arrays_sha256=row["arrays_sha256"])

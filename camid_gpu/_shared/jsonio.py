"""Files camid writes and reads back: SHA-256 of a file, JSON documents (atomic), JSON Lines, JSON numbers.

Every JSON document camid writes (manifests, fingerprint metadata, evaluations, ``--json`` outputs) goes
through :func:`write_json`: ``indent=1``, sorted keys, a final newline, and an atomic replace (a crash
leaves the old file or the new one, never half of one).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

from camid_gpu._shared.files import atomic_write, open_regular


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a regular file, read in chunks, opened read-only (a FIFO or device raises OSError)."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_or_none(path: str | os.PathLike) -> str | None:
    """:func:`sha256_file`, or None when the file cannot be read."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def write_json(path: str | os.PathLike, data: Any) -> str:
    """Write ``data`` as JSON (``indent=1``, sorted keys, final newline), atomically; return the path."""
    path = os.fspath(path)
    with atomic_write(path, "w") as handle:  # a failure half-way leaves the old file and no temporary
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return path


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete records (lines ending in a newline) of a JSON Lines file."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip() and line.endswith("\n")]


def json_number(x: Any) -> float | None:
    """A score for the records: finite floats rounded to 6 significant digits (stable, readable); else None."""
    v = float(x)
    return float(f"{v:.6g}") if math.isfinite(v) else None


def json_float(x: Any) -> float | None:
    """A float kept exactly (statistics, covariances, memberships); NaN and infinities become None."""
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x

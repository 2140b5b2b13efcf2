"""The residual rows of a clustering run: one append-only float32 file per geometry group
(``RUN/residuals/<group>.f32``), read back through a memory map."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from camid_gpu._shared.files import writing


class RowStore:
    """Append-only float32 rows of one group in ``RUN/residuals/<group>.f32`` (read through a memory map)."""

    def __init__(self, path: str, pixels: int, rows_kept: int):
        self.path, self.pixels = path, pixels
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = "r+b" if os.path.exists(path) else "w+b"
        with open(path, mode) as handle:  # rows past the last record are from an interrupted chunk: drop them
            handle.truncate(rows_kept * pixels * 4)
        self.count = rows_kept

    def append(self, rows: np.ndarray) -> list[int]:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.shape[1] != self.pixels:
            raise ValueError(f"{self.path}: rows of {rows.shape[1]} pixels, store holds {self.pixels}")
        with writing(self.path), open(self.path, "ab") as handle:  # a full disk names the file
            handle.write(rows.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        first = self.count
        self.count += rows.shape[0]
        return list(range(first, self.count))

    def read(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.zeros((0, self.pixels), np.float32)
        mm = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.count, self.pixels))
        return np.array(mm[start:stop])


def _stores_from_records(run_dir: str, records: list[dict[str, Any]]) -> dict[str, RowStore]:
    stores: dict[str, RowStore] = {}
    kept: dict[str, tuple[int, int]] = {}
    for r in records:
        if not r.get("error"):
            last = max(r["rows"]) + 1
            pixels = r["region"][0] * r["region"][1]
            kept[r["group"]] = (max(kept.get(r["group"], (0, 0))[0], last), pixels)
    for name, (rows, pixels) in kept.items():
        stores[name] = RowStore(os.path.join(run_dir, "residuals", f"{name}.f32"), pixels, rows)
    return stores

"""Issue 15 items 5-9, 11, 12, 14, 15 and issue 18 item 8: the last hostile-input defects, resource limits,
signals at pool start-up, API edges, spreadsheet-safe CSV, and inputs chosen by content (HEIC, DNG, hidden)."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from camid_gpu.cli.output import write_csv


# -- 15.15: CSV cells a spreadsheet would run ----------------------------------------------------------
def test_csv_cells_that_look_like_formulas_are_neutralised(tmp_path):
    records = [
        {"path": "=HYPERLINK(\"http://x\").jpg", "error": {"kind": "decode", "reason": "+bad"}},
        {"path": "-2+3.jpg", "sha256": "ab", "rotation": 0,
         "pce": {"decision": "@cam", "scores": {"@cam": {"pce": 75.0, "ncc": 0.1, "log10_p_fa": -12.5}}}},
    ]
    out = tmp_path / "run.csv"
    write_csv(str(out), records)
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[1][0] == "'=HYPERLINK(\"http://x\").jpg"
    assert rows[1][10] == "'+bad"
    assert rows[2][0] == "'-2+3.jpg"
    assert rows[2][2] == "'@cam" and rows[2][6] == "'@cam"
    assert rows[2][5] == "-12.5"  # numbers stay numbers
    for row in rows:
        assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in row if not _number(cell))


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


# -- 15.14: the API checks levels against the image size ---------------------------------------------
def test_extract_residual_checks_levels_before_allocating():
    from camid_gpu import extract_residual
    from camid_gpu.config import Params

    x = np.full((1, 64, 64), 100, np.uint8)
    with pytest.raises(ValueError, match="levels"):
        extract_residual(x, levels=20, backend="numpy")
    with pytest.raises(ValueError, match="at least 128 pixels"):
        extract_residual(x, levels=7, backend="numpy")
    with pytest.raises(ValueError, match="from 1 to 8"):
        Params(levels=9)
    assert extract_residual(x, levels=6, backend="numpy").shape == (1, 64, 64)

"""CSV cells that a spreadsheet cannot run: text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is written with a leading ``'`` (OWASP's "CSV injection" advice).

File names and camera names come from the evidence and are attacker-controlled: a file called
``=HYPERLINK("http://...")`` would otherwise become a live formula when the CSV is opened. Numbers (int,
float) are written as numbers: ``-12.8`` is a value, not a formula, and stays usable as one.
"""
from __future__ import annotations

import csv
from typing import IO, Any, Iterable

#: leading characters a spreadsheet reads as the start of a formula (or that hide one: tab, carriage return)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text that a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class SafeCsvWriter:
    """``csv.writer`` whose every text cell goes through :func:`safe_cell`."""

    def __init__(self, handle: IO[str]):
        self._writer = csv.writer(handle)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(v) for v in row])

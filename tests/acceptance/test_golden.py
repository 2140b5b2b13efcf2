"""The golden run (tests/golden/record.py) gives the same decisions and numbers as when it was recorded.

Decisions, names and counts must be equal; floats agree to a relative 1e-6. Byte identity of the outputs
is checked on the recording machine with ``python tests/golden/record.py --check-bytes``.
"""
from __future__ import annotations

import importlib.util
import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = importlib.util.spec_from_file_location("golden_record", os.path.join(TESTS, "golden", "record.py"))
record = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(record)


def test_golden_run_unchanged():
    problems = record.check(check_bytes=False)
    assert not problems, "\n".join(problems[:20])


def test_differences_reports_decisions_and_tolerance():
    assert record.differences({"a": 1.0, "d": "C01"}, {"a": 1.0 + 1e-9, "d": "C01"}) == []
    assert record.differences({"a": 1.0}, {"a": 1.001}) == ["/a: 1.001 != 1.0"]
    assert record.differences({"d": "C01"}, {"d": "C02"}) == ["/d: 'C02' != 'C01'"]
    assert record.differences({"n": 3}, {"n": 3.0})  # an int that became a float is a change

"""The ``camid`` command line: :mod:`.parser` (arguments, defaults from ``config``), :mod:`.commands` (one thin
function per command) and :mod:`.output` (error lines, text tables, CSV).

Exit codes: 0 success; 1 usage or fatal error; 2 ``verify`` failed; 3 some files had errors; 130 interrupted;
143 terminated.

Importing this package imports none of the commands: ``camid --version`` answers before NumPy is loaded, and a
command's modules (NumPy, then SciPy, Pillow, torch, matplotlib, rich where it uses them) load when it runs.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Sequence

from camid_gpu._version import __version__

#: public name -> the module that defines it (imported on first use)
_EXPORTS = {"EXIT_FAIL": "camid_gpu.cli.exits", "EXIT_OK": "camid_gpu.cli.exits",
            "EXIT_PARTIAL": "camid_gpu.cli.exits", "EXIT_VERIFY_FAILED": "camid_gpu.cli.exits",
            "build_parser": "camid_gpu.cli.parser"}

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_PARTIAL", "EXIT_VERIFY_FAILED", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The ``camid`` command (the console script); ``argv`` without the program name (default ``sys.argv[1:]``)."""
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:  # as argparse would say it, at once
        print(f"camid {__version__}")
        return 0
    from camid_gpu.cli.commands import main as run

    return run(argv)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'camid_gpu.cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""The ``camid`` command line: :mod:`.parser` (arguments, defaults from ``config``), :mod:`.commands` (one thin
function per command) and :mod:`.output` (error lines, text tables, CSV).

Exit codes: 0 success; 1 usage or fatal error; 2 ``verify`` failed; 3 some files had errors; 130 interrupted;
143 terminated.
"""
from camid_gpu.cli.commands import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, EXIT_VERIFY_FAILED, main
from camid_gpu.cli.parser import build_parser

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_PARTIAL", "EXIT_VERIFY_FAILED", "build_parser", "main"]

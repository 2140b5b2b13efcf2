"""The ``camid`` command line: :mod:`.commands` (the parser and one function per command).

Exit codes: 0 success; 1 usage or fatal error; 2 ``verify`` found changes; 3 some files had errors.
"""
from camid_gpu.cli.commands import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, EXIT_VERIFY_FAILED, build_parser, main

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_PARTIAL", "EXIT_VERIFY_FAILED", "build_parser", "main"]

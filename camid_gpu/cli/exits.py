"""The exit codes of ``camid`` (see :mod:`camid_gpu.cli.commands`).

0 success; 1 usage or fatal error; 2 ``verify`` failed, or ``report`` read files that differ from the run's
manifest; 3 completed, but some files had errors; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""
EXIT_OK, EXIT_FAIL, EXIT_VERIFY_FAILED, EXIT_PARTIAL = 0, 1, 2, 3
#: 128 + the signal number, as a shell reports a process killed by it
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143

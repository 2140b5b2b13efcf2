"""Ctrl-C and SIGTERM that cannot be lost: the signal handlers record what arrived, and raise it at once except
inside :func:`deferred` sections, which raise it when they end.

Why: a Python signal handler runs between two bytecodes of the main thread, wherever that is. While a
worker pool starts, that can be inside ``os.fork``'s at-fork callbacks (logging's lock hooks): an exception
raised there is printed as "Exception ignored" and dropped, and the run went on and exited 0 after a
SIGTERM. Code that forks runs in :func:`deferred`; :func:`check` raises anything recorded and not yet
raised (a second net, e.g. for the command's end).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

_pending: list[type[BaseException]] = []  # what arrived and has not been raised yet (the first one counts)
_depth = 0  # > 0 inside deferred()


def request(exc_type: type[BaseException]) -> None:
    """Called by a signal handler: raise ``exc_type`` now, or record it while a :func:`deferred` section runs."""
    if not _pending:
        _pending.append(exc_type)
    if _depth == 0:
        check()


def check() -> None:
    """Raise the interruption recorded and not yet raised, if any."""
    if _pending:
        exc_type = _pending.pop()
        _pending.clear()
        raise exc_type()


def pending() -> type[BaseException] | None:
    """The interruption recorded and not yet raised (None when none), without raising it."""
    return _pending[0] if _pending else None


def clear() -> None:
    _pending.clear()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM while the body runs (e.g. while processes fork); raise what arrived when it ends."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if _depth == 0:
        check()

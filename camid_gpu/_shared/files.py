"""The two ways camid touches files: read only regular files, and write every file atomically.

- :func:`open_regular` opens a path for reading only if it is a regular file (checked on the open
  descriptor, so a FIFO or device swapped in after a check is still refused): a FIFO named ``.jpg``
  would block the run forever and ``/dev/zero`` would never end.
- :func:`atomic_write` writes through a temporary file in the same folder, flushed and fsync'ed, then
  renamed over the target: a crash or a full disk leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from typing import IO, Iterator


#: the errors of a full disk or an exhausted quota: what was written is kept, the same command with --resume goes on
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_WRITE_ERRNOS = NO_SPACE_ERRNOS | {errno.EFBIG, errno.EROFS}


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Name ``path`` in a write error (a full disk, a quota, a file too large, a read-only file system) raised
    while it is written: a write, flush or fsync error (a full disk's bare "[Errno 28] No space left on
    device") names no file of its own."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno in _WRITE_ERRNOS:
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from exc
        raise


class NotRegularFileError(OSError):
    """The path exists but is not a regular file (a FIFO, a device, a socket, a folder)."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, from its ``st_mode`` (for error messages)."""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike) -> IO[bytes]:
    """Open ``path`` read-only in binary mode; raise :class:`NotRegularFileError` unless it is a regular file.

    ``O_NONBLOCK`` keeps the open of a FIFO from waiting for a writer; the type is checked with ``fstat`` on
    the descriptor that is then read (no window between a check and the open).
    """
    fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{os.fspath(path)}: is {file_kind(mode)}, not a regular file; only regular "
                                      f"files are read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike) -> bytes:
    """All bytes of a regular file (see :func:`open_regular`)."""
    with open_regular(path) as handle:
        return handle.read()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """``with atomic_write(path) as handle:`` write ``path`` atomically (``mode`` "w" text UTF-8, or "wb").

    The folder is created if needed. The temporary file ``.tmp-*`` lives beside the target and is removed on any error, so nothing half
    written is ever left under the target's name.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with writing(path):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
        try:
            # mkstemp creates 0600 whatever the umask: give the file the mode open() would (a colleague in the
            # lab's group could not read the evidence outputs)
            os.fchmod(fd, 0o666 & ~current_umask())
            kwargs = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
            with os.fdopen(fd, mode, **kwargs) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
    _fsync_folder(folder)


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else set and reset."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> str:
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return os.fspath(path)


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (best effort: not every file system lets a folder be fsync'ed)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

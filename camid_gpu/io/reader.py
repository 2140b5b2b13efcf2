"""Reading an evidence file: read-only, regular files only, within the file-size limit, hashed whole, and for
JPEG and PNG only the image's own bytes kept in memory.

The SHA-256 and the size are always of the whole file. A JPEG is kept up to its end-of-image marker and a PNG
up to its IEND chunk (found while the file streams through in 1 MiB blocks): bytes after them are hashed and
counted, never held, so a small JPEG padded to 900 MB costs a block of memory, not the file (it cost 2.3 times
the file). The decoders never read past those markers, so the pixels are the same. Other formats (TIFF, BMP,
HEIF: their data may lie anywhere in the file) are read whole, once, into one buffer.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat

from camid_gpu._shared.files import file_kind
from camid_gpu.errors import ImageDecodeError, ImageNotFoundError, ImageUnreadableError

#: bytes read at a time while a JPEG or PNG streams through
READ_BLOCK = 1 << 20


class ImageBytes(bytes):
    """An image's own bytes (a prefix of its file) with the whole file's ``file_sha256`` and ``file_size``, and
    ``trailing``: how many bytes after the image were hashed but not kept."""

    file_sha256: str
    file_size: int
    trailing: int


def file_digest(data: bytes) -> tuple[str, int]:
    """(SHA-256, size) of the file ``data`` was read from (the whole file, even when only its image was kept)."""
    if isinstance(data, ImageBytes):
        return data.file_sha256, data.file_size
    return hashlib.sha256(data).hexdigest(), len(data)


def read_evidence(path: str, max_file_bytes: int) -> bytes:
    """The file's bytes (an :class:`ImageBytes` prefix for a JPEG or PNG with bytes after its end), after
    checking that it is a regular file within the size limit.

    Opened with O_NONBLOCK so that opening a FIFO cannot wait for a writer; the type and size come from ``fstat``
    on the open descriptor (no race with a rename), before anything is read. Symbolic links to regular files are
    followed.
    """
    fd = _open(path)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageUnreadableError(path, "is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageUnreadableError(path, f"is {file_kind(st.st_mode)}, not a regular file; not read")
        if st.st_size > max_file_bytes:
            raise ImageDecodeError(path, f"file is {st.st_size} bytes, over the file-size limit of {max_file_bytes} "
                                         f"bytes (raise it with --max-file-size); not read")
        head = os.read(fd, 16)
        if head[:3] == b"\xff\xd8\xff":
            return _stream(path, fd, head, _JpegEnd(), max_file_bytes)
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            return _stream(path, fd, head, _PngEnd(), max_file_bytes)
        return _whole(path, fd, st.st_size, max_file_bytes)
    except OSError as exc:
        raise ImageUnreadableError(path, f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _open(path: str) -> int:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageUnreadableError(path, "dangling symbolic link") from None
        raise ImageNotFoundError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageUnreadableError(path, "is a directory, not an image file") from None
    except PermissionError:
        raise ImageUnreadableError(path, "permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageUnreadableError(path, "symbolic link loop") from None
        raise ImageUnreadableError(path, f"cannot be opened ({exc.strerror or exc})") from None


def _grew(path: str, limit: int) -> ImageDecodeError:
    return ImageDecodeError(path, f"file grew past the file-size limit of {limit} bytes while it was read")


def _whole(path: str, fd: int, size: int, limit: int) -> bytes:
    """The whole file in one buffer: one read from the start (``os.read`` makes the bytes object in place), then
    any more in blocks (a file that grows while it is read is still bounded, at most one byte past the limit)."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, min(size, limit) + 1)
    if len(data) > limit:
        raise _grew(path, limit)
    more = os.read(fd, min(READ_BLOCK, limit + 1 - len(data)))
    if not more:
        return data
    chunks, total = [data, more], len(data) + len(more)
    while more and total <= limit:
        more = os.read(fd, min(READ_BLOCK, limit + 1 - total))
        chunks.append(more)
        total += len(more)
    if total > limit:
        raise _grew(path, limit)
    return b"".join(chunks)


def _stream(path: str, fd: int, head: bytes, finder, limit: int) -> bytes:
    """Hash the whole file block by block and keep the bytes up to the image's end (``finder``)."""
    digest = hashlib.sha256(head)
    kept = bytearray(head)
    total, end = len(head), None
    while True:
        block = os.read(fd, min(READ_BLOCK, limit + 1 - total))
        if not block:
            break
        total += len(block)
        if total > limit:
            raise _grew(path, limit)
        digest.update(block)
        if end is None:
            kept += block
            end = finder.feed(kept)
            if end is not None:
                del kept[end:]
    data = ImageBytes(kept)
    data.file_sha256, data.file_size, data.trailing = digest.hexdigest(), total, total - len(kept)
    return data


class _JpegEnd:
    """Where a JPEG's end-of-image marker ends, from the bytes read so far (None until it is in them).

    Marker segments are skipped by their lengths (an EXIF thumbnail's own markers are inside one); in
    entropy-coded data a 0xFF is followed by 0x00 (a stuffed byte) or a restart marker, so the first other
    marker ends the scan. A stream that does not parse is kept whole: the decoders then judge it.
    """

    def __init__(self):
        self.pos, self.in_scan, self.failed = 2, False, False

    def feed(self, buf: bytearray) -> int | None:
        n, pos = len(buf), self.pos
        while not self.failed:
            if self.in_scan:
                i = buf.find(b"\xff", pos)
                if i < 0 or i + 1 >= n:
                    pos = n if i < 0 else i
                    break
                code = buf[i + 1]
                if code == 0x00 or 0xD0 <= code <= 0xD7 or code == 0xFF:
                    pos = i + (1 if code == 0xFF else 2)
                    continue
                self.in_scan, pos = False, i
                continue
            if pos + 2 > n:
                break
            if buf[pos] != 0xFF:
                self.failed = True
                break
            code = buf[pos + 1]
            if code == 0xFF:  # fill byte
                pos += 1
            elif code == 0xD9:
                return pos + 2
            elif code == 0x01 or 0xD0 <= code <= 0xD7:
                pos += 2
            elif pos + 4 > n:
                break
            else:
                length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                if length < 2:
                    self.failed = True
                    break
                self.in_scan, pos = code == 0xDA, pos + 2 + length
        self.pos = pos
        return None


class _PngEnd:
    """Where a PNG's IEND chunk ends, from the bytes read so far (None until it is in them)."""

    def __init__(self):
        self.pos = 8

    def feed(self, buf: bytearray) -> int | None:
        n, pos = len(buf), self.pos
        while pos + 8 <= n:
            length = int.from_bytes(buf[pos:pos + 4], "big")
            end = pos + 12 + length
            if buf[pos + 4:pos + 8] == b"IEND":
                return end if end <= n else None
            pos = end
        self.pos = pos
        return None

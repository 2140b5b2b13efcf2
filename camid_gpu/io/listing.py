"""Input listing: files and folders expanded (recursively, sorted) into image paths, with every file that is
not used listed as skipped with its reason; and file names made safe to print.

Nothing under an input folder vanishes silently: a file is either an image path of the run or a
:class:`Skipped` entry (hidden, not an image by suffix or content, a symbolic link to a folder already
searched, the same file given twice). Formats are recognised by content: a file with an image suffix is
always an input (its decode error is reported), any other file is one when its leading bytes are an image
format camid reads. Paths are ``str``; a name that is not valid UTF-8 keeps its raw bytes as
surrogate escapes (``os.fsdecode``), so JSON keeps it losslessly and :func:`printable` shows it.
"""
from __future__ import annotations

import contextlib
import os
import stat
import unicodedata
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterator

from camid_gpu._shared.files import file_kind
from camid_gpu.io.decode import ALLOWED_FORMATS, describe_content, sniff_format
from camid_gpu.io.video import VIDEO_SUFFIXES, sniff_video

#: suffixes of the formats camid reads: a file with one is always an input (an error later when its content is
#: not an image); a file without one is an input when its leading bytes are an image format camid reads
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".hif", ".dng")
#: bytes read from a file without an image suffix to recognise its format
SNIFF_BYTES = 64

_include_hidden: ContextVar[bool] = ContextVar("camid_include_hidden", default=False)


@contextlib.contextmanager
def including_hidden(include: bool = True) -> Iterator[None]:
    """Within the block, :func:`scan_inputs` also reads hidden files and searches hidden folders (names starting
    with '.'), as ``--include-hidden`` asks; outside, it lists them as skipped."""
    token = _include_hidden.set(include)
    try:
        yield
    finally:
        _include_hidden.reset(token)


@dataclass(frozen=True)
class Skipped:
    """A file or folder under the inputs that is not analysed, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class Listing:
    """The images of a run (input order, each file once) and everything else found, with reasons."""

    images: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"found": len(self.images) + len(self.skipped), "images": len(self.images),
                "skipped": len(self.skipped)}


def scan_inputs(*paths: str | os.PathLike) -> Listing:
    """Expand files and folders (recursively, sorted) into image paths; list the rest as skipped.

    Files named explicitly are kept whatever their suffix (they are errors later if not images). A
    folder named like an image (``x.jpg/``) is listed as an entry, not walked, so that it is reported
    as an error instead of vanishing from the run. The same file reached twice (given twice, through
    two spellings, a symbolic link or a hard link) is analysed once; the later mentions are skipped
    with a reason naming the first. Symbolic links to folders are followed, as the named folders
    themselves are (references and disputed images alike); a real folder is searched once per input
    (plain subfolders before links), so a link loop ends, and a link to a folder already searched is
    skipped with that reason.
    """
    listing = Listing()
    seen: dict[Any, str] = {}

    def add(path: str) -> None:
        key = file_identity(path)
        if key in seen:
            listing.skipped.append(Skipped(path, f"duplicate: the same file as {seen[key]}, analysed once"))
            return
        seen[key] = path
        listing.images.append(path)

    for p in paths:
        p = os.fspath(p)
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        if os.path.isdir(p) and not _looks_like_image(p):
            searched: set[str] = set()
            for root, dirs, files in os.walk(p, followlinks=True, onerror=lambda exc: listing.skipped.append(
                    Skipped(exc.filename or p, f"folder cannot be listed ({exc.strerror or exc})"))):
                real = os.path.realpath(root)
                if real in searched:  # a link to a folder already searched: a loop, or a second way in
                    listing.skipped.append(Skipped(root, "symbolic link to a folder already searched "
                                                         f"({printable(real)}); not searched again"))
                    dirs[:] = []
                    continue
                searched.add(real)
                dirs.sort()
                walked = []
                for d in dirs:
                    full = os.path.join(root, d)
                    if _looks_like_image(d):
                        continue  # listed below as an entry
                    if d.startswith(".") and not _include_hidden.get():
                        listing.skipped.append(Skipped(full, "hidden folder (name starts with '.'); not searched "
                                                             "(--include-hidden searches it)"))
                    else:
                        walked.append(d)
                names = sorted(files + [d for d in dirs if _looks_like_image(d)])
                # plain subfolders first: a link into one of them is then the second way in, and skipped
                dirs[:] = sorted(walked, key=lambda d: os.path.islink(os.path.join(root, d)))
                for name in names:
                    full = os.path.join(root, name)
                    reason = _skip_reason(name, full)
                    if reason:
                        listing.skipped.append(Skipped(full, reason))
                    else:
                        add(full)
        else:
            add(p)
    return listing


def list_images(*paths: str | os.PathLike) -> list[str]:
    """The image paths of :func:`scan_inputs` (the skipped entries are dropped: use that to report them)."""
    return scan_inputs(*paths).images


def file_identity(path: str) -> Any:
    """The file a path names: (device, inode) when it exists, else the normalised absolute path (what makes
    two spellings, links or hard links one input)."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return ("path", os.path.normcase(os.path.abspath(path)))


def _skip_reason(name: str, full: str) -> str | None:
    """Why a file found in a folder is not an input, or None. Hidden files are skipped unless
    :func:`including_hidden`; a file with an image suffix is an input; any other is one when its content is an
    image format camid reads (a JPEG renamed ``.heic`` or with no suffix is read)."""
    if name.startswith(".") and not _include_hidden.get():
        return "hidden file (name starts with '.'; --include-hidden reads it)"
    if name.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES):
        return None
    head, why = _head(full)
    if head is not None and (sniff_format(head) or sniff_video(head)):
        return None
    suffix = os.path.splitext(name)[1]
    said = f"suffix {printable(suffix)}" if suffix else "no suffix"
    what = why or f"the content looks like: {describe_content(head)}"
    return f"not an image camid reads ({said}; {what}; camid reads {', '.join(ALLOWED_FORMATS)})"


def _head(path: str) -> tuple[bytes | None, str | None]:
    """The first SNIFF_BYTES of a regular file (opened read-only and non-blocking: a FIFO is never waited on),
    or (None, why not)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return None, f"cannot be opened ({exc.strerror or exc})"
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return None, f"is {file_kind(mode)}, not a regular file"
        return os.read(fd, SNIFF_BYTES), None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    finally:
        os.close(fd)


def _looks_like_image(name: str) -> bool:
    base = os.path.basename(name.rstrip("/"))
    return (base.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            and (not base.startswith(".") or _include_hidden.get()))


def printable(text: Any) -> str:
    """``text`` safe for a terminal, a CSV cell or a text log: control characters, escape sequences,
    line and paragraph separators and undecodable bytes (surrogate escapes) become ``\\xNN``,
    ``\\n``-style or ``\\uNNNN`` escapes; printable text, including non-ASCII letters, is kept."""
    text = str(text)
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogate escape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Cs", "Co"):
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)

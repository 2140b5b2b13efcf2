"""Exception types. Every error about an input file carries the path and the reason."""
from __future__ import annotations

import os


class CamidError(Exception):
    """Base class of every error camid raises on purpose."""


class MissingExtraError(CamidError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str, feature: str):
        self.package, self.extra, self.feature = package, extra, feature
        super().__init__(
            f"{feature} needs the optional package {package!r}, which is not installed: "
            f"pip install 'camid_gpu[{extra}]'"
        )


class ImageError(CamidError):
    """A problem with one input image. ``path`` and ``reason`` are kept for per-file error reports."""

    kind = "image-error"

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # decode workers send errors back to the parent process: keep (path, reason) through pickle
        return (type(self), (self.path, self.reason))


class ImageNotFoundError(ImageError, FileNotFoundError):
    kind = "missing"


class ImageUnreadableError(ImageError):
    """Exists but cannot be opened (permissions, a directory, a symlink loop)."""

    kind = "unreadable"


class ImageDecodeError(ImageError):
    """Not an image, truncated, or in a form camid does not accept (e.g. NaN pixels, huge declared size)."""

    kind = "decode"


class ImageTooSmallError(ImageError):
    """Smaller than the requested centre clipping."""

    kind = "too-small"


class ImageNoSignalError(ImageError):
    """The image's noise residual is (numerically) zero: a constant or saturated frame, nothing to compare."""

    kind = "no-signal"


class FingerprintError(CamidError):
    """A fingerprint cannot be built, loaded or used."""


class FingerprintMismatchError(FingerprintError):
    """A stored fingerprint was made with parameters that differ from the ones requested."""


class ImageContentError(ImageError):
    """Decodes, but holds nothing usable for PRNU (constant, saturated or too dark)."""

    kind = "no-usable-content"


class ScoreError(ImageError):
    """A score came out non-finite (NaN or infinite): never a decision, an error for that image."""

    kind = "non-finite-score"


class RunFolderError(CamidError):
    """A run folder cannot be used as asked: locked by another process, or a resume that does not match."""


class OutputPathError(CamidError):
    """An output path would overwrite evidence (an input file, or a file inside an input folder), an existing
    output without ``--overwrite``, or cannot be written."""


class LibraryError(CamidError):
    """A fingerprint library cannot be used as asked: not a library, a newer schema, a refused add, a damaged
    catalogue or array."""

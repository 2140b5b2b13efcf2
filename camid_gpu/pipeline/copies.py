"""One photo is one piece of evidence, whatever its container (issue 23 items 4 and 5).

- :func:`pixels_sha256`: the SHA-256 of an image's decoded pixels (shape, sample type and samples): the same
  photo saved as JPEG-decoded PNG, BMP or TIFF has one pixel hash where its file hashes differ. A fingerprint
  folds a camera's references with the same pixels (used once, said in its error entries), and a clustering
  run folds images with the same pixels like byte-identical files.
- :class:`ReferenceCheck` refuses, naming both files, a reference of one camera that is another camera's photo:
  the same pixels as another camera's reference, or a residual that correlates with another camera's references
  far above the rest of its own folder (another camera's image re-encoded, which no hash can see). The residuals
  are those the fingerprint is built from, decimated to their central ``REF_CHECK_SIDE`` square and kept in a
  temporary file, so memory holds one mean square per camera, not one per reference.
"""
from __future__ import annotations

import hashlib
import tempfile
from typing import Any

import numpy as np

from camid_gpu.backend.base import to_host
from camid_gpu.config import REF_CHECK_SIDE, REF_CROSS_RATIO, REF_CROSS_SIGMAS
from camid_gpu.errors import CamidError
from camid_gpu.pipeline.records import error_record


def pixels_sha256(pixels: Any) -> str:
    """SHA-256 of decoded pixels: shape, sample type and samples (C order)."""
    array = np.ascontiguousarray(to_host(pixels))
    digest = hashlib.sha256(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def central_square(residuals: np.ndarray, side: int = REF_CHECK_SIDE) -> np.ndarray:
    """(n, s, s) float32 normalised central squares (zero mean, unit norm) of residuals ``(n, h, w)``."""
    h, w = residuals.shape[-2:]
    s = min(side, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = np.asarray(residuals[:, top:top + s, left:left + s], dtype=np.float64)
    square = square - square.mean(axis=(1, 2), keepdims=True)
    norms = np.sqrt((square * square).sum(axis=(1, 2), keepdims=True))
    return (square / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def reference_label(info: Any) -> str:
    """One reference's name: its file, and for a frame of a reference video which frame (the frames of one video
    share the container's path and SHA-256, yet each is its own reference)."""
    frame = getattr(info, "frame", None)
    if isinstance(frame, dict) and "video_frame" in frame:
        return f"{info.path} (frame {frame['video_frame']})"
    return info.path


class CameraCopies:
    """One camera's references as a fingerprint reads them: a photo met again (the same decoded pixels) is a copy
    (:meth:`copy_of` gives its error entry: used once); each photo's pixel hash, and with a ``check`` its
    residual's central square (:meth:`keep`, the fingerprint accumulator's callback), go to the run's check."""

    def __init__(self, camera: str, check: "ReferenceCheck | None" = None):
        self.camera, self.check = camera, check
        self.first_with: dict[str, str] = {}  # pixel hash -> the first reference with those pixels
        self.digest_of: dict[str, str] = {}   # reference -> its pixel hash (the references kept)
        self.squares: list[np.ndarray] = []

    def copy_of(self, path: str, pixels: Any) -> dict[str, Any] | None:
        digest = pixels_sha256(pixels)
        if digest in self.first_with:
            return error_record(path, "same-pixels", f"the same decoded pixels as {self.first_with[digest]} (one "
                                                     f"photo in two files): used once")
        self.first_with[digest] = path
        self.digest_of[path] = digest
        if self.check is not None:
            self.check.add_pixels(self.camera, path, digest)
        return None

    def pixel_hash(self, path: str) -> str | None:
        return self.digest_of.get(path)

    @property
    def keep(self) -> Any:
        """The callback that keeps residuals' central squares (None without a check: nothing to keep)."""
        return None if self.check is None else (lambda residuals: self.squares.append(central_square(
            to_host(residuals))))

    def built(self, paths: list[str]) -> None:
        """The fingerprint is built from ``paths`` (in the order their residuals were kept)."""
        if self.check is not None and self.squares:
            self.check.add_residuals(self.camera, paths, np.concatenate(self.squares))


class ReferenceCheck:
    """The references of every camera of a fingerprint run, checked against the other cameras'."""

    def __init__(self, stored: dict[str, tuple[str, str]] | None = None) -> None:
        """``stored``: pixel hash -> (camera, path) of the references of cameras already in the store
        (``fingerprint --add``): a new camera with one of those photos is refused; the stored one stays."""
        self.owner: dict[str, tuple[str, str]] = dict(stored or {})  # pixel hash -> (camera, path)
        self.stored = {camera for camera, _ in self.owner.values()}
        self.refused: dict[str, str] = {}  # camera built before its reference's copy was met -> why
        self.sums: dict[str, np.ndarray] = {}  # camera -> sum of its normalised squares
        self.rows: list[tuple[str, str, int]] = []  # (camera, path, row in the file)
        self._file: Any = None  # a temporary file, opened with the first residuals
        self._shape: tuple[int, int] | None = None

    def add_pixels(self, camera: str, path: str, digest: str) -> None:
        """One reference's pixel hash; CamidError naming both files when another camera has the same pixels."""
        first = self.owner.setdefault(digest, (camera, path))
        if first[0] != camera:  # which folder is wrong is not known: both cameras are refused
            who = (f"camera {camera!r} is refused ({first[0]!r} is in the store already)" if first[0] in self.stored
                   else "both are refused")
            reason = (f"cameras {first[0]!r} and {camera!r} have references with the same decoded pixels: {first[1]} "
                      f"and {path} (one photo, two files); one image cannot be evidence of two cameras: {who}; "
                      f"remove the copy from the wrong camera's folder")
            if first[0] not in self.stored:
                self.refused.setdefault(first[0], reason)
            raise CamidError(reason)

    def add_residuals(self, camera: str, paths: list[str], squares: np.ndarray) -> None:
        """The normalised central squares (:func:`central_square`) of ``camera``'s references ``paths``."""
        if self._shape is None:
            self._shape = squares.shape[1:]
        if squares.shape[1:] != self._shape:  # a sensor under REF_CHECK_SIDE on a side: smaller squares, not compared
            return
        self.sums[camera] = self.sums.get(camera, 0) + squares.sum(0, dtype=np.float64)
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="camid-refcheck-")
        self._file.seek(0, 2)
        for path, square in zip(paths, squares):
            self.rows.append((camera, path, len(self.rows)))
            self._file.write(square.astype(np.float32).tobytes())

    def _square(self, row: int) -> np.ndarray:
        size = int(np.prod(self._shape)) * 4
        self._file.seek(row * size)
        return np.frombuffer(self._file.read(size), np.float32).reshape(self._shape)

    def finish(self) -> dict[str, str]:
        """camera -> why it is refused: its first reference whose residual correlates with another camera's
        references far above its own folder's (leave-one-out), naming that camera's reference it correlates with
        most. Closes the temporary file."""
        try:
            crossed = self._cross_check() if len(self.sums) > 1 else {}
            return {**crossed, **self.refused}
        finally:
            self.close()

    def close(self) -> None:
        """Remove the temporary file (also when the run stops on an error)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _cross_check(self) -> dict[str, str]:
        count = {c: sum(1 for cam, _, _ in self.rows if cam == c) for c in self.sums}
        floor = REF_CROSS_SIGMAS / float(np.sqrt(np.prod(self._shape)))
        refused: dict[str, str] = {}
        for camera, path, row in self.rows:
            if camera in refused:
                continue
            square = self._square(row)
            own = _ncc(square, self.sums[camera] - square) if count[camera] > 1 else None
            for other, total in self.sums.items():
                value = _ncc(square, total) if other != camera else -1.0
                if value >= floor and value >= REF_CROSS_RATIO * max(own or 0.0, floor / REF_CROSS_RATIO):
                    closest, best = self._closest(square, other)
                    refused[camera] = (
                        f"reference {path} of camera {camera!r} looks like camera {other!r}'s {closest}: its residual "
                        f"correlates with {other!r}'s references at NCC {value:.3f} ({best:.3f} with that one) and "
                        f"with the rest of its own folder at {'n/a' if own is None else f'{own:.3f}'} (central "
                        f"{self._shape[0]}x{self._shape[1]} residuals); another camera's image (re-encoded?) would "
                        f"make a fingerprint of two cameras: camera {camera!r} is refused; remove the image from its "
                        f"folder")
                    break
        return refused

    def _closest(self, square: np.ndarray, camera: str) -> tuple[str, float]:
        best = max(((_ncc(square, self._square(row)), path) for cam, path, row in self.rows if cam == camera))
        return best[1], best[0]


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    b = b - b.mean()
    norm = float(np.sqrt((a.astype(np.float64) ** 2).sum() * (b.astype(np.float64) ** 2).sum()))
    return float((a.astype(np.float64) * b).sum() / norm) if norm > 0 else 0.0

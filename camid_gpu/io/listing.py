"""Input listing: files and folders expanded (recursively, sorted) into image paths by suffix."""
from __future__ import annotations

import os

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def list_images(*paths: str | os.PathLike) -> list[str]:
    """Expand files and folders (recursively, sorted) into image paths by suffix.

    Files named explicitly are kept whatever their suffix (they are errors later if not images). A
    folder named like an image (``x.jpg/``) is listed as an entry, not walked, so that it is reported
    as an error instead of vanishing from the run.
    """
    found: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p) and not _looks_like_image(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                names = sorted(files + [d for d in dirs if _looks_like_image(d)])
                dirs[:] = [d for d in dirs if not _looks_like_image(d)]
                found.extend(os.path.join(root, f) for f in names if _looks_like_image(f))
        else:
            found.append(p)
    return found


def _looks_like_image(name: str) -> bool:
    base = os.path.basename(name.rstrip("/"))
    return base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith(".")

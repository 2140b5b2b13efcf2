"""The casework record of a run: case, exhibits (one label per input folder), examiner and notes.

Given on the command line of every command that makes a run (``--case``, ``--exhibit``, ``--examiner``,
``--note``), checked here, and written into the run's manifest (``manifest["casework"]``) by
:func:`camid_gpu.provenance.write_manifest`, which reads it from :func:`current` while the command runs
(:func:`recorded` sets it for the duration of one command). Never used for any computation.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Iterator, Optional, Sequence, TypedDict

from camid_gpu.config import CASEWORK_MAX_CHARS


class Exhibit(TypedDict):
    label: str
    folder: str          # as given
    abspath: str         # the folder's absolute path (its images belong to this exhibit)


class Casework(TypedDict, total=False):
    case: Optional[str]
    examiner: Optional[str]
    exhibits: list[Exhibit]
    notes: list[str]


_CURRENT: contextvars.ContextVar[Optional[Casework]] = contextvars.ContextVar("camid_casework", default=None)


def check_text(option: str, value: str) -> str:
    """A casework text: not blank, at most :data:`CASEWORK_MAX_CHARS` characters, no control characters (a
    record for court must print as it reads; a terminal escape would not)."""
    text = value.strip()
    if not text:
        raise ValueError(f"{option} is empty")
    if len(text) > CASEWORK_MAX_CHARS:
        raise ValueError(f"{option} has {len(text)} characters; at most {CASEWORK_MAX_CHARS}")
    bad = sorted({f"U+{ord(c):04X}" for c in text if ord(c) < 32 or 0x7F <= ord(c) < 0xA0})
    if bad:
        raise ValueError(f"{option} holds control characters ({', '.join(bad)}); write plain text")
    return text


def exhibits_of(given: Sequence[str], input_folders: Sequence[str]) -> list[Exhibit]:
    """``--exhibit LABEL`` (the command's one input folder) or ``--exhibit FOLDER=LABEL`` (one per input folder).

    FOLDER must be one of the command's inputs or lie inside one; LABEL is a casework text. A plain LABEL with
    several input folders is refused (which folder would it name?), as are two labels for one folder."""
    out: list[Exhibit] = []
    seen: dict[str, str] = {}
    for item in given:
        folder, sep, label = item.rpartition("=")
        if not sep or not folder:
            if len(input_folders) != 1:
                raise ValueError(f"--exhibit {item!r}: the command has {len(input_folders)} inputs; name the folder "
                                 f"of each exhibit: --exhibit FOLDER=LABEL")
            folder, label = input_folders[0], item
        label = check_text("--exhibit", label)
        real = os.path.realpath(folder)
        roots = [os.path.realpath(f) for f in input_folders]
        if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            raise ValueError(f"--exhibit {item!r}: {folder} is not one of the command's inputs "
                             f"({', '.join(input_folders)}) nor inside one")
        if real in seen:
            raise ValueError(f"--exhibit: {folder} has two labels ({seen[real]!r} and {label!r})")
        seen[real] = label
        out.append({"label": label, "folder": folder, "abspath": os.path.abspath(folder)})
    return out


def casework_of(case: str | None, examiner: str | None, exhibits: Sequence[str] | None, notes: Sequence[str] | None,
                input_folders: Sequence[str]) -> Optional[Casework]:
    """The checked casework record, or None when nothing was given."""
    if case is None and examiner is None and not exhibits and not notes:
        return None
    return {"case": check_text("--case", case) if case is not None else None,
            "examiner": check_text("--examiner", examiner) if examiner is not None else None,
            "exhibits": exhibits_of(exhibits or [], input_folders),
            "notes": [check_text("--note", n) for n in notes or []]}


@contextlib.contextmanager
def recorded(casework: Optional[Casework]) -> Iterator[None]:
    """While the block runs, every manifest written records ``casework``."""
    token = _CURRENT.set(casework)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> Optional[Casework]:
    """The casework record of the command running (None outside :func:`recorded` or when none was given)."""
    return _CURRENT.get()


def exhibit_of(path: str, casework: Optional[Casework]) -> Optional[str]:
    """The label of the exhibit whose folder holds ``path`` (the deepest such folder), or None."""
    best: tuple[int, Optional[str]] = (-1, None)
    real = os.path.abspath(path)
    for ex in (casework or {}).get("exhibits") or []:
        root = str(ex.get("abspath", "")).rstrip(os.sep)
        if root and (real == root or real.startswith(root + os.sep)) and len(root) > best[0]:
            best = (len(root), str(ex.get("label")))
    return best[1]

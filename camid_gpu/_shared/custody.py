"""Chain of custody: where the files a manifest lists lie now, and whether they still have their recorded SHA-256.

A run folder (or a fingerprint store) is checked WHERE IT LIES NOW, never where it was written: a copy
checks its own files, a moved folder checks the files it took along.

- Version 2 manifests record ``run_dir`` (the folder at writing time, for the examiner) and give every file
  inside the run folder by ``relpath``, relative to the folder that holds ``manifest.json``; files outside it
  (evidence, references, an external fingerprint store, ``--csv`` elsewhere) keep their absolute ``abspath``.
- Version 1 manifests (absolute paths only): the folder the run wrote is inferred from its outputs
  (:func:`recorded_folder`), and every path under it is resolved relative to where the manifest lies now.

``manifest.sha256`` beside a manifest (written with it) must agree with the manifest's bytes: an edited
manifest whose checksum file was not recomputed is caught without the hash kept elsewhere (that one,
``camid verify --expect-sha256``, catches a careful editor too).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from camid_gpu._shared.files import open_regular
from camid_gpu._shared.jsonio import sha256_file

MANIFEST_NAME = "manifest.json"
CHECKSUM_NAME = "manifest.sha256"
MANIFEST_FORMAT = "camid-manifest"
#: files that only a run folder holds at its top: in a version-1 manifest the output with one of these names
#: tells the folder the run wrote
RUN_FOLDER_FILES = ("results.jsonl", "residuals.jsonl", "images.jsonl", "clusters.json", "evaluation.json")
#: the manifest lists whose entries are files (fingerprint entries also list their references)
FILE_LISTS = ("inputs", "outputs", "fingerprints")


@dataclass
class Manifest:
    """A manifest as read: its absolute path now, its document, the SHA-256 of its bytes, the folder the run
    wrote it in (as recorded or inferred; None when unknown) and what ``manifest.sha256`` beside it says."""

    path: str
    data: dict[str, Any]
    sha256: str
    recorded_dir: str | None
    checksum: str  # "agrees", "absent", or a sentence saying what is wrong

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)

    @property
    def moved(self) -> bool:
        """The manifest lies elsewhere than the folder it was written in (a copy or a move)."""
        return self.recorded_dir is not None and os.path.normpath(self.recorded_dir) != self.folder


def inside(path: str, folder: str) -> bool:
    """``path`` lies in ``folder`` (both absolute and normalised), at any depth."""
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read and check a camid manifest; raise ValueError naming the file when it is not one."""
    path = os.path.abspath(os.fspath(path))
    try:
        with open_regular(path) as handle:
            raw = handle.read()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not a camid manifest (not JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a camid manifest (format "
                         f"{data.get('format') if isinstance(data, dict) else None!r})")
    own = hashlib.sha256(raw).hexdigest()
    return Manifest(path, data, own, recorded_folder(data), _checksum_beside(path, own))


def _checksum_beside(path: str, own: str) -> str:
    beside = os.path.join(os.path.dirname(path), CHECKSUM_NAME)
    if not os.path.lexists(beside):
        return "absent"
    try:
        with open_regular(beside) as handle:
            words = handle.read(4096).decode("utf-8", "replace").split()
    except OSError as exc:
        return f"{beside} cannot be read ({exc.strerror or exc})"
    if not words or words[0].lower() != own:
        return (f"the manifest's SHA-256 is {own} but {beside} says {(words[0] if words else '')[:64]!r}: the "
                f"manifest was edited after it was written")
    return "agrees"


def recorded_folder(data: dict[str, Any]) -> str | None:
    """The folder the run wrote its manifest in: ``run_dir`` (version 2), else inferred from the outputs' absolute
    paths: the folder of an output that only a run folder holds, or the one folder all outputs share."""
    if isinstance(data.get("run_dir"), str) and os.path.isabs(data["run_dir"]):
        return os.path.normpath(data["run_dir"])
    outputs = [e.get("abspath") for e in data.get("outputs") or [] if isinstance(e, dict)]
    outputs = [os.path.normpath(p) for p in outputs if isinstance(p, str) and os.path.isabs(p)]
    for p in outputs:
        if os.path.basename(p) in RUN_FOLDER_FILES:
            return os.path.dirname(p)
    folders = {os.path.dirname(p) for p in outputs}
    return folders.pop() if len(folders) == 1 else None


@dataclass
class Located:
    """Where a manifest entry's file lies now; ``in_run``: inside the manifest's folder (checked there)."""

    where: str | None
    in_run: bool
    problem: str | None = None


def locate(entry: dict[str, Any], manifest: Manifest) -> Located:
    """Where ``entry``'s file is checked now: ``relpath`` under the manifest's folder, else its recorded absolute
    path, resolved under the manifest's folder when it lies under the folder the run was written in."""
    rel = entry.get("relpath")
    if rel is not None:
        if not isinstance(rel, str) or not rel or os.path.isabs(rel) or \
                os.path.normpath(rel).split(os.sep)[0] == os.pardir:
            return Located(None, True, f"relpath {str(rel)[:80]!r} does not name a file inside the run folder")
        return Located(os.path.join(manifest.folder, os.path.normpath(rel)), True)
    recorded = entry.get("abspath") if isinstance(entry.get("abspath"), str) else entry.get("path")
    if not isinstance(recorded, str):
        return Located(None, False, "no path")
    recorded = os.path.normpath(recorded) if os.path.isabs(recorded) else recorded
    home = manifest.recorded_dir
    if home is not None and os.path.isabs(recorded) and inside(recorded, home):
        return Located(os.path.join(manifest.folder, os.path.relpath(recorded, home)), True)
    return Located(recorded, False)


def resolve_folder(value: Any, manifest: Manifest) -> str | None:
    """A folder named in the manifest (``fingerprints_dir``): relative to the manifest's folder, or absolute (and
    then resolved like :func:`locate` when it lies in the folder the run was written in)."""
    if not isinstance(value, str) or not value:
        return None
    if not os.path.isabs(value):
        return os.path.join(manifest.folder, os.path.normpath(value))
    value = os.path.normpath(value)
    home = manifest.recorded_dir
    if home is not None and (value == home or inside(value, home)):
        return os.path.normpath(os.path.join(manifest.folder, os.path.relpath(value, home)))
    return value


def file_entries(data: dict[str, Any]) -> list[Any]:
    """Every file entry of a manifest: inputs, outputs, fingerprints and each fingerprint's references."""
    entries: list[Any] = []
    for key in FILE_LISTS:
        items = data.get(key) if isinstance(data.get(key), list) else []
        entries.extend(items)
        if key == "fingerprints":
            for fp in items:
                refs = fp.get("references") if isinstance(fp, dict) else None
                if isinstance(refs, list):
                    entries.extend(dict(ref, role="reference") for ref in refs if isinstance(ref, dict))
    return entries


def is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and not value.strip("0123456789abcdefABCDEF")


def check_entry(entry: Any, manifest: Manifest, *, appended_ok: bool = False) -> dict[str, Any]:
    """Re-hash one entry's file where it lies now.

    Returns ``{"status": "same"|"changed"|"missing"|"unhashed"|"noted"|"invalid", "path", "role", "where",
    "in_run", "recorded", "current", "reason"}`` ("noted": recorded unreadable at the time, with its reason).
    ``appended_ok``: a file that grew after the manifest was written (``results.jsonl`` of an interrupted resume)
    is "same" when its first ``size`` bytes have the recorded SHA-256.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return {"status": "invalid", "reason": f"an entry is not an object with a 'path': {str(entry)[:80]!r}",
                "path": None, "role": None, "where": None, "in_run": False}
    recorded, role = entry.get("sha256"), str(entry.get("role"))
    at = locate(entry, manifest)
    out = {"path": entry["path"], "role": role, "where": at.where, "in_run": at.in_run, "recorded": recorded}
    if recorded is None:
        status = "noted" if (entry.get("unreadable") or entry.get("error")) else "unhashed"
        return dict(out, status=status)
    if not is_sha256(recorded):
        return dict(out, status="invalid", reason=f"{entry['path']}: recorded SHA-256 {str(recorded)[:80]!r} is not "
                                                  f"a SHA-256")
    if at.where is None:
        return dict(out, status="invalid", reason=f"{entry['path']}: {at.problem}")
    if not os.path.lexists(at.where):
        return dict(out, status="missing", reason="no longer exists")
    try:
        current = sha256_file(at.where)
        if current != recorded.lower() and appended_ok and isinstance(entry.get("size"), int):
            current = _prefix_sha256(at.where, entry["size"]) or current
    except OSError as exc:
        return dict(out, status="missing", reason=exc.strerror or str(exc))
    return dict(out, status="same" if current == recorded.lower() else "changed", current=current)


def _prefix_sha256(path: str, size: int) -> str | None:
    """SHA-256 of the first ``size`` bytes when the file is longer (records appended after the manifest)."""
    if size < 0 or os.path.getsize(path) <= size:
        return None
    digest, left = hashlib.sha256(), size
    with open_regular(path) as handle:
        while left:
            block = handle.read(min(left, 1 << 20))
            if not block:
                return None
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def store_manifest(directory: str, levels: int = 2) -> Manifest | None:
    """The manifest that lists a fingerprint store's files: ``DIR/manifest.json`` (``camid fingerprint``), else
    the manifest of the run folder the store lies in that lists a file of it (``camid evaluate``'s
    ``RUN/fingerprints/``, ``camid cluster``'s ``RUN/fingerprints/<group>/``), up to ``levels`` folders up.
    None when there is none. Raises ValueError when ``DIR/manifest.json`` is not a readable camid manifest."""
    directory = os.path.abspath(directory)
    own = os.path.join(directory, MANIFEST_NAME)
    if os.path.lexists(own):
        return read_manifest(own)
    folder = directory
    for _ in range(levels):
        folder = os.path.dirname(folder)
        candidate = os.path.join(folder, MANIFEST_NAME)
        if not os.path.isfile(candidate):
            continue
        try:
            manifest = read_manifest(candidate)
        except ValueError:
            continue  # not a camid manifest: the store is not this folder's
        if any(isinstance(e, dict) and os.path.dirname(os.path.normpath(locate(e, manifest).where or "")) == directory
               for e in file_entries(manifest.data)):
            return manifest
    return None


def folder_differences(directory: str, manifest: Manifest, names: list[str],
                       known: dict[str, str] | None = None) -> list[str]:
    """Sentences, one per difference between the files ``names`` now in ``directory`` and the files of that folder
    the manifest lists (same suffixes as ``names``' own): a file changed, listed but gone, or present but never
    listed. ``known``: name -> SHA-256 already computed from the bytes just read (not hashed again)."""
    home = os.path.abspath(directory)
    suffixes = tuple(sorted({os.path.splitext(n)[1] for n in names})) or (".json", ".npz")
    listed: dict[str, list[dict[str, Any]]] = {}
    for entry in file_entries(manifest.data):
        if not isinstance(entry, dict):
            continue
        at = locate(entry, manifest).where
        if at and os.path.dirname(os.path.normpath(at)) == home and at.endswith(suffixes) \
                and os.path.basename(at) != MANIFEST_NAME:
            listed.setdefault(os.path.basename(at), []).append(entry)
    problems = []
    for name in sorted(set(names) - set(listed)):
        problems.append(f"{name} is not listed in the manifest (added or renamed after the run)")
    for name in sorted(set(listed) - set(names)):
        problems.append(f"{name} is listed in the manifest but is not in the folder (removed or renamed)")
    for name in sorted(set(names) & set(listed)):
        try:
            current = (known or {}).get(name) or sha256_file(os.path.join(home, name))
        except OSError as exc:
            problems.append(f"{name} cannot be read ({exc.strerror or exc})")
            continue
        recorded = {str(e.get("sha256")).lower() for e in listed[name]}
        if recorded != {current}:
            shown = ", ".join(sorted(r[:16] + "..." for r in recorded))
            problems.append(f"{name} differs from the manifest (SHA-256 recorded {shown}, now {current[:16]}...)")
    return problems


#: what camid keeps in a run folder (or store) outside its manifest, by design: the manifest itself, its checksum,
#: and the run folder's lock (empty; held while a command runs)
UNLISTED_BY_DESIGN = frozenset({MANIFEST_NAME, CHECKSUM_NAME, ".camid.lock"})


def foreign_files(manifest: Manifest) -> list[str]:
    """The files in the manifest's folder (at any depth; links and other non-regular entries too) that it does not
    list: paths relative to the folder, sorted. Not foreign: :data:`UNLISTED_BY_DESIGN`, and a report written
    into the run folder after the run (``X.html`` with ``X.html.sha256`` beside it that agrees), which no
    command reads. An old manifest whose run folder is not known (version 1, nothing inferred):
    none (its files are checked at their recorded paths)."""
    if manifest.recorded_dir is None and manifest.data.get("version") != 2:
        return []
    home = manifest.folder
    listed = {os.path.normpath(at) for at in (locate(e, manifest).where for e in file_entries(manifest.data)
                                              if isinstance(e, dict)) if at}
    found: list[str] = []
    for folder, dirs, files in os.walk(home):  # links to folders are listed, not followed
        dirs.sort()
        if folder != home and MANIFEST_NAME in files and _is_checked_subfolder(folder):
            dirs[:] = []  # a folder with a manifest of its own that accounts for it (the report's diagnostics)
            continue
        for name in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(folder, d))):
            path = os.path.normpath(os.path.join(folder, name))
            rel = os.path.relpath(path, home)
            if path in listed or rel in UNLISTED_BY_DESIGN or _is_checked_report(path):
                continue
            found.append(rel)
    return sorted(found)


def _is_checked_subfolder(folder: str) -> bool:
    """A folder written into the run folder after the run with a manifest of its own (``camid report``'s kept
    ``diagnostics/``, so that the run's manifest, whose SHA-256 an examiner may have noted, is never rewritten):
    not foreign when its ``manifest.sha256`` agrees, every file it lists inside the folder is unchanged, and it
    holds no file of its own that its manifest does not list. Anything less and its files are foreign."""
    try:
        manifest = read_manifest(os.path.join(folder, MANIFEST_NAME))
    except ValueError:
        return False
    if manifest.checksum != "agrees":
        return False
    inner = [e for e in file_entries(manifest.data) if isinstance(e, dict)
             and (where := locate(e, manifest).where) and inside(os.path.normpath(where), folder)]
    return bool(inner) and all(check_entry(e, manifest)["status"] == "same" for e in inner) \
        and not foreign_files(manifest)


def _is_checked_report(path: str) -> bool:
    """``X.html`` whose ``X.html.sha256`` agrees, or that ``.sha256`` file itself when it does."""
    report = path[:-len(".sha256")] if path.endswith(".html.sha256") else path
    if not report.endswith(".html") or not os.path.isfile(report) or not os.path.isfile(report + ".sha256"):
        return False
    try:
        with open_regular(report + ".sha256") as handle:
            words = handle.read(4096).decode("utf-8", "replace").split()
        return bool(words) and words[0].lower() == sha256_file(report)
    except OSError:
        return False


def foreign_sentence(rel: str) -> str:
    """How a foreign file is said (verify, the report's banner, every reader of a run folder)."""
    return (f"{rel} is in the run folder but not in its manifest (added or replaced after the run): it is not part "
            f"of the run's record and was not checked")


@dataclass
class Custody:
    """What a run folder's files were checked against: the manifest's SHA-256 (None without one), the files
    checked and found as recorded, and one sentence per file that is not."""

    manifest_sha256: str | None = None
    same: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)  # what the run itself recorded as unverified


def check_files(run_dir: str, names: list[str]) -> Custody:
    """Check each of ``names`` (paths relative to ``run_dir`` that exist and that the caller reads: the report,
    a calibration's runs) against the file entries of ``run_dir/manifest.json``, the manifest against
    ``manifest.sha256`` beside it, and the run folder for files its manifest does not list
    (:func:`foreign_files`)."""
    path = os.path.join(run_dir, MANIFEST_NAME)
    if not os.path.lexists(path):
        return Custody(problems=[f"no {MANIFEST_NAME} in the run folder: none of the files this report "
                                 f"reads ({', '.join(names)}) could be checked against the run's record"])
    try:
        manifest = read_manifest(path)
    except ValueError as exc:
        return Custody(problems=[f"{exc}: none of the files this report reads could be checked"])
    result = Custody(manifest_sha256=manifest.sha256)
    if manifest.checksum not in ("agrees", "absent"):
        result.problems.append(manifest.checksum)
    result.problems += [foreign_sentence(rel) for rel in foreign_files(manifest)]
    entries: dict[str, list[dict]] = {}
    for entry in file_entries(manifest.data):
        if isinstance(entry, dict):
            where = locate(entry, manifest).where
            if where:
                entries.setdefault(os.path.normpath(where), []).append(entry)
    for name in names:
        listed = entries.get(os.path.normpath(os.path.join(manifest.folder, name)))
        if not listed:
            result.problems.append(f"{name} is not listed in the manifest: it was not checked (added after the run?)")
            continue
        checks = [check_entry(e, manifest) for e in listed]
        bad = [c for c in checks if c["status"] != "same"]
        if not bad:
            result.same.append(name)
        elif bad[0]["status"] == "changed":
            result.problems.append(f"{name} differs from the manifest (SHA-256 recorded "
                                   f"{str(bad[0]['recorded'])[:16]}..., now {bad[0]['current'][:16]}...)")
        else:
            result.problems.append(f"{name}: {bad[0].get('reason') or bad[0]['status']}")
    return result

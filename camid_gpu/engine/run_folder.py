"""The run folder: its lock, what it was asked to compute (``run.json``), resume, output checks, the manifest.

A run folder (``camid identify -o RUN``, ``camid evaluate -o RUN``) holds ``results.jsonl`` (one record per
image, appended), ``run.json`` (the run's specification), ``manifest.json`` with ``manifest.sha256`` beside
it, and ``.camid.lock``.

- **One process at a time**: :func:`locked` takes an exclusive, non-blocking ``fcntl.flock`` on
  ``RUN/.camid.lock`` for the whole run; a second process is refused with a message (never interleaved lines).
- **Resume continues the same run only**: ``run.json`` records the command, the parameters actually used,
  the methods, the fingerprints (camera -> SHA-256 of metadata and arrays) and the canonical input list
  (``realpath`` of every file, sorted). ``--resume`` with anything different is refused, naming each
  difference; the same folder spelled differently (``./data/`` and ``data``) is the same input. Before that,
  the run folder's own files are checked against its manifest (:func:`check_recorded_outputs`): an edited
  record is refused, never re-hashed into a new manifest.
- **Records are keyed by canonical path and content hash** (:class:`ResumePlan`): a file with a record
  for the same content is skipped; a file whose content changed since its record gets an error record
  (``changed-since-recorded``) instead of a second decision; a file whose last record is an error is
  retried, and its new record supersedes the error (``pipeline.records.final_view``: one record per input).
- **Evidence is never an output** (:func:`check_outputs`): no output path may be an input file or lie
  inside an input folder (compared after ``realpath``), existing files are not replaced without
  ``overwrite``, and every output folder is checked writable before any work.
- **The manifest** of every command is written here (:func:`write_manifest`), with its own SHA-256 in
  ``manifest.sha256`` (``sha256sum`` format) so it can be kept elsewhere and checked with
  ``camid verify --expect-sha256``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from camid_gpu._shared import custody, interrupts
from camid_gpu._shared.files import atomic_write, open_regular
from camid_gpu._shared.jsonio import read_jsonl, sha256_or_none, write_json
from camid_gpu.errors import OutputPathError, RunFolderError
from camid_gpu.pipeline.records import ImageRecord, error_record, inconsistent_records, is_error, record_key
from camid_gpu.provenance import MANIFEST_NAME
from camid_gpu.provenance import write_manifest as _write_manifest_file

LOCK_NAME = ".camid.lock"
SPEC_NAME = "run.json"
SPEC_FORMAT = "camid-run"
RESULTS_NAME = "results.jsonl"
CHECKSUM_NAME = "manifest.sha256"


def checksum_path(manifest_path: str) -> str:
    """``RUN/manifest.sha256``: the manifest's own SHA-256, beside it."""
    return os.path.join(os.path.dirname(os.path.abspath(manifest_path)), CHECKSUM_NAME)


def canonical(path: str | os.PathLike) -> str:
    """The canonical form of a path: absolute, symbolic links and ``.``/``..`` resolved."""
    return os.path.realpath(os.fspath(path))


# ------------------------------------------------------------------------------------------------
# The lock
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def locked(run_dir: str) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` (created if needed) for the block; refuse at once if taken."""
    import fcntl

    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, LOCK_NAME)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunFolderError(f"{run_dir}: another camid process is using this run folder (lock {path} is "
                                 f"held); wait for it to finish or choose another output folder") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


# ------------------------------------------------------------------------------------------------
# The run's specification and resume
# ------------------------------------------------------------------------------------------------
def fingerprint_hashes(fp_dir: str) -> dict[str, dict[str, str | None]]:
    """camera -> SHA-256 of its metadata and arrays, for every fingerprint JSON in ``fp_dir`` (or in each of
    several stores searched together)."""
    if not isinstance(fp_dir, (str, os.PathLike)):
        return {k: v for d in fp_dir for k, v in fingerprint_hashes(d).items()}
    out = {}
    for name in sorted(os.listdir(fp_dir)):
        if name.endswith(".json") and name != MANIFEST_NAME:
            stem = name[:-5]
            out[stem] = {"metadata": sha256_or_none(os.path.join(fp_dir, name)),
                         "arrays": sha256_or_none(os.path.join(fp_dir, stem + ".npz"))}
    return out


def run_spec(command: str, params: dict[str, Any], methods: Sequence[str], fp_dir: str,
             inputs: Sequence[str], **extra: Any) -> dict[str, Any]:
    """What a run computes: everything that must be equal for ``--resume`` to continue it."""
    return {"format": SPEC_FORMAT, "version": 1, "command": command, "params": params, "methods": list(methods),
            "fingerprints": fingerprint_hashes(fp_dir), "inputs": sorted({canonical(p) for p in inputs}), **extra}


def spec_differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Readable lines, one per difference between two run specifications."""
    lines = []
    for key in sorted(set(recorded) | set(wanted)):
        a, b = recorded.get(key), wanted.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    lines.append(f"{key}.{sub}: recorded {a.get(sub)!r}, now {b.get(sub)!r}")
        elif key == "inputs" and isinstance(a, list) and isinstance(b, list):
            gone, new = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            lines.append(f"inputs: {len(gone)} file(s) of the run not given now"
                         + (f" (e.g. {gone[0]})" if gone else "") + f", {len(new)} new file(s)"
                         + (f" (e.g. {new[0]})" if new else ""))
        else:
            lines.append(f"{key}: recorded {a!r}, now {b!r}")
    return lines


#: ``run.json``'s record of each resume that adopted results no manifest vouched for (``--adopt-unverified``); not
#: part of what a resume compares, copied into every later manifest of the run
ADOPTED_KEY = "adopted_unverified"


def record_spec(run_dir: str, spec: dict[str, Any], resume: bool, adopt_unverified: bool = False) -> None:
    """Write ``run.json``; on resume, first check the run folder against its manifest and that the recorded
    specification equals ``spec``. A run folder with results but no manifest (deleted, or a run killed before it
    could write one) is refused unless ``adopt_unverified`` (``--adopt-unverified``): its records could have been
    edited and a new manifest would bless them; the adoption is then recorded in ``run.json`` (and so in every
    later manifest of the run, :func:`write_manifest`)."""
    path = os.path.join(run_dir, SPEC_NAME)
    results = os.path.join(run_dir, RESULTS_NAME)
    if resume and os.path.exists(results):
        adopting = not check_recorded_outputs(run_dir)
        if adopting:
            refuse_unverified(run_dir, adopt_unverified)
        try:
            with open(path, encoding="utf-8") as handle:
                recorded = json.load(handle)
        except FileNotFoundError:
            raise RunFolderError(f"{run_dir}: cannot resume: the run folder has results but no {SPEC_NAME} (made by "
                                 f"an older camid, or damaged); start a new run folder") from None
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"{path}: cannot read the run's specification ({exc})") from None
        adopted = recorded.pop(ADOPTED_KEY, None) if isinstance(recorded, dict) else None
        diffs = spec_differences(recorded, spec)
        if diffs:
            raise RunFolderError(f"{run_dir}: --resume refused: this run differs from the one recorded in "
                                 f"{SPEC_NAME}: " + "; ".join(diffs) + ". Use a new run folder for a new run")
        if adopting:
            adopted = list(adopted or []) + [adoption(results)]
            write_json(path, dict(recorded, **{ADOPTED_KEY: adopted}))
        return
    write_json(path, spec)


def refuse_unverified(run_dir: str, adopt_unverified: bool) -> None:
    """A resume of results with no manifest: refused unless told (records are checked against themselves either
    way)."""
    if not adopt_unverified:
        raise RunFolderError(
            f"{run_dir}: --resume refused: the run folder has results but no {MANIFEST_NAME}, so its records cannot "
            f"be checked against the run's record (the manifest was deleted, or the run was killed before it could "
            f"write one) and a new manifest would vouch for them. Start a new run folder, or pass --adopt-unverified "
            f"to keep them as they are: the adoption is recorded in the run's manifest and report")


def _adopted(spec_path: str) -> list[dict[str, Any]] | None:
    try:
        with open(spec_path, encoding="utf-8") as handle:
            recorded = json.load(handle)
    except (OSError, ValueError):
        return None
    return recorded.get(ADOPTED_KEY) if isinstance(recorded, dict) else None


def adoption(results: str) -> dict[str, Any]:
    """What ``run.json`` records of one adoption: when, and the results file adopted (size, SHA-256)."""
    from camid_gpu.provenance import utc_now

    return {"at": utc_now(), "results_bytes": os.path.getsize(results), "results_sha256": sha256_or_none(results),
            "note": "results with no manifest, kept unverified on --resume --adopt-unverified"}


#: run folder files that only grow (appended record by record): a resume may follow records appended after the manifest;
#: a name ending in "/" stands for the files of that folder (a clustering run's residual rows and scene descriptors)
APPENDED_FILES = (RESULTS_NAME, "images.jsonl", "residuals/", "scene/")


def _named(name: str | None, names: Sequence[str]) -> bool:
    """``name`` (relative to the run folder, "/"-separated) is one of ``names`` or lies in a folder ``X/`` of them."""
    if name is None:
        return False
    name = name.replace(os.sep, "/")
    return any(name == n or (n.endswith("/") and name.startswith(n)) for n in names)


def check_recorded_outputs(run_dir: str, only: Sequence[str] | None = None) -> bool:
    """Before a resume: the run folder's own files (results, run.json, evaluation, fingerprints) must still be the
    ones its manifest recorded, or the resume would take an edited record as the run's own and hash it into a
    new manifest (laundering the edit). ``results.jsonl`` may have grown after the manifest (records appended by
    a resume that was interrupted); its recorded bytes must be unchanged. ``only``: the names (relative to the run
    folder; ``X/``: the files of folder X) that the resume keeps, when the others are computed again
    (``camid cluster``). Raises RunFolderError
    naming each file that differs; returns False when there is no manifest yet (a run interrupted before its
    end: nothing to check against), True when checked."""
    path = os.path.join(run_dir, MANIFEST_NAME)
    if not os.path.lexists(path):
        return False
    try:
        manifest = custody.read_manifest(path)
    except ValueError as exc:
        raise RunFolderError(f"{run_dir}: --resume refused: {exc}") from None
    problems = [] if manifest.checksum in ("agrees", "absent") else [manifest.checksum]
    outputs = manifest.data.get("outputs") if isinstance(manifest.data.get("outputs"), list) else []
    for entry in outputs:
        where = custody.locate(entry, manifest).where if isinstance(entry, dict) else None
        name = os.path.relpath(where, manifest.folder) if where else None  # a version-1 entry's path is absolute
        if only is not None and not _named(name, only):
            continue
        result = custody.check_entry(entry, manifest, appended_ok=_named(name, APPENDED_FILES))
        if not result["in_run"] or result["status"] in ("same", "noted"):
            continue  # an extra output elsewhere (--csv) is written again at the end; it is no input of the resume
        what = {"changed": "differs from its SHA-256 in the manifest", "missing": "is missing"}.get(
            result["status"], result.get("reason") or "has no recorded SHA-256")
        problems.append(f"{result['where'] or name} {what}")
    if problems:
        raise RunFolderError(f"{run_dir}: --resume refused: the run folder no longer matches its manifest "
                             f"{path}: " + "; ".join(problems) + ". A resume would keep the edited files as the "
                             f"run's own and hash them into a new manifest; check with camid verify {run_dir} and "
                             f"start a new run folder")
    return True


@dataclass
class ResumePlan:
    """Which inputs to compute, which to flag, from the records already in ``results.jsonl``."""

    todo: list[str] = field(default_factory=list)
    done: int = 0                                   # already recorded for the same content
    retried: int = 0                                # last record was an error: computed again
    changed: list[ImageRecord] = field(default_factory=list)  # flag records to append
    duplicates: int = 0                             # the same file given more than once


def plan_resume(paths: Sequence[str], existing: Sequence[ImageRecord],
                sha_of: Any = sha256_or_none) -> ResumePlan:
    """Plan a (resumed) run of ``paths`` given the records already written (oldest first)."""
    last: dict[str, ImageRecord] = {}
    last_good_sha: dict[str, str] = {}
    for record in existing:
        key = record_key(record)
        last[key] = record
        if not is_error(record) and record.get("sha256"):
            last_good_sha[key] = record["sha256"]
    plan = ResumePlan()
    seen: set[str] = set()
    for path in paths:
        key = canonical(path)
        if key in seen:  # one file given twice (two spellings, a symlink): one record
            plan.duplicates += 1
            continue
        seen.add(key)
        if key not in last:
            plan.todo.append(path)
            continue
        current = sha_of(path) if key in last_good_sha else None
        if key in last_good_sha and current != last_good_sha[key]:
            if last[key].get("error", {}) and last[key]["error"].get("kind") == "changed-since-recorded" \
                    and last[key]["error"].get("current_sha256") == current:
                plan.done += 1  # already flagged for this very content
                continue
            plan.changed.append(dict(error_record(
                path, "changed-since-recorded",
                f"the file changed since it was analysed in this run (SHA-256 recorded {last_good_sha[key][:16]}..., "
                f"now {(current or 'unreadable')[:16]}...); its earlier result no longer describes it; analyse it in "
                f"a new run folder", recorded_sha256=last_good_sha[key], current_sha256=current), realpath=key))
        elif is_error(last[key]):
            plan.todo.append(path)
            plan.retried += 1
        else:
            plan.done += 1
    return plan


def existing_records(results_path: str) -> list[ImageRecord]:
    """The records a resume keeps, each checked for consistency with itself first
    (:func:`~camid_gpu.pipeline.records.record_problems`): a record whose decision is not what its own scores
    give is refused, naming its line, whether or not a manifest vouched for the file."""
    if not os.path.exists(results_path):
        return []
    problems = inconsistent_records(results_path)
    if problems:
        raise RunFolderError(f"{os.path.dirname(os.path.abspath(results_path))}: --resume refused: "
                             f"{len(problems)} record(s) contradict themselves (edited?): " + "; ".join(problems[:5])
                             + ("; ..." if len(problems) > 5 else "") + ". Start a new run folder")
    return read_jsonl(results_path)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------
def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


#: what camid itself writes at the top of a run folder (any command's): an extra output file (``--csv``,
#: ``--json``, ``report -o``) given inside an output folder may not take one of these names
RUN_FOLDER_ENTRIES = frozenset({RESULTS_NAME, SPEC_NAME, MANIFEST_NAME, CHECKSUM_NAME, LOCK_NAME, "evaluation.json",
                                "residuals.jsonl", "images.jsonl", "cluster-params.json", "clusters.json",
                                "clusters.csv", "fingerprints", "residuals", "similarity", "gram",
                                "evidence.json", "calibration.json", "validation.html"})


def check_outputs(inputs: Sequence[str], files: Sequence[str] = (), folders: Sequence[str] = (),
                  overwrite: bool = False, command: str | None = None) -> None:
    """Refuse, before any work, outputs that would touch evidence or cannot be written.

    ``inputs``: input files and folders (evidence, references, fingerprints). ``files``: output files to be
    created (refused when they exist, unless ``overwrite``); ``folders``: output folders (created if needed).
    No output may be an input file or lie inside an input folder (after ``realpath``); no two outputs may be
    one file, and no output file may take the name of a file camid writes in an output folder
    (:data:`RUN_FOLDER_ENTRIES`: ``--csv RUN/results.jsonl`` would replace the results). With ``command``, an
    output folder that already holds the manifest of another command's run (a fingerprint store, an identify
    run) is refused: one folder holds one run, and its manifest is never replaced by another's.
    """
    roots = []
    for p in inputs:
        real = canonical(p)
        roots.append((real, os.path.isdir(real), p))
    for out in list(files) + list(folders):
        real = canonical(out)
        for root, is_dir, given in roots:
            if real == root or (is_dir and _inside(real, root)):
                what = "is the input" if real == root else "lies inside the input folder"
                raise OutputPathError(f"output {out} {what} {given}; camid never writes over or into evidence: "
                                      f"choose an output outside the inputs")
    seen: dict[str, str] = {}
    for out in list(files) + list(folders):
        real = canonical(out)
        if real in seen:
            raise OutputPathError(f"outputs {seen[real]} and {out} are the same file; give each output its own name")
        seen[real] = out
    for out in files:
        real = canonical(out)
        for folder in folders:
            home = canonical(folder)
            if _inside(real, home) and real != home:
                top = os.path.relpath(real, home).split(os.sep)[0]
                if top in RUN_FOLDER_ENTRIES:
                    raise OutputPathError(f"output {out} would replace the run folder's own {top!r} in {folder}; "
                                          f"choose another name")
    if command is not None:
        for folder in folders:
            _check_folder_command(folder, command)
    for out in files:
        if os.path.isdir(out):
            raise OutputPathError(f"output {out} is a folder; a file name is needed")
        if os.path.lexists(out) and not overwrite:
            raise OutputPathError(f"output {out} exists; pass --overwrite to replace it, or choose another name")
        _check_writable(os.path.dirname(os.path.abspath(out)), out)
    for folder in folders:
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise OutputPathError(f"output folder {folder} exists and is not a folder")
        _check_writable(os.path.abspath(folder), folder)


def _check_folder_command(folder: str, command: str) -> None:
    """An output folder with a manifest of another command (or an unreadable one) is another run's folder."""
    path = os.path.join(folder, MANIFEST_NAME)
    if not os.path.lexists(path):
        return
    try:
        with open_regular(path) as handle:
            recorded = json.loads(handle.read().decode("utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != command:
        what = f"the manifest of a 'camid {recorded}' run" if isinstance(recorded, str) else "a manifest camid cannot read"
        raise OutputPathError(f"output folder {folder} holds {what} ({path}); a 'camid {command}' run there would "
                              f"replace it: choose another output folder")


def _check_writable(folder: str, out: str) -> None:
    """The folder (or, when it is still to be made, its nearest existing ancestor) must be a writable folder."""
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputPathError(f"output {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"output {out}: folder {existing} is not writable")


# ------------------------------------------------------------------------------------------------
# The manifest
# ------------------------------------------------------------------------------------------------
def write_manifest(run_dir: str, command: str, argv: Sequence[str] | None, params: dict[str, Any],
                   backend: str, started: str, inputs: list[dict[str, Any]], fingerprints_dir: str | None,
                   outputs: Sequence[str], extra: dict[str, Any] | None = None, *,
                   kernels: str) -> tuple[str, str]:
    """Write ``run_dir/manifest.json`` (every command goes through here) and ``manifest.sha256`` beside it;
    return (manifest path, its SHA-256). ``kernels``: see ``provenance.write_manifest``."""
    spec = os.path.join(run_dir, SPEC_NAME)  # what a resume compares with: hashed like every output
    if os.path.isfile(spec) and not any(canonical(p) == canonical(spec) for p in outputs):
        outputs = list(outputs) + [spec]
    adopted = _adopted(spec)
    if adopted:  # results kept unverified by a resume (--adopt-unverified): said in every manifest of the run
        extra = dict(extra or {}, **{ADOPTED_KEY: adopted})
    path = _write_manifest_file(run_dir, command, argv, params, backend, started, inputs, fingerprints_dir,
                                outputs, extra, kernels=kernels)
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    with atomic_write(checksum_path(path), "w") as handle:
        handle.write(f"{digest}  {os.path.basename(path)}\n")
    return path, digest


def write_interrupted_manifest(exc: BaseException, write: Callable[[dict[str, Any]], Any]) -> None:
    """For a run stopped once it was writing its results (Ctrl-C, SIGTERM, a full disk, an error): ``write(extra)``
    writes the manifest of what the run wrote, ``extra`` saying why it stopped, so that a plain ``--resume`` can
    check those files against it. Signals are held meanwhile; best effort (the disk may be full): a failure here is
    dropped, the interruption itself is what the caller re-raises."""
    with contextlib.suppress(Exception), interrupts.deferred():
        write({"interrupted": f"{type(exc).__name__}: {exc}".strip().rstrip(":")})

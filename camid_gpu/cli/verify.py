"""``camid verify RUN|STORE|MANIFEST``: re-hash every file a manifest lists, where the run folder lies now.

Files inside the run folder (or store) are checked there, by their path relative to it: a copy checks the
copy, a moved folder the files it took along. Files outside it (evidence, references, an external store)
are checked at their recorded absolute path. Each line says which: ``[run folder]`` or ``[recorded path]``.
"""
from __future__ import annotations

import os
import re

from camid_gpu._shared import custody
from camid_gpu.io.listing import printable
from camid_gpu.provenance import MANIFEST_NAME, verify_manifest


def manifest_of(given: str) -> str:
    """The manifest to verify: the file given, ``DIR/manifest.json``, or for a fingerprint store inside a run
    folder (``RUN/fingerprints/<group>``) the manifest of that run folder."""
    if not os.path.isdir(given):
        return given
    own = os.path.join(given, MANIFEST_NAME)
    if os.path.lexists(own):
        return own
    try:
        found = custody.store_manifest(given)
    except ValueError:
        found = None
    return found.path if found is not None else own


def _where(item: dict) -> str:
    if item.get("in_run"):
        return "[run folder]"
    return "[recorded path]"


def verify(given: str, expect_sha256: str | None, library: str | None = None) -> bool:
    """Print what changed, what is missing and the summary; True when everything is unchanged. A library search
    run: the library it searched is re-checked too (:func:`_library_checked`; ``library``: where it lies now)."""
    if expect_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", expect_sha256.strip()):
        raise ValueError(f"--expect-sha256 must be 64 hexadecimal digits, got {expect_sha256!r}")
    path = manifest_of(given)
    result = verify_manifest(path, expect_sha256=expect_sha256)
    # every field below comes from the manifest, which may be hostile: printable() keeps escapes off the terminal
    for item in result["changed"]:
        print(f"CHANGED  {printable(item['role']):11s} {printable(item['path'])} {_where(item)}  recorded "
              f"{printable(item['recorded'][:16])}..., now {item['current'][:16]}...")
    for item in result["missing"]:
        print(f"MISSING  {printable(item['role']):11s} {printable(item['path'])} {_where(item)}  "
              f"{printable(item.get('reason', 'no longer exists'))}"
              + (f" (looked for at {printable(item['where'])})" if item.get("where") != item["path"] else ""))
    for item in result["unhashed"]:
        print(f"NO HASH  {printable(item['role']):11s} {printable(item['path'])}  the manifest records no SHA-256 "
              f"and no reason")
    for problem in result["problems"]:
        print(f"INVALID  {printable(problem)}")
    for rel in result["foreign"]:
        print(f"FOREIGN  {printable(rel)} [run folder]  not listed in the manifest (added or replaced after the run; "
              f"not part of the run's record)")
    inconsistent = _record_problems(result)
    for problem in inconsistent:
        print(f"RECORD   {printable(problem)}")
    data = _manifest_data(path)
    for adopted in _adopted(data):
        print(f"NOTE     results adopted unverified on a resume (--adopt-unverified) at {printable(adopted.get('at'))}: "
              f"{printable(adopted.get('results_bytes'))} bytes of results.jsonl that no manifest vouched for")
    if data.get("interrupted"):
        print(f"NOTE     the run was interrupted ({printable(data['interrupted'])}): its files are what it wrote "
              f"before it stopped, not a finished run; the same command with --resume finishes it")
    print(f"manifest SHA-256 {result['manifest_sha256']}"
          + (" (as expected)" if expect_sha256 and result["ok"] else "")
          + {"agrees": " (manifest.sha256 beside it agrees)",
             "absent": " (no manifest.sha256 beside it)"}.get(result["checksum"], ""))
    recorded = result["recorded_dir"]
    where = (f"run folder {printable(result['run_folder'])}"
             + ("" if recorded is None or os.path.normpath(recorded) == result["run_folder"] else
                f" (written at {printable(recorded)}: a copy or a moved folder, checked where it lies now)")
             + ("; an old manifest (version 1) with no run folder recorded or inferred: files checked at their "
                "recorded absolute paths" if recorded is None else ""))
    print(where)
    print(f"{result['checked']} files checked ({result['in_run']} in the run folder, by their path relative to it; "
          f"{result['external']} outside it, at their recorded path): "
          + ("all unchanged" if result["ok"] and not inconsistent else
             f"{len(result['changed'])} changed, {len(result['missing'])} missing, {len(result['unhashed'])} without "
             f"a hash, {len(result['foreign'])} foreign, {len(inconsistent)} record(s) contradicting themselves, "
             f"{len(result['problems'])} other problem(s): FAILED"))
    return _library_checked(path, library) and result["ok"] and not inconsistent


def _library_checked(path: str, library: str | None) -> bool:
    """For a ``camid library search`` run: the cameras it compared re-checked against the library
    (:func:`camid_gpu.library.runcheck.verify_search_run`); True for other runs."""
    manifest = custody.read_manifest(path)
    if manifest.data.get("command") != "library-search":
        if library is not None:
            print(f"note: --library is for a library search run; this is a {printable(manifest.data.get('command'))} run")
        return True
    from camid_gpu.library.runcheck import verify_search_run

    out = verify_search_run(manifest, library)
    for problem in out["problems"]:
        print(f"LIBRARY  {printable(problem)}")
    for note in out["notes"]:
        print(f"note: {printable(note)}")
    print(f"library {printable(out['library'])}: {out['cameras']} cameras compared by the run checked in its catalogue, "
          f"{out['rows']} screening rows and {out['arrays']} fingerprint arrays re-hashed: "
          + ("all as the run read them" if not out["problems"] else f"{len(out['problems'])} problem(s): FAILED"))
    return not out["problems"]


def _record_problems(result: dict) -> list[str]:
    """The records of the run folder's results that contradict themselves (their decision is not what their own
    scores give): caught even where no manifest entry can say the file changed."""
    from camid_gpu.pipeline.records import inconsistent_records

    path = os.path.join(result["run_folder"], "results.jsonl")
    if not os.path.isfile(path):
        return []
    try:
        return inconsistent_records(path)
    except OSError as exc:
        return [f"{path} cannot be read ({exc.strerror or exc})"]


def _manifest_data(path: str) -> dict:
    try:
        return custody.read_manifest(path).data
    except ValueError:
        return {}


def _adopted(data: dict) -> list[dict]:
    adopted = data.get("adopted_unverified")
    return [a for a in adopted if isinstance(a, dict)] if isinstance(adopted, list) else []

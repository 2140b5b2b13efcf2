"""Reading a run folder for the report: the records of ``results.jsonl``, the manifest, the evaluation
and the fingerprint store, each optional but the records.

What is missing or unreadable becomes a note (plain text, escaped when written) and the report is made
without it; only a folder with no readable ``results.jsonl`` is an error. The records keep the shape of
:class:`camid_gpu.pipeline.records.ImageRecord` (read as JSON: a hand-edited file may break it, so the
sections look values up with :func:`dig` and :func:`camid_gpu.config.is_finite_number`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from camid_gpu._shared import custody as _custody
from camid_gpu._shared.jsonio import sha256_or_none
from camid_gpu.config import PCE_THRESHOLD, is_finite_number
from camid_gpu.errors import CamidError
from camid_gpu.pipeline.records import final_view, inconsistent_records
from camid_gpu._shared.custody import Custody, check_files

if TYPE_CHECKING:
    from camid_gpu.pipeline.records import ImageRecord


@dataclass
class Run:
    """A run folder as read: records in file order (image #n is ``records[n - 1]``), the optional
    documents beside them, and the notes on what was missing."""

    run_dir: str
    records: list[ImageRecord]
    manifest: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    fp_dir: str | None
    store: list[Any]
    cameras: list[str]
    notes: list[str] = field(default_factory=list)  # plain text; escaped when written
    fp_check: dict[str, str] = field(default_factory=dict)  # fingerprint file name -> status
    custody: Custody = field(default_factory=Custody)  # the files read, checked against the manifest

    @property
    def ok(self) -> list[tuple[int, ImageRecord]]:
        """(image number, record) of the images analysed (no error)."""
        return [(i, r) for i, r in enumerate(self.records, 1) if not r.get("error")]

    @property
    def has_truth(self) -> bool:
        return self.evaluation is not None or any(r.get("truth") for r in self.records)

    def has(self, method: str) -> bool:
        return any(isinstance(r.get(method), dict) for r in self.records)

    @property
    def threshold(self) -> float:
        for r in self.records:
            t = (r.get("pce") or {}).get("threshold") if isinstance(r.get("pce"), dict) else None
            if is_finite_number(t):
                return float(t)
        t = ((self.manifest or {}).get("params") or {}).get("pce_threshold")
        return float(t) if is_finite_number(t) else PCE_THRESHOLD


def dig(obj: Any, *keys: str, default: Any = None) -> Any:
    """Nested dict lookup that tolerates anything missing or of the wrong type."""
    for k in keys:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(k)
    return default if obj is None else obj


def _read_json(path: str, what: str, notes: list[str]) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        notes.append(f"{what} {path} could not be read ({exc}); the report is made without it.")
        return None
    if not isinstance(data, dict):
        notes.append(f"{what} {path} is not a JSON object; the report is made without it.")
        return None
    return data


def _read_records(path: str, notes: list[str]) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().split("\n")
    except OSError as exc:
        raise CamidError(f"{path}: cannot read the results ({exc.strerror or exc})") from None
    records, bad = [], 0
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
            bad += 1
            continue
        if n == len(lines) - 1:  # no newline after it: a record still being written
            bad += 1
            continue
        records.append(rec)
    if bad:
        notes.append(f"{bad} line(s) of {path} are not complete result records and were skipped.")
    return final_view(records)  # one record per input: a retried or flagged file's latest record


def load_run(run_dir: str, fingerprints_dir: str | None) -> Run:
    notes: list[str] = []
    results = os.path.join(run_dir, "results.jsonl")
    if not os.path.isfile(results):
        raise CamidError(f"{run_dir}: no results.jsonl (not a camid identify/evaluate run folder)")
    records = _read_records(results, notes)
    manifest = _read_json(os.path.join(run_dir, "manifest.json"), "The manifest", notes)
    if manifest is None and not any("manifest" in n for n in notes):
        notes.append(f"No manifest.json in {run_dir}: the command, times, software versions and the SHA-256 of "
                     f"the fingerprints used are not known from the run.")
    elif manifest is not None and manifest.get("format") != "camid-manifest":
        notes.append(f"manifest.json in {run_dir} is not a camid manifest (format {manifest.get('format')!r}); "
                     f"shown as found.")
    evaluation = _read_json(os.path.join(run_dir, "evaluation.json"), "The evaluation", notes)

    fp_dir = _fingerprints_dir(run_dir, manifest, fingerprints_dir, notes)
    store: list[Any] = []
    if fp_dir is not None:
        from camid_gpu.report.store_view import open_store

        try:  # a store with no manifest of its own is drawn (the run's manifest checks its files below); arrays on use
            store = open_store(fp_dir)
        except (CamidError, OSError, ValueError, KeyError) as exc:
            notes.append(f"The fingerprints in {fp_dir} could not be loaded ({exc}); the per-camera figures are "
                         f"left out.")
    cameras = _cameras(records, evaluation, store, manifest)
    run = Run(run_dir, records, manifest, evaluation, fp_dir, store, cameras, notes)
    if evaluation is None and any(r.get("truth") for r in records):
        try:
            from camid_gpu.evaluate import summarise

            methods = [m for m in ("pce", "mahalanobis") if run.has(m)]
            usable = [r for r in records if r.get("error") or all(isinstance(r.get(m), dict) for m in methods)]
            run.evaluation = summarise(usable, cameras, methods, run.threshold)
            notes.append("No evaluation.json: the ground-truth scores were computed from the records' truth.")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            notes.append(f"The records carry ground truth but could not be scored ({exc}).")
    # every file it reads (evidence.json by the evidence section), against the manifest; and every record against
    # its own scores
    run.custody = check_files(run_dir, [n for n in ("results.jsonl", "evaluation.json", "evidence.json")
                                        if os.path.isfile(os.path.join(run_dir, n))])
    run.custody.problems += inconsistent_records(results)
    if dig(manifest, "adopted_unverified"):
        run.custody.caveats.append("a resume kept results that no manifest vouched for (--adopt-unverified); they "
                                   "were checked only against their own scores")
    if dig(manifest, "interrupted"):
        run.custody.caveats.append(f"the run was interrupted ({dig(manifest, 'interrupted')}): this report shows what "
                                   f"it wrote before it stopped, not a finished run (resume it to finish)")
    if dig(manifest, "fingerprint_store", "verified") is False:
        run.custody.caveats.append("the run used a fingerprint store that had no manifest (--unverified-store): "
                                   "its fingerprint files were not checked against any record when it was loaded")
    _check_fingerprints(run)
    return run


def _fingerprints_dir(run_dir: str, manifest: dict[str, Any] | None, given: str | None,
                      notes: list[str]) -> str | None:
    if given is not None:
        if not os.path.isdir(given):
            notes.append(f"The fingerprint folder {given} does not exist; the per-camera figures are left out.")
            return None
        return given
    recorded = _recorded_fingerprints_dir(run_dir, manifest)
    local = os.path.join(run_dir, "fingerprints")
    if isinstance(recorded, str) and os.path.isdir(recorded):
        return recorded
    if os.path.isdir(local):
        if isinstance(recorded, str):
            notes.append(f"The manifest's fingerprint folder {recorded} does not exist; {local} is used instead.")
        return local
    if isinstance(recorded, str):
        notes.append(f"The manifest's fingerprint folder {recorded} does not exist; the per-camera figures are "
                     f"left out (give the folder with --fingerprints).")
    else:
        notes.append("No fingerprint folder (none in the manifest, no fingerprints/ in the run folder); the "
                     "per-camera figures are left out (give the folder with --fingerprints).")
    return None


def _recorded_fingerprints_dir(run_dir: str, manifest: dict[str, Any] | None) -> str | None:
    """The manifest's ``fingerprints_dir`` where it lies now: a store inside the run folder (evaluate) is the one
    in this run folder, also for a copy or a moved folder (never the original's)."""
    if manifest is None:
        return None
    try:
        return _custody.resolve_folder(manifest.get("fingerprints_dir"),
                                       _custody.read_manifest(os.path.join(run_dir, "manifest.json")))
    except ValueError:
        value = manifest.get("fingerprints_dir")
        return value if isinstance(value, str) else None


def _cameras(records, evaluation, store, manifest) -> list[str]:
    # a mixed store scores each image against some cameras only: the union, scored or not comparable
    found: dict[str, None] = {}
    for r in records:
        for method, key in (("pce", "scores"), ("pce", "not_comparable"), ("mahalanobis", "membership"),
                            ("mahalanobis", "not_comparable")):
            part = r.get(method) if isinstance(r.get(method), dict) else {}
            if isinstance(part.get(key), dict):
                found.update((str(c), None) for c in part[key])
    if found:
        return sorted(found) if store is None else [fp.camera for fp in store if fp.camera in found] or sorted(found)
    if evaluation and isinstance(evaluation.get("cameras"), list):
        return [str(c) for c in evaluation["cameras"]]
    if store:
        return [fp.camera for fp in store]
    return [str(f.get("camera")) for f in (manifest or {}).get("fingerprints", []) or []
            if isinstance(f, dict) and f.get("camera") and str(f.get("path", "")).endswith(".json")]


def _check_fingerprints(run: Run) -> None:
    """Compare the fingerprint files now in ``run.fp_dir`` with the SHA-256 in the manifest."""
    if not run.manifest or not run.fp_dir:
        return
    differ = []
    for entry in run.manifest.get("fingerprints", []) or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            continue
        name = os.path.basename(entry["path"])
        current = sha256_or_none(os.path.join(run.fp_dir, name))
        if current is None:
            run.fp_check[name] = "missing now"
        elif current == entry.get("sha256"):
            run.fp_check[name] = "same now"
        else:
            run.fp_check[name] = "DIFFERS now"
            differ.append(name)
    run.custody.problems += [f"fingerprint file {name} in {run.fp_dir}: {run.fp_check[name]} (compared with its "
                             f"SHA-256 in the manifest)" for name in sorted(run.fp_check)
                             if run.fp_check[name] != "same now"]
    if differ:
        run.notes.append(f"Fingerprint file(s) {', '.join(differ)} in {run.fp_dir} differ from the ones the run "
                         f"used (SHA-256 in the manifest): the per-camera figures are drawn from the files now "
                         f"on disk, the decisions came from the recorded ones.")

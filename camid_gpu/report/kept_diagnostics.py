"""The report's casework diagnostics computed in one bounded pass and kept in the run folder.

The correlation surface of each decision and the fingerprint quality of each camera are recomputed from the
evidence (:mod:`camid_gpu.evidence.diagnostics`), one file at a time: the pass's working set is one image's,
whatever the number of images, references or cameras, and its bar counts files (one per surface, two per
reference), so its time left means something. What it finds is small (121 numbers per surface, three per
reference) and is kept in ``RUN/diagnostics/diagnostics.json`` with a manifest of its own beside it
(``RUN/diagnostics/manifest.json`` and ``manifest.sha256``; the run's own manifest is never rewritten, so the
SHA-256 an examiner noted for it stays true). A later report of the same run reads them back only when the file
agrees with that manifest and was computed for this run: the run manifest's SHA-256, the fingerprints' arrays,
the parameters, the images and cameras drawn and camid's version; otherwise they are computed again, and the
report says which.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Sequence

from camid_gpu._shared.custody import check_files
from camid_gpu._shared.jsonio import write_json
from camid_gpu._shared.progress import Progress
from camid_gpu._version import __version__
from camid_gpu.config import DIAGNOSTICS_BYTES_PER_PIXEL, Params
from camid_gpu.errors import CamidError
from camid_gpu.evidence.diagnostics import fingerprint_quality, pce_surface
from camid_gpu.report.load import Run

DIAGNOSTICS_DIR = "diagnostics"
DIAGNOSTICS_FILE = "diagnostics.json"
FORMAT = "camid-report-diagnostics"


def _key(run: Run, params: Params, surfaces: Sequence[tuple[int, dict, str]], cameras: Sequence[Any],
         budget: int) -> dict:
    """What the diagnostics depend on: kept ones are used only when all of it is the same."""
    key = {"host_budget": int(budget), "run_manifest_sha256": run.custody.manifest_sha256, "camid": __version__, "params": params.to_dict(),
           "fingerprints": {fp.camera: getattr(fp, "arrays_sha256", None) for fp in run.store},
           "surfaces": [[i, cam] for i, _, cam in surfaces], "cameras": [fp.camera for fp in cameras]}
    return json.loads(json.dumps(key))  # as read back (tuples become lists)


def _read_kept(run: Run, key: dict) -> tuple[dict | None, str]:
    """(the kept diagnostics, or None; a sentence saying why they are or are not used)."""
    folder = os.path.join(run.run_dir, DIAGNOSTICS_DIR)
    path = os.path.join(folder, DIAGNOSTICS_FILE)
    if not os.path.isfile(path):
        return None, ""
    check = check_files(folder, [DIAGNOSTICS_FILE])
    if check.problems:
        return None, (f"computed again: the kept {DIAGNOSTICS_DIR}/{DIAGNOSTICS_FILE} did not agree with its manifest "
                      f"({'; '.join(check.problems)}); ")
    try:
        with open(path, encoding="utf-8") as handle:
            kept = json.load(handle)
    except (OSError, ValueError) as exc:
        return None, f"computed again: the kept {DIAGNOSTICS_FILE} could not be read ({exc}); "
    if not isinstance(kept, dict) or kept.get("format") != FORMAT or kept.get("key") != key:
        return None, "computed again: the kept ones were of another run, store, parameters or camid version; "
    return kept, _where(check.manifest_sha256)


def _where(manifest_sha256: str | None) -> str:
    # the same words when computed and kept as when read back: the same run gives the same report bytes
    return (f"kept in {DIAGNOSTICS_DIR}/{DIAGNOSTICS_FILE} of the run folder, checked against its manifest there "
            f"(SHA-256 {manifest_sha256})")


def _keep(run: Run, params: Params, data: dict) -> str:
    """Write ``data`` and its manifest into ``RUN/diagnostics``; a sentence saying where (or why not)."""
    from camid_gpu.engine.run_folder import write_manifest
    from camid_gpu.provenance import file_entry, utc_now

    folder = os.path.join(run.run_dir, DIAGNOSTICS_DIR)
    try:
        os.makedirs(folder, exist_ok=True)
        started = utc_now()
        path = write_json(os.path.join(folder, DIAGNOSTICS_FILE), data)
        inputs = [file_entry(os.path.join(run.run_dir, "manifest.json"), "run manifest")]
        _, digest = write_manifest(folder, "report diagnostics", None, params.to_dict(), "numpy", started, inputs,
                                   None, [path], kernels="not used")
    except OSError as exc:  # a read-only copy of a run, a full disk: the report is still made, the next recomputes
        _discard(folder)
        return f"computed by this report, not kept in the run folder ({exc.strerror or exc})"
    return _where(digest)


def _discard(folder: str) -> None:
    """Remove what a failed keep left (a file without its manifest would be a foreign file of the run folder)."""
    for name in (DIAGNOSTICS_FILE, "manifest.json", "manifest.sha256"):
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, name))
    with contextlib.suppress(OSError):
        os.rmdir(folder)  # only when empty


def _over_budget(r: dict, params: Params, budget: int) -> str | None:
    """Why the surface of record ``r`` is not drawn within ``budget`` bytes (None when it fits)."""
    size = r.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        return None
    h, w = params.pce_clip or size
    need = h * w * DIAGNOSTICS_BYTES_PER_PIXEL
    if need <= budget:
        return None
    return (f"not drawn: recomputing the correlation of a {h}x{w} frame needs about {need / 2**30:.2f} GiB, over the "
            f"host memory budget of {budget / 2**30:.2f} GiB (--max-host-memory)")


def _compute(run: Run, params: Params, surfaces: Sequence[tuple[int, dict, str]], cameras: Sequence[Any],
             bar: Progress, budget: int) -> dict:
    by_name = {fp.camera: fp for fp in run.store}
    out: dict[str, Any] = {"surfaces": {}, "quality": {}}
    for i, r, cam in sorted(surfaces, key=lambda t: (t[2], t[0])):  # one camera's arrays read once
        over = _over_budget(r, params, budget)
        if over:
            out["surfaces"][str(i)] = {"error": over}
            bar.advance()
            continue
        try:
            out["surfaces"][str(i)] = pce_surface(str(r.get("realpath") or r.get("path")), int(r.get("rotation") or 0),
                                                  by_name[cam].k, params)
        except (CamidError, OSError, ValueError) as exc:
            out["surfaces"][str(i)] = {"error": str(exc)}
        bar.advance()
    for fp in cameras:
        refs = [str(x.get("path")) for x in fp.references]
        try:
            out["quality"][fp.camera] = {"rows": fingerprint_quality(refs, params, on_file=bar.advance)}
        except (CamidError, OSError, ValueError) as exc:
            out["quality"][fp.camera] = {"error": str(exc)}
    return out


def diagnostics(run: Run, params: Params, surfaces: Sequence[tuple[int, dict, str]], cameras: Sequence[Any],
                progress: bool | None = False, host_budget: int | None = None) -> dict:
    """The surfaces (``surfaces``: image number, record, decided camera) and the fingerprint quality (``cameras``)
    of ``run``: kept ones when they are this run's, else computed in one pass (a bar over the files) and kept.
    ``host_budget``: bytes (default :func:`~camid_gpu.engine.scheduler.default_host_memory`); a frame that needs
    more gets no surface. Returns ``{"surfaces": {"#": surface or {"error"}}, "quality": {camera: {"rows"} or
    {"error"}}, "origin"}``."""
    from camid_gpu.engine.scheduler import default_host_memory

    budget = host_budget or default_host_memory()
    key = _key(run, params, surfaces, cameras, budget)
    can_keep = run.custody.manifest_sha256 is not None  # a run with no manifest has nothing to tie them to
    kept, origin = _read_kept(run, key) if can_keep else (None, "")
    if kept is not None:
        return {"surfaces": kept.get("surfaces") or {}, "quality": kept.get("quality") or {}, "origin": origin}
    files = len(surfaces) + 2 * sum(len(fp.references) for fp in cameras)
    with Progress(files, "report diagnostics (files)", progress) as bar:
        data = _compute(run, params, surfaces, cameras, bar, budget)
    origin += _keep(run, params, {"format": FORMAT, "key": key, **data}) if can_keep else \
        "computed by this report, not kept (the run has no manifest to tie them to)"
    return {**data, "origin": origin}

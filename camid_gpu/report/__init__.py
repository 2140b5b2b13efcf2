"""One self-contained HTML report of a run folder (``camid report RUN_DIR``).

Input: a run folder written by ``camid identify`` or ``camid evaluate``: ``results.jsonl`` (one record
per image), and when present ``manifest.json`` (provenance), ``evaluation.json`` (ground-truth scores)
and the fingerprint store (``manifest["fingerprints_dir"]``, else ``RUN_DIR/fingerprints``). Only
``results.jsonl`` is required; a missing or unreadable manifest, evaluation or fingerprint store is
said in the report, and the sections that need it are left out.

Output: one HTML file with no external references: figures are PNG embedded as ``data:`` URIs, the
style sheet is inline, there is no script. Sections:

1. the run: command, times, software, backend, parameters, fingerprints with their SHA-256 (checked
   against the files now on disk), and the reading guide (PCE decides; Mahalanobis is reported beside);
2. the decision of every image of the run, failed files included with their reason;
3. PCE per image: a bar chart against every fingerprint (symlog axis, threshold drawn), or for runs of
   more than :data:`MAX_IMAGE_CHARTS` images heat-maps of the PCE matrix; every score in a table;
4. the Mahalanobis method as in the paper: membership matrix, effectiveness (with ground truth), what
   drove the votes, and per image the membership, pairwise satisfied / unsatisfied counts and trace;
5. per camera, the paper's Figures 1-5: the PDF of I0 of the fingerprint and of the disputed images, and
   their Gaussian contours in the (I0, PRNU) discriminant plane;
6. with ground truth: accuracy, confusion matrices of both methods and the PCE ROC curve (AUC, EER).

Every string taken from the run (paths, EXIF, error reasons, camera names, parameters) is HTML-escaped;
figures carry only camera names and image numbers (#n, as in the decision table), never file names.
The output depends only on the run folder (no time stamp of its own; PNGs carry no software/date
metadata), so the same run gives the same bytes with the same matplotlib.

Modules: :mod:`.load` (the run folder as read, with notes on what is missing), :mod:`.html` (escaping,
tables, the page), :mod:`.figures` (matplotlib: style, PNG embedding), one module per section --
:mod:`.overview` (1), :mod:`.decisions` (2), :mod:`.pce` (3), :mod:`.membership` and :mod:`.diagnostics`
(4), :mod:`.cameras` (5), :mod:`.truth` (6) -- and :mod:`.render`, which puts them together.
:mod:`.cluster` is the report of a ``camid cluster`` run (recognised by its ``clusters.json``), :mod:`.library`
that of a ``camid library search`` (recognised by its ``run.json``).
"""
from __future__ import annotations

import os

from camid_gpu.report import cluster as _cluster
from camid_gpu.report import library as _library
from camid_gpu.report import render as _render
from camid_gpu.report.custody import write_checksum
from camid_gpu.report.render import render_report


def write_report(run_dir: str | os.PathLike, output_html: str | os.PathLike,
                 fingerprints_dir: str | os.PathLike | None = None, progress: bool | None = False) -> str:
    """Write the HTML report of ``run_dir`` (either kind of run folder); returns the path written.
    ``camid cluster`` runs (recognised by their ``clusters.json``) get :mod:`.cluster`'s report."""
    return write_checked_report(run_dir, output_html, fingerprints_dir, progress)[0]


def write_checked_report(run_dir: str | os.PathLike, output_html: str | os.PathLike,
                         fingerprints_dir: str | os.PathLike | None = None,
                         progress: bool | None = False, host_budget: int | None = None) -> tuple[str, str, list[str]]:
    """:func:`write_report`; returns (path, the report's SHA-256, also written to ``PATH.sha256`` beside it, and
    one sentence per file the report read that differs from the run's manifest: shown in its banner)."""
    if _cluster.is_cluster_run(run_dir):
        path, check = _cluster.write_cluster_report(run_dir, output_html)
    elif _library.is_library_run(run_dir):
        path, check = _library.write_library_report(run_dir, output_html)
    else:
        path, check = _render.write_checked_report(run_dir, output_html, fingerprints_dir, progress, host_budget)
    return path, write_checksum(path), check.problems


__all__ = ["render_report", "write_checked_report", "write_report"]

"""The report of a run folder: read it (:mod:`.load`), draw each section, assemble the page (:mod:`.html`)."""
from __future__ import annotations

import os
import warnings

from camid_gpu._shared.custody import Custody
from camid_gpu._shared.files import atomic_write
from camid_gpu._shared.progress import Progress
from camid_gpu.report import cameras, decisions, membership, overview, pce, truth
from camid_gpu.report import evidence, quality, store_view
from camid_gpu.report import video
from camid_gpu.report.figures import RC, load_matplotlib
from camid_gpu.report.html import page
from camid_gpu.report.load import Run, load_run


def write_report(run_dir: str | os.PathLike, output_html: str | os.PathLike,
                 fingerprints_dir: str | os.PathLike | None = None, progress: bool | None = False) -> str:
    """Write the HTML report of ``run_dir`` to ``output_html`` and return the path written.

    ``fingerprints_dir``: the fingerprint store to draw the per-camera figures from (default: the
    manifest's ``fingerprints_dir``, else ``run_dir/fingerprints``). Raises :class:`CamidError` when
    ``run_dir`` has no readable ``results.jsonl``, :class:`MissingExtraError` without matplotlib.
    """
    return write_checked_report(run_dir, output_html, fingerprints_dir, progress)[0]


def write_checked_report(run_dir: str | os.PathLike, output_html: str | os.PathLike,
                         fingerprints_dir: str | os.PathLike | None = None,
                         progress: bool | None = False, host_budget: int | None = None) -> tuple[str, Custody]:
    """:func:`write_report`, returning also what the files it read were checked against (its banner);
    ``host_budget``: bytes the recomputed diagnostics may use (``--max-host-memory``)."""
    run = load_run(os.fspath(run_dir), None if fingerprints_dir is None else os.fspath(fingerprints_dir))
    text = _render(run, progress, host_budget)
    output_html = os.fspath(output_html)
    with atomic_write(output_html) as handle:  # a failure (a full disk) leaves no temporary file behind
        handle.write(text)
    return output_html, run.custody


def render_report(run_dir: str | os.PathLike, fingerprints_dir: str | os.PathLike | None = None,
                  progress: bool | None = False) -> str:
    """The report of ``run_dir`` as one HTML string (see :func:`write_report`); ``progress``: a bar per section
    (None = on a terminal)."""
    return _render(load_run(os.fspath(run_dir), None if fingerprints_dir is None else os.fspath(fingerprints_dir)),
                   progress)


def _render(run: Run, progress: bool | None = False, host_budget: int | None = None) -> str:
    mpl = load_matplotlib()
    with mpl.rc_context(RC), warnings.catch_warnings():
        # figures hold only camera names and numbers, but a camera name from a hand-edited file could
        # still miss a glyph: that must not stop a report (pytest runs with warnings as errors)
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        warnings.filterwarnings("ignore", message="constrained_layout not applied", category=UserWarning)
        # the recomputed diagnostics first, in one bounded pass with a bar over its files (or read where kept)
        found = quality.diagnostics(run, progress, host_budget)
        steps = [lambda: evidence.casework_section(run), lambda: overview.section(run),
                 lambda: decisions.section(run), lambda: evidence.evidence_section(run), lambda: pce.section(run, mpl),
                 lambda: membership.section(run), lambda: cameras.section(run, mpl), lambda: truth.section(run, mpl),
                 lambda: quality.section(run, found) if found is not None else "", lambda: video.section(run, mpl)]
        try:
            with Progress(len(steps), "report sections", progress) as bar:  # the figures take the time
                body = []
                for step in steps:
                    body.append(step())
                    bar.advance()
        finally:
            store_view.release()  # the one camera's arrays a figure read
    return page(run, [b for b in body if b])

"""The self-contained HTML report of a run folder: :mod:`.html` (identification and evaluation runs) and
:mod:`.cluster` (``camid cluster`` runs, recognised by their ``clusters.json``)."""
from __future__ import annotations

import os

from camid_gpu.report import cluster as _cluster
from camid_gpu.report import html as _html


def write_report(run_dir: str | os.PathLike, output_html: str | os.PathLike,
                 fingerprints_dir: str | os.PathLike | None = None) -> str:
    """Write the HTML report of ``run_dir`` (either kind of run folder); returns the path written."""
    if _cluster.is_cluster_run(run_dir):
        return _cluster.write_cluster_report(run_dir, output_html)
    return _html.write_report(run_dir, output_html, fingerprints_dir)


__all__ = ["write_report"]

"""The report's chain of custody: every file a report reads is checked against the run's manifest first.

:func:`~camid_gpu._shared.custody.check_files` re-hashes the run folder's files that the report draws from
(``results.jsonl``, ``evaluation.json``, ``clusters.json``, ...) where the run folder lies now, and checks the
manifest against ``manifest.sha256`` beside it. :func:`banner` is the block at the top of the
report: the manifest's SHA-256 (so the report names the exact record it was made from), and, in red, every
file that differs from it, is missing, or could not be checked. The report is still made (it shows what is
on disk now), and ``camid report`` says so on stderr and exits 2. The report file itself is written with its
own SHA-256 beside it (``report.html.sha256``, :func:`write_checksum`).
"""
from __future__ import annotations

import hashlib
import html
import os

from camid_gpu._shared.custody import Custody
from camid_gpu._shared.files import atomic_write
from camid_gpu.io.listing import printable


def banner(check: Custody) -> str:
    """The block at the top of the report (HTML; every string escaped)."""
    def esc(value: object) -> str:
        return html.escape(printable(value), quote=True)

    digest = (f'the run\'s manifest has SHA-256 <code>{esc(check.manifest_sha256)}</code>'
              if check.manifest_sha256 else "the run has no readable manifest")
    caveats = "".join(f'<p class="note"><b>Chain of custody:</b> {esc(c)}</p>\n' for c in check.caveats)
    if not check.problems:
        return (f'<p class="custody-ok"><b>Chain of custody:</b> {digest}; every file this report reads '
                f'({esc(", ".join(check.same))}) has the SHA-256 it records.</p>\n{caveats}')
    items = "".join(f"<li>{esc(p)}</li>" for p in check.problems)
    return (f'<div class="custody-bad"><p><b>CHAIN OF CUSTODY: files differ from the run\'s record.</b> {digest}. '
            f"What this report shows from the files below is what is on disk now, not what the run recorded:</p>"
            f"<ul>{items}</ul></div>\n{caveats}")


#: the banner's style (added to the page's style sheet)
CSS = (".custody-ok{background:#dafbe1;border:1px solid #4ac26b;padding:.4em .8em;margin:.4em 0}"
       ".custody-bad{background:#ffebe9;border:2px solid #cf222e;color:#82071e;padding:.4em .8em;margin:.4em 0}")


def write_checksum(report_path: str) -> str:
    """Write ``REPORT.sha256`` beside the report (``sha256sum`` format); return its SHA-256."""
    with open(report_path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    with atomic_write(report_path + ".sha256", "w") as handle:
        handle.write(f"{digest}  {os.path.basename(report_path)}\n")
    return digest

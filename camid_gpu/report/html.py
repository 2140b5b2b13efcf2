"""HTML building blocks of the report (every string from the run is escaped here) and the page around
the sections: title, notes, table of contents, inline style sheet; no script, no external reference.
"""
from __future__ import annotations

import html
import json
import os
from typing import Any, Iterable, Sequence

from camid_gpu._version import __version__
from camid_gpu.config import is_finite_number
from camid_gpu.io.listing import printable
from camid_gpu.report.custody import CSS as _CUSTODY_CSS
from camid_gpu.report.custody import banner
from camid_gpu.report.load import Run

#: per-image detail blocks (full scores, pairwise tables) are written for at most this many images
MAX_DETAILED_IMAGES = 1000

NONE = "\u2014"  # em dash for "no value"


def esc(value: Any) -> str:
    """``value`` escaped for HTML text and attribute values (quotes included)."""
    # printable(): control characters and undecodable file-name bytes shown as escapes, never raw
    return html.escape(printable(value), quote=True)


def num(v: Any, spec: str = ".4g") -> str:
    """A number for a table cell (already escaped-safe), or an em dash."""
    if is_finite_number(v):
        return format(v, spec)
    return NONE if v is None else esc(v)


def pct(v: Any) -> str:
    return f"{v:.0f}%" if is_finite_number(v) else NONE


def html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """HTML table; headers are plain text (escaped), cells are HTML already."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def kv_table(pairs: Iterable[tuple[str, str]]) -> str:
    """Two-column key/value table; keys plain text, values HTML."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def json_value(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return f"<code>{esc(json.dumps(v, sort_keys=True))}</code>"
    return esc(v) if v is not None else NONE


def img_label(i: int) -> str:
    return f"#{i}"


def image_link(i: int, path: str, anchor: str = "pce") -> str:
    return f'<a href="#{anchor}-{i}">{esc(path)}</a>'


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.5em auto;
max-width:1400px;padding:0 1em;color:#1b1f23;font-size:14px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.4em}code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
table{border-collapse:collapse;margin:.5em 0 1em 0;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.num,th.num{text-align:right}table.kv th{width:16em}
td.err{color:#a40e26}.ok{color:#116329}.bad{color:#a40e26}.muted{color:#6e7781}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.4em .8em;margin:.4em 0}
.lead{background:#ddf4ff;border:1px solid #54aeff;padding:.5em .9em;margin:.6em 0}
.grid{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;border:1px solid #d0d7de;padding:4px;background:#fff}
figcaption{font-size:.85em;max-width:360px;overflow-wrap:anywhere}img{max-width:100%;height:auto}
details{margin:.3em 0}details>summary{cursor:pointer}.wrap{overflow-wrap:anywhere}
nav ol{columns:2}td.beat{font-weight:bold}.scroll{overflow-x:auto}
table.decisions td.wrap{min-width:16em}
@media print{body{max-width:none;font-size:9pt}table{font-size:7.5pt}.scroll{overflow:visible}
table.decisions td.wrap{min-width:10em}details{break-inside:avoid}}
"""

#: (section id, title) in page order; a section left out of the page is left out of the contents
TOC = [("casework", "Casework record"), ("run", "1. The run"), ("decisions", "2. Decisions"),
       ("evidence", "Evidence strength (likelihood ratios)"), ("pce", "3. PCE per image"),
       ("mahalanobis", "4. Mahalanobis 2-DOF classifier"), ("cameras", "5. Fingerprints and disputed images"),
       ("truth", "6. Evaluation against ground truth"),
       ("quality", "Diagnostics: correlation surfaces and fingerprint quality")]


def page(run: Run, sections: list[str]) -> str:
    """The whole document: title, the run's notes, the contents of the sections present, the sections."""
    title = f"camid report: {os.path.basename(os.path.abspath(run.run_dir))}"
    toc = "".join(f'<li><a href="#{sid}">{esc(name)}</a></li>' for sid, name in TOC if
                  any(f'id="{sid}"' in s for s in sections))
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in run.notes)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}{_CUSTODY_CSS}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>\n{banner(run.custody)}"
        f'<p class="muted">Run folder <span class="mono">{esc(os.path.abspath(run.run_dir))}</span>; report made '
        f"by camid_gpu {esc(__version__)}.</p>\n"
        f"{notes}<nav><ol>{toc}</ol></nav>\n" + "\n".join(sections) + "\n</body></html>\n"
    )

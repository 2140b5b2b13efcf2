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
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shlex
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from camid_gpu._shared.jsonio import sha256_or_none
from camid_gpu._version import __version__
from camid_gpu.config import PCE_THRESHOLD
from camid_gpu.errors import CamidError, MissingExtraError
from camid_gpu.io.listing import printable

#: more images than this: no per-image bar charts, heat-maps of the PCE matrix instead
MAX_IMAGE_CHARTS = 40
#: rows per PCE heat-map figure (above MAX_IMAGE_CHARTS images)
HEATMAP_ROWS = 50
#: more images than this: one overview heat-map without per-row labels
MAX_HEATMAP_FIGURES = 20
#: per-image detail blocks (full scores, pairwise tables) are written for at most this many images
MAX_DETAILED_IMAGES = 1000
#: per-camera figures (I0 PDF, discriminant plane) for at most this many cameras
MAX_CAMERA_FIGURES = 60
#: disputed-image curves / ellipses drawn per group in a camera figure
MAX_CURVES = 30
#: symlog linear range of the PCE axis: |PCE| below this is noise and is drawn linearly
PCE_LINTHRESH = 10.0
BINS = 64

_NONE = "\u2014"  # em dash for "no value"


def write_report(run_dir: str | os.PathLike, output_html: str | os.PathLike,
                 fingerprints_dir: str | os.PathLike | None = None) -> str:
    """Write the HTML report of ``run_dir`` to ``output_html`` and return the path written.

    ``fingerprints_dir``: the fingerprint store to draw the per-camera figures from (default: the
    manifest's ``fingerprints_dir``, else ``run_dir/fingerprints``). Raises :class:`CamidError` when
    ``run_dir`` has no readable ``results.jsonl``, :class:`MissingExtraError` without matplotlib.
    """
    text = render_report(run_dir, fingerprints_dir)
    output_html = os.fspath(output_html)
    parent = os.path.dirname(os.path.abspath(output_html))
    os.makedirs(parent, exist_ok=True)
    tmp = output_html + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, output_html)
    return output_html


def render_report(run_dir: str | os.PathLike, fingerprints_dir: str | os.PathLike | None = None) -> str:
    """The report of ``run_dir`` as one HTML string (see :func:`write_report`)."""
    mpl = _matplotlib()
    run = _load_run(os.fspath(run_dir), None if fingerprints_dir is None else os.fspath(fingerprints_dir))
    with mpl.rc_context(_RC), warnings.catch_warnings():
        # figures hold only camera names and numbers, but a camera name from a hand-edited file could
        # still miss a glyph: that must not stop a report (pytest runs with warnings as errors)
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        warnings.filterwarnings("ignore", message="constrained_layout not applied", category=UserWarning)
        body = [_section_run(run), _section_decisions(run), _section_pce(run, mpl), _section_mahalanobis(run),
                _section_cameras(run, mpl), _section_truth(run, mpl)]
    return _page(run, [b for b in body if b])


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
@dataclass
class _Run:
    run_dir: str
    records: list[dict[str, Any]]
    manifest: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    fp_dir: str | None
    store: list[Any]
    cameras: list[str]
    notes: list[str] = field(default_factory=list)  # plain text; escaped when written
    fp_check: dict[str, str] = field(default_factory=dict)  # fingerprint file name -> status

    @property
    def ok(self) -> list[tuple[int, dict[str, Any]]]:
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
            if _is_num(t):
                return float(t)
        t = ((self.manifest or {}).get("params") or {}).get("pce_threshold")
        return float(t) if _is_num(t) else PCE_THRESHOLD


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
    from camid_gpu.pipeline.records import final_view

    return final_view(records)  # one record per input: a retried or flagged file's latest record


def _load_run(run_dir: str, fingerprints_dir: str | None) -> _Run:
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
        from camid_gpu.store import load_store

        try:
            store = load_store(fp_dir)
        except (CamidError, OSError, ValueError, KeyError) as exc:
            notes.append(f"The fingerprints in {fp_dir} could not be loaded ({exc}); the per-camera figures are "
                         f"left out.")
    cameras = _cameras(records, evaluation, store, manifest)
    run = _Run(run_dir, records, manifest, evaluation, fp_dir, store, cameras, notes)
    if evaluation is None and any(r.get("truth") for r in records):
        try:
            from camid_gpu.evaluate import summarise

            methods = [m for m in ("pce", "mahalanobis") if run.has(m)]
            usable = [r for r in records if r.get("error") or all(isinstance(r.get(m), dict) for m in methods)]
            run.evaluation = summarise(usable, cameras, methods, run.threshold)
            notes.append("No evaluation.json: the ground-truth scores were computed from the records' truth.")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            notes.append(f"The records carry ground truth but could not be scored ({exc}).")
    _check_fingerprints(run)
    return run


def _fingerprints_dir(run_dir: str, manifest: dict[str, Any] | None, given: str | None,
                      notes: list[str]) -> str | None:
    if given is not None:
        if not os.path.isdir(given):
            notes.append(f"The fingerprint folder {given} does not exist; the per-camera figures are left out.")
            return None
        return given
    recorded = (manifest or {}).get("fingerprints_dir")
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


def _cameras(records, evaluation, store, manifest) -> list[str]:
    for r in records:
        scores = (r.get("pce") or {}).get("scores") if isinstance(r.get("pce"), dict) else None
        if isinstance(scores, dict) and scores:
            return [str(c) for c in scores]
        maha = r.get("mahalanobis")
        if isinstance(maha, dict) and isinstance(maha.get("membership"), dict) and maha["membership"]:
            return [str(c) for c in maha["membership"]]
    if evaluation and isinstance(evaluation.get("cameras"), list):
        return [str(c) for c in evaluation["cameras"]]
    if store:
        return [fp.camera for fp in store]
    return [str(f.get("camera")) for f in (manifest or {}).get("fingerprints", []) or []
            if isinstance(f, dict) and f.get("camera") and str(f.get("path", "")).endswith(".json")]


def _check_fingerprints(run: _Run) -> None:
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
    if differ:
        run.notes.append(f"Fingerprint file(s) {', '.join(differ)} in {run.fp_dir} differ from the ones the run "
                         f"used (SHA-256 in the manifest): the per-camera figures are drawn from the files now "
                         f"on disk, the decisions came from the recorded ones.")


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    # printable(): control characters and undecodable file-name bytes shown as escapes, never raw
    return html.escape(printable(value), quote=True)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _f(v: Any, spec: str = ".4g") -> str:
    """A number for a table cell (already escaped-safe), or an em dash."""
    if _is_num(v):
        return format(v, spec)
    return _NONE if v is None else _e(v)


def _pct(v: Any) -> str:
    return f"{v:.0f}%" if _is_num(v) else _NONE


def _d(obj: Any, *keys: str, default: Any = None) -> Any:
    """Nested dict lookup that tolerates anything missing or of the wrong type."""
    for k in keys:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(k)
    return default if obj is None else obj


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """HTML table; headers are plain text (escaped), cells are HTML already."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv(pairs: Iterable[tuple[str, str]]) -> str:
    """Two-column key/value table; keys plain text, values HTML."""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _json_value(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return f"<code>{_e(json.dumps(v, sort_keys=True))}</code>"
    return _e(v) if v is not None else _NONE


def _img_label(i: int) -> str:
    return f"#{i}"


def _image_link(i: int, path: str, anchor: str = "pce") -> str:
    return f'<a href="#{anchor}-{i}">{_e(path)}</a>'


# ----------------------------------------------------------------------------------------------
# matplotlib
# ----------------------------------------------------------------------------------------------
_RC = {"text.parse_math": False, "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
       "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7, "svg.hashsalt": "camid-report",
       "figure.dpi": 100, "savefig.dpi": 100, "axes.grid": False}

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf"]


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401  (fails here, not half-way through)
    except ImportError:
        raise MissingExtraError("matplotlib", "report", "camid report") from None
    return matplotlib


def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def _symlog(axis) -> None:
    """A symlog axis with plain-number labels and no minor ticks.

    Mathtext is off (``text.parse_math``: no text from a file is ever parsed as TeX), so the default
    ``10^{k}`` labels would show their source; minor ticks are dropped because measuring them
    dominates the rendering time.
    """
    from matplotlib.ticker import FuncFormatter, NullLocator

    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(_tick_label))


def _tick_label(value: float, _pos: Any = None) -> str:
    if value == 0:
        return "0"
    if abs(value) < 1e5:
        return f"{value:g}"
    return f"{value:.0e}".replace("e+0", "e").replace("e+", "e")


def _png(fig, alt: str) -> str:
    """Render a figure to an embedded PNG <img> (no software/date metadata) and release it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", metadata={"Software": None})
    finally:
        fig.clear()
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _legend(ax, **kwargs: Any) -> None:
    """A legend only when something is labelled (an empty one warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _camera_color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


# ----------------------------------------------------------------------------------------------
# page
# ----------------------------------------------------------------------------------------------
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


def _page(run: _Run, sections: list[str]) -> str:
    title = f"camid report: {os.path.basename(os.path.abspath(run.run_dir))}"
    toc = "".join(f'<li><a href="#{sid}">{_e(name)}</a></li>' for sid, name in _TOC if
                  any(f'id="{sid}"' in s for s in sections))
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in run.notes)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{_e(title)}</h1>\n"
        f'<p class="muted">Run folder <span class="mono">{_e(os.path.abspath(run.run_dir))}</span>; report made '
        f"by camid_gpu {_e(__version__)}.</p>\n"
        f"{notes}<nav><ol>{toc}</ol></nav>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


_TOC = [("run", "1. The run"), ("decisions", "2. Decisions"), ("pce", "3. PCE per image"),
        ("mahalanobis", "4. Mahalanobis 2-DOF classifier"), ("cameras", "5. Fingerprints and disputed images"),
        ("truth", "6. Evaluation against ground truth")]


# ----------------------------------------------------------------------------------------------
# 1. the run
# ----------------------------------------------------------------------------------------------
def _section_run(run: _Run) -> str:
    m = run.manifest or {}
    errors = sum(1 for r in run.records if r.get("error"))
    out = ['<section id="run"><h2>1. The run</h2>',
           '<p class="lead"><b>How to read this report.</b> The <b>PCE</b> (peak-to-correlation energy, '
           'Binghamton method) is the <b>primary decision</b>: an image is attributed to a camera when its PCE '
           f"against that camera's fingerprint exceeds the threshold ({run.threshold:g}); the false-alarm "
           "probability of that decision is given as log10. The <b>two-degree-of-freedom Mahalanobis "
           "classifier</b> (PeerJ Computer Science, 2024) is reported <i>beside</i> PCE as <b>weaker "
           "evidence</b>: its membership is a count of pairwise majority votes, not a probability, and an "
           "independent check on real cameras found it right on about half of the flat images and on none of "
           "the natural ones. Section 4 shows what drove its votes (intensity or PRNU).</p>"]
    argv = m.get("argv")
    command = shlex.join(str(a) for a in argv) if isinstance(argv, list) else None
    pairs = [("images", f"{len(run.records)} ({errors} with errors)"),
             ("cameras", _e(", ".join(run.cameras)) or _NONE),
             ("methods", _e(", ".join(x for x in ("pce", "mahalanobis") if run.has(x))) or _NONE),
             ("ground truth", "yes" if run.has_truth else "no")]
    if run.manifest is not None:
        pairs = [("command", _e(m.get("command", _NONE))),
                 ("command line", f"<code>{_e(command)}</code>" if command else _NONE),
                 ("started", _e(m.get("started", _NONE))), ("finished", _e(m.get("finished", _NONE))),
                 ("backend", _e(m.get("backend", _NONE)))] + pairs
        if m.get("dataset"):
            pairs.append(("dataset", f'<span class="mono">{_e(m["dataset"])}</span>'))
    pairs.append(("fingerprints used for the figures",
                  f'<span class="mono">{_e(run.fp_dir)}</span>' if run.fp_dir else "none"))
    out.append(_kv(pairs))
    software = m.get("software")
    if isinstance(software, dict) and software:
        out.append("<h3>Software</h3>" + _kv((str(k), _json_value(v)) for k, v in sorted(software.items())))
    params = m.get("params") if isinstance(m.get("params"), dict) else _d(run.evaluation, "params")
    if isinstance(params, dict) and params:
        out.append("<h3>Parameters</h3>" + _kv((str(k), _json_value(v)) for k, v in sorted(params.items())))
    out.append(_fingerprint_table(run))
    out.append(_skipped_table(m))
    out.append("</section>")
    return "\n".join(out)


def _skipped_table(manifest: dict[str, Any]) -> str:
    """Files found under the inputs and not analysed (other suffixes, hidden, duplicates), with the reason."""
    skipped = [s for s in (manifest.get("skipped_inputs") or []) if isinstance(s, dict)]
    if not skipped:
        return ""
    rows = [[f'<span class="mono">{_e(s.get("path"))}</span>', _e(s.get("reason"))] for s in skipped]
    return (f"<h3>Files not analysed ({len(skipped)})</h3><p>Found under the inputs and skipped, each with its "
            "reason; nothing found is left out silently.</p>" + _table(["file", "reason"], rows))


def _fingerprint_table(run: _Run) -> str:
    entries = [e for e in ((run.manifest or {}).get("fingerprints") or []) if isinstance(e, dict)]
    out = ["<h3>Fingerprints</h3>"]
    if entries:
        rows = []
        for e in entries:
            refs = e.get("references") if isinstance(e.get("references"), list) else []
            ref_html = _NONE
            if refs:
                items = "".join(f'<li><span class="mono">{_e(_d(r, "path", default="?"))}</span> '
                                f'<span class="mono muted">{_e(_d(r, "sha256", default=_NONE))}</span></li>'
                                for r in refs)
                ref_html = f"<details><summary>{len(refs)} reference(s)</summary><ul>{items}</ul></details>"
            name = os.path.basename(str(e.get("path", "")))
            rows.append([_e(e.get("camera") or os.path.splitext(name)[0]),
                         f'<span class="mono">{_e(e.get("path", ""))}</span>',
                         f'<span class="mono">{_e(e.get("sha256") or _NONE)}</span>',
                         _e(run.fp_check.get(name, "not checked")) if run.fp_dir else "not checked",
                         ref_html if str(e.get("path", "")).endswith(".json") else ""])
        out.append(_table(["camera", "file", "SHA-256 (recorded in the manifest)", "file on disk", "references"],
                          rows))
    elif run.store:
        rows = []
        for fp in run.store:
            path = os.path.join(run.fp_dir or "", f"{fp.camera}.json")
            rows.append([_e(fp.camera), f'<span class="mono">{_e(path)}</span>',
                         f'<span class="mono">{_e(sha256_or_none(path) or _NONE)}</span>', _e(", ".join(fp.methods)),
                         str(len(fp.references))])
        out.append('<p class="muted">Not recorded by a manifest: the files found now (SHA-256 taken now).</p>')
        out.append(_table(["camera", "file", "SHA-256 (now)", "methods", "references"], rows))
    else:
        out.append('<p class="muted">Not known (no manifest and no fingerprint folder).</p>')
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# 2. decisions
# ----------------------------------------------------------------------------------------------
def _pce_cells(r: dict[str, Any]) -> list[str]:
    pce = r.get("pce")
    if not isinstance(pce, dict):
        return [_NONE, _NONE, _NONE]
    decision = pce.get("decision")
    best, best_pce = pce.get("best"), pce.get("best_pce")
    if decision:
        dec = f"<b>{_e(decision)}</b>"
        above = [c for c in pce.get("above_threshold") or [] if c != decision]
        if above:
            dec += f' <span class="bad">(also above: {_e(", ".join(map(str, above)))})</span>'
        lfa = _f(_d(pce, "scores", str(decision), "log10_p_fa"))
    else:
        dec = '<span class="muted">no camera</span>'
        lfa = _NONE
    best_html = f'{_f(best_pce)} <span class="muted">({_e(best)})</span>' if best is not None else _f(best_pce)
    return [dec, f'<td class="num">{best_html}</td>', f'<td class="num">{lfa}</td>']


def _maha_cell(r: dict[str, Any]) -> str:
    maha = r.get("mahalanobis")
    if not isinstance(maha, dict):
        return _NONE
    assoc = [str(c) for c in maha.get("associated") or []]
    member = maha.get("membership") if isinstance(maha.get("membership"), dict) else {}
    if not assoc:
        return '<span class="muted">none</span>'
    text = ", ".join(f"{_e(c)} {_pct(member.get(c))}" for c in assoc)
    if len(assoc) > 1 or maha.get("tie"):
        text = f'<span class="bad">tie:</span> {text}'
    decision = _d(r, "pce", "decision")
    if isinstance(r.get("pce"), dict) and (len(assoc) != 1 or assoc[0] != decision):
        text += ' <span class="muted">(&ne; PCE)</span>'
    return text


def _section_decisions(run: _Run) -> str:
    truth = run.has_truth
    headers = ["#", "image", "SHA-256", "kind", "rotation", "PCE decision", "max PCE (camera)",
               "log10 P_FA of decision", "Mahalanobis associated (membership)"]
    if truth:
        headers.append("truth")
    headers.append("error")
    rows = []
    for i, r in enumerate(run.records, 1):
        path = str(r.get("path"))
        err = r.get("error")
        cells = [f'<td class="num" id="row-{i}">{i}</td>']
        if err:
            reason = _d(err, "reason", default=err) if isinstance(err, dict) else err
            kind = _d(err, "kind", default="error") if isinstance(err, dict) else "error"
            cells += [f'<td class="wrap mono">{_e(path)}</td>',
                      f'<td colspan="7" class="err">not analysed: <b>{_e(kind)}</b>: {_e(reason)}</td>']
            if truth:
                cells.append(_e(r.get("truth") or _NONE))
            cells.append(f'<td class="err">{_e(kind)}</td>')
            rows.append(cells)
            continue
        sha = str(r.get("sha256") or "")
        cells += [f'<td class="wrap mono">{_image_link(i, path)}</td>',
                  f'<span class="mono" title="{_e(sha)}">{_e(sha[:12]) or _NONE}</span>',
                  _e(r.get("kind") or _NONE), _e(r.get("rotation", _NONE))]
        cells += _pce_cells(r)
        cells.append(_maha_cell(r))
        if truth:
            t = r.get("truth")
            marks = []
            if isinstance(r.get("pce"), dict):
                ok = _d(r, "pce", "decision") == t
                marks.append(f'<span class="{"ok" if ok else "bad"}">PCE {"✓" if ok else "✗"}</span>')
            if isinstance(r.get("mahalanobis"), dict):
                ok = [str(c) for c in _d(r, "mahalanobis", "associated", default=[])] == [t]
                marks.append(f'<span class="{"ok" if ok else "bad"}">M {"✓" if ok else "✗"}</span>')
            cells.append(f"{_e(t or _NONE)} " + " ".join(marks))
        cells.append("")
        rows.append(cells)
    ok = run.ok
    decided = sum(1 for _, r in ok if _d(r, "pce", "decision"))
    ties = sum(1 for _, r in ok if len(_d(r, "mahalanobis", "associated", default=[]) or []) > 1)
    summary = (f"<p>{len(run.records)} image(s): {len(ok)} analysed, {len(run.records) - len(ok)} failed "
               f"(listed with their reason).")
    if run.has("pce"):
        summary += (f" PCE attributed {decided} image(s) to a camera; {len(ok) - decided} to none. log10 P_FA: "
                    f"log10 of the probability that a PCE this high arises by chance over the shifts searched "
                    f"(more negative = stronger).")
    if run.has("mahalanobis"):
        summary += f" Mahalanobis ties: {ties}."
    summary += "</p>"
    return ('<section id="decisions"><h2>2. Decisions</h2>' + summary
            + '<div class="scroll">' + _table(headers, rows, "decisions") + "</div></section>")


# ----------------------------------------------------------------------------------------------
# 3. PCE per image
# ----------------------------------------------------------------------------------------------
def _pce_values(r: dict[str, Any], cameras: Sequence[str]) -> list[float]:
    scores = _d(r, "pce", "scores", default={})
    return [float(v) if _is_num(v := _d(scores, c, "pce")) else math.nan for c in cameras]


def _pce_axis_limits(values: Sequence[float], threshold: float) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    lo = min([0.0] + finite)
    hi = max([threshold] + finite)
    return (min(-PCE_LINTHRESH, lo * 1.6), max(threshold * 3.0, hi * 2.0))


def _pce_bar_figure(run: _Run, i: int, r: dict[str, Any]) -> str:
    cameras = run.cameras
    values = _pce_values(r, cameras)
    thr = run.threshold
    decision, truth = _d(r, "pce", "decision"), r.get("truth")
    longest = max((len(c) for c in cameras), default=0)
    rotate = len(cameras) > 6 or longest > 6
    width, height = max(2.8, 0.38 * len(cameras) + 1.3), 2.3
    bottom = (0.3 + 0.05 * min(longest, 30)) if rotate else 0.35  # inches for the camera names
    # fixed margins (many of these figures: a layout engine would double the rendering time)
    fig = _figure(width, height + bottom - 0.35, layout=None)
    fig.subplots_adjust(left=0.55 / width, right=1 - 0.1 / width, bottom=bottom / (height + bottom - 0.35),
                        top=1 - 0.3 / (height + bottom - 0.35))
    ax = fig.add_subplot()
    x = np.arange(len(cameras))
    heights = [v if math.isfinite(v) else 0.0 for v in values]
    colors = ["#1f77b4" if (math.isfinite(v) and v > thr) else "#9aa5b1" for v in values]
    edges = ["#000000" if c == truth else "none" for c in cameras]
    ax.bar(x, heights, color=colors, edgecolor=edges, linewidth=1.2, width=0.7)
    ax.set_yscale("symlog", linthresh=PCE_LINTHRESH)
    _symlog(ax.yaxis)
    ax.axhline(thr, color="#d62728", linestyle="--", linewidth=1)
    ax.axhline(0, color="#000000", linewidth=0.5)
    lo, hi = _pce_axis_limits(values, thr)
    ax.set_ylim(lo, hi)
    for xi, v in zip(x, values):
        label = "n/a" if not math.isfinite(v) else (f"{v:.0f}" if abs(v) >= 100 else f"{v:.2g}")
        ax.annotate(label, (xi, v if math.isfinite(v) else 0.0), xytext=(0, 2 if (v >= 0 or not math.isfinite(v))
                                                                          else -8),
                    textcoords="offset points", ha="center", fontsize=6)
    ax.set_xticks(x, cameras, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                  rotation_mode="anchor" if rotate else "default")
    ax.set_xlim(-0.6, len(cameras) - 0.4)
    ax.set_ylabel("PCE (symlog)")
    ax.text(0.99, thr, f"threshold {thr:g}", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
            color="#d62728", fontsize=6, bbox=dict(facecolor="white", alpha=0.75, edgecolor="none", pad=0.6))
    title = f"{_img_label(i)}: " + (f"{decision}" if decision else "no decision")
    ax.set_title(title + (f" (truth {truth})" if truth else ""))
    return _png(fig, f"PCE of image {i} against every fingerprint")


def _pce_heatmaps(run: _Run, items: list[tuple[int, dict[str, Any]]]) -> list[str]:
    from matplotlib.colors import SymLogNorm

    cameras, thr = run.cameras, run.threshold
    matrix = np.array([_pce_values(r, cameras) for _, r in items], dtype=float).reshape(len(items), len(cameras))
    finite = matrix[np.isfinite(matrix)]
    vmin = float(min(-PCE_LINTHRESH, finite.min() if finite.size else 0.0))
    vmax = float(max(thr * 3.0, finite.max() if finite.size else 0.0))
    norm = SymLogNorm(linthresh=PCE_LINTHRESH, vmin=vmin, vmax=vmax, base=10)
    chunks = [items[k:k + HEATMAP_ROWS] for k in range(0, len(items), HEATMAP_ROWS)]
    labelled = len(chunks) <= MAX_HEATMAP_FIGURES
    if not labelled:
        chunks = [items]
    out = []
    for chunk in chunks:
        rows = np.array([_pce_values(r, cameras) for _, r in chunk], dtype=float).reshape(len(chunk), len(cameras))
        height = (1.2 + 0.16 * len(chunk)) if labelled else 8.0
        fig = _figure(max(3.5, 0.5 * len(cameras) + 2.2), height)
        ax = fig.add_subplot()
        im = ax.imshow(np.ma.masked_invalid(rows), aspect="auto", cmap="viridis", norm=norm,
                       interpolation="nearest" if labelled else "antialiased")
        ax.set_xticks(np.arange(len(cameras)), cameras, rotation=45 if len(cameras) > 6 else 0)
        if labelled:
            ax.set_yticks(np.arange(len(chunk)), [_img_label(i) for i, _ in chunk])
            ys, xs = np.nonzero(np.nan_to_num(rows, nan=-np.inf) > thr)
            ax.scatter(xs, ys, marker="o", s=40, facecolors="none", edgecolors="#d62728", linewidths=1.2)
            ax.set_title(f"PCE {_img_label(chunk[0][0])}-{_img_label(chunk[-1][0])} (ring: > {thr:g})")
        else:
            from matplotlib.ticker import FuncFormatter, MaxNLocator

            numbers = [i for i, _ in chunk]
            ax.yaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
            ax.yaxis.set_major_formatter(FuncFormatter(
                lambda v, _pos: _img_label(numbers[int(v)]) if 0 <= int(v) < len(numbers) and v == int(v) else ""))
            ax.set_ylabel("image")
            ax.set_title(f"PCE of all {len(chunk)} images")
        bar = fig.colorbar(im, ax=ax, label="PCE (symlog)", shrink=0.9)
        _symlog(bar.ax.yaxis)
        out.append(f"<figure>{_png(fig, 'PCE heat-map')}</figure>")
    return out


def _pce_detail(run: _Run, i: int, r: dict[str, Any]) -> str:
    scores = _d(r, "pce", "scores", default={})
    thr = run.threshold
    rows = []
    for c in run.cameras:
        s = _d(scores, c, default={})
        above = _is_num(s.get("pce")) and s["pce"] > thr
        rows.append([_e(c) + (" (decision)" if c == _d(r, "pce", "decision") else ""),
                     f'<td class="num">{"<b>" if above else ""}{_f(s.get("pce"))}{"</b>" if above else ""}</td>',
                     f'<td class="num">{_f(s.get("ncc"))}</td>', f'<td class="num">{_f(s.get("log10_p_fa"))}</td>',
                     _e(s.get("peak_shift", _NONE))])
    exif = r.get("exif") if isinstance(r.get("exif"), dict) else {}
    meta = [("SHA-256", f'<span class="mono">{_e(r.get("sha256") or _NONE)}</span>'),
            ("file", f'{_e(r.get("format") or _NONE)}, {_f(r.get("file_size"))} bytes, '
                     f'{_e(" x ".join(map(str, r.get("size") or [])) or _NONE)} pixels (h x w), '
                     f'{_e(r.get("channels", _NONE))} channel(s), {_e(r.get("bit_depth", _NONE))} bit'),
            ("kind", f'{_e(r.get("kind") or _NONE)} (from {_e(r.get("kind_source") or _NONE)})'),
            ("rotation", f'{_e(r.get("rotation", _NONE))} (tried {_e(r.get("rotations_tried", _NONE))})')]
    by_rot = _d(r, "pce", "max_pce_by_rotation")
    if isinstance(by_rot, dict):
        meta.append(("max PCE by rotation", _e(", ".join(f"{k}: {_f(v)}" for k, v in by_rot.items()))))
    if exif:
        meta.append(("EXIF (not used for decisions)",
                     _e("; ".join(f"{k}: {v}" for k, v in sorted(exif.items(), key=lambda kv: str(kv[0]))))))
    if r.get("truth"):
        meta.append(("truth", _e(r["truth"])))
    table = _table(["camera", "PCE", "NCC", "log10 P_FA", "peak shift"], rows) if isinstance(r.get("pce"), dict) \
        else '<p class="muted">No PCE in this run.</p>'
    return (f'<details id="pce-{i}"><summary>{_img_label(i)} <span class="mono">{_e(r.get("path"))}</span>'
            f"</summary>{_kv(meta)}{table}</details>")


def _section_pce(run: _Run, mpl) -> str:
    ok = run.ok
    out = ['<section id="pce"><h2>3. PCE per image</h2>']
    if not ok:
        out.append('<p class="muted">No image could be analysed.</p></section>')
        return "\n".join(out)
    if run.has("pce"):
        out.append(f"<p>PCE of each image against every fingerprint. The vertical axis is symmetric-logarithmic: "
                   f"linear for |PCE| &lt; {PCE_LINTHRESH:g} (noise; PCE can be negative), logarithmic above. The "
                   f"dashed red line is the decision threshold ({run.threshold:g}); blue bars exceed it. "
                   f"{'A black outline marks the true camera. ' if run.has_truth else ''}"
                   f"Image numbers (#) are those of the decision table.</p>")
        with_pce = [(i, r) for i, r in ok if isinstance(r.get("pce"), dict)]
        if len(with_pce) <= MAX_IMAGE_CHARTS:
            figs = [f'<figure>{_pce_bar_figure(run, i, r)}<figcaption>{_img_label(i)} '
                    f'<a href="#pce-{i}" class="mono">{_e(r.get("path"))}</a></figcaption></figure>'
                    for i, r in with_pce]
        else:
            out.append(f"<p>{len(with_pce)} images: more than {MAX_IMAGE_CHARTS}, so the scores are drawn as "
                       f"heat-maps (rows: images by their # in the decision table; columns: fingerprints; colour: "
                       f"PCE on a symmetric-log scale"
                       + (f"; a red ring marks a PCE above the threshold {run.threshold:g}" if
                          len(with_pce) <= HEATMAP_ROWS * MAX_HEATMAP_FIGURES else "") + ").</p>")
            figs = _pce_heatmaps(run, with_pce)
        out.append('<div class="grid">' + "".join(figs) + "</div>")
    else:
        out.append('<p class="muted">This run has no PCE results (method not run).</p>')
    out.append("<h3>Every image: metadata and all scores</h3>")
    out.extend(_pce_detail(run, i, r) for i, r in ok[:MAX_DETAILED_IMAGES])
    if len(ok) > MAX_DETAILED_IMAGES:
        out.append(f'<p class="note">Details are shown for the first {MAX_DETAILED_IMAGES} of {len(ok)} images; '
                   f"results.jsonl holds all of them.</p>")
    out.append("</section>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# 4. Mahalanobis
# ----------------------------------------------------------------------------------------------
def _membership_cell(v: Any, associated: bool) -> str:
    shade = f"background:rgba(31,119,180,{0.08 + 0.5 * v / 100:.2f})" if _is_num(v) else ""
    text = _pct(v)
    if associated:
        text = f"<b>{text}</b>"
    return f'<td class="num" style="{shade}">{text}</td>'


def _pairwise_table(maha: dict[str, Any]) -> str:
    pw = maha.get("pairwise") if isinstance(maha.get("pairwise"), dict) else {}
    cams = [str(c) for c in pw.get("cameras") or []]
    sat, uns = pw.get("satisfied"), pw.get("unsatisfied")
    try:
        sat_a = np.asarray(sat, dtype=float).reshape(len(cams), len(cams))
        uns_a = np.asarray(uns, dtype=float).reshape(len(cams), len(cams))
    except (TypeError, ValueError):
        return '<p class="muted">No pairwise counts.</p>'
    rows = []
    for q, cq in enumerate(cams):
        row = [f"<th>{_e(cq)}</th>"]
        for j in range(len(cams)):
            if q == j:
                row.append(f'<td class="num muted">{_NONE}</td>')
                continue
            s, u = sat_a[q, j], uns_a[q, j]
            beat = s > u
            row.append(f'<td class="num{" beat" if beat else ""}">{s:.0f} / {u:.0f}</td>')
        rows.append(row)
    head = "".join(f"<th>{_e(c)}</th>" for c in cams)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<table><thead><tr><th>q (claimed) \\ j</th>{head}</tr></thead><tbody>{body}</tbody></table>'


def _maha_detail(run: _Run, i: int, r: dict[str, Any]) -> str:
    maha = r["mahalanobis"]
    member = maha.get("membership") if isinstance(maha.get("membership"), dict) else {}
    assoc = [str(c) for c in maha.get("associated") or []]
    selected = maha.get("selected_pixels") if isinstance(maha.get("selected_pixels"), dict) else {}
    mrows = [[_e(c), _membership_cell(member.get(c), c in assoc), f'<td class="num">{_f(selected.get(c), "")}</td>']
             for c in run.cameras]
    diag = maha.get("diagnostics") if isinstance(maha.get("diagnostics"), dict) else {}
    trace = maha.get("trace") if isinstance(maha.get("trace"), dict) else {}
    extra = [("mode", _e(maha.get("mode", _NONE))),
             ("associated", _e(", ".join(assoc) or "none") + (' <span class="bad">(tie)</span>' if len(assoc) > 1
                                                               else "")),
             ("closer fraction full / intensity / PRNU",
              " / ".join(_f(_d(diag, "closer_fraction", k), ".3f") for k in ("full", "intensity", "prnu"))),
             ("vote agreement with full: intensity / PRNU",
              " / ".join(_f(_d(diag, "vote_agreement", k), ".3f") for k in ("intensity", "prnu"))),
             ("driver", _e(diag.get("driver", _NONE))),
             ("trace mean (I0, PRNU)", _e(", ".join(_f(v, ".4g") for v in trace.get("mean") or []) or _NONE)),
             ("trace covariance [[I0 I0, I0 PRNU], [PRNU I0, PRNU PRNU]]", _matrix(trace.get("cov")))]
    summary = f"{_img_label(i)} <span class=\"mono\">{_e(r.get('path'))}</span>: {_maha_cell(r)}"
    return (f'<details id="maha-{i}"><summary>{summary}</summary>'
            + _table(["camera", "membership", "pixels used"], mrows) + _pairwise_table(maha) + _kv(extra)
            + "</details>")


def _matrix(value: Any) -> str:
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        return _NONE if value is None else _e(value)
    return "[" + ", ".join("[" + ", ".join(_f(v) for v in row) + "]" for row in value) + "]"


def _diagnostics_summary(items: list[dict[str, Any]]) -> dict[str, Any]:
    usable = [d for d in items if isinstance(d, dict) and isinstance(d.get("closer_fraction"), dict)
              and isinstance(d.get("vote_agreement"), dict)]
    if not usable:
        return {"images": 0}

    def mean(key, comp):
        vals = [d[key].get(comp) for d in usable if _is_num(d[key].get(comp))]
        return float(np.mean(vals)) if vals else None

    drivers = [str(d.get("driver")) for d in usable]
    return {"images": len(usable),
            "closer_fraction": {c: mean("closer_fraction", c) for c in ("full", "intensity", "prnu")},
            "vote_agreement": {c: mean("vote_agreement", c) for c in ("intensity", "prnu")},
            "driver_counts": {k: drivers.count(k) for k in sorted(set(drivers))}}


def _section_mahalanobis(run: _Run) -> str:
    if not run.has("mahalanobis"):
        return ('<section id="mahalanobis"><h2>4. Mahalanobis 2-DOF classifier</h2><p class="muted">This run has '
                "no Mahalanobis results (method not run).</p></section>")
    items = [(i, r) for i, r in run.ok if isinstance(r.get("mahalanobis"), dict)]
    cams = run.cameras
    out = ['<section id="mahalanobis"><h2>4. Mahalanobis 2-DOF classifier (beside PCE; weaker evidence)</h2>',
           "<p>Membership of image d to camera q: the percentage of the other cameras j that q beats, where q "
           "beats j when more pixels are closer to q than to j (the paper's Tables 2-5). The image is associated "
           "with the camera(s) of highest membership; ties are shown, never broken. Membership is a vote count, "
           "not a probability.</p>"]

    # membership matrix (grouped by true camera with ground truth: the paper's per-camera tables)
    out.append("<h3>Membership matrix (percent)</h3>")
    groups: list[tuple[str | None, list[tuple[int, dict[str, Any]]]]]
    if run.has_truth:
        truths = [str(r.get("truth")) for _, r in items]
        order = [c for c in cams if c in truths] + sorted({t for t in truths if t not in cams})
        groups = [(t, [(i, r) for i, r in items if str(r.get("truth")) == t]) for t in order]
    else:
        groups = [(None, items)]
    headers = ["#", "image"] + (["truth"] if run.has_truth else []) + cams + ["associated"]
    rows = []
    for truth, members in groups:
        for i, r in members:
            maha = r["mahalanobis"]
            member = maha.get("membership") if isinstance(maha.get("membership"), dict) else {}
            assoc = [str(c) for c in maha.get("associated") or []]
            row = [f'<td class="num">{i}</td>',
                   f'<td class="wrap mono">{_image_link(i, str(r.get("path")), "maha")}</td>']
            if run.has_truth:
                row.append(_e(truth))
            row += [_membership_cell(member.get(c), c in assoc) for c in cams]
            row.append(_e(", ".join(assoc) or "none") + (" (tie)" if len(assoc) > 1 else ""))
            rows.append(row)
        if truth is not None and members:
            means = []
            for c in cams:
                vals = [v for _, r in members if _is_num(v := _d(r, "mahalanobis", "membership", c))]
                means.append(f'<td class="num muted">{_f(float(np.mean(vals)), ".1f") if vals else _NONE}</td>')
            rows.append([f'<td colspan="3" class="muted">mean membership of the images of {_e(truth)}</td>']
                        + means + [""])
    out.append(_table(headers, rows))

    ev = _d(run.evaluation, "mahalanobis")
    if run.has_truth and isinstance(ev, dict):
        out.append("<h3>Effectiveness per camera (ground truth)</h3>")
        eff = ev.get("effectiveness") if isinstance(ev.get("effectiveness"), dict) else {}
        out.append(_table(["camera", "images", "associated alone", "effectiveness rate", "mean membership (own)"],
                          [[_e(c), f'<td class="num">{_f(_d(e, "images"))}</td>',
                            f'<td class="num">{_f(_d(e, "associated_alone"))}</td>',
                            f'<td class="num">{_f(_d(e, "rate"), ".1%") if _is_num(_d(e, "rate")) else _NONE}</td>',
                            f'<td class="num">{_f(_d(e, "mean_membership_own"), ".1f")}</td>']
                           for c, e in eff.items()]))
        out.append(f"<p>Accuracy (associated alone with the true camera; ties count as wrong): "
                   f"{_f(ev.get('accuracy'), '.1%') if _is_num(ev.get('accuracy')) else _NONE}; ties: "
                   f"{_f(ev.get('ties'))}.</p>")

    # diagnostics
    d = _diagnostics_summary([r["mahalanobis"].get("diagnostics") for _, r in items])
    out.append("<h3>What drove the votes</h3>")
    out.append("<p>Each pairwise vote (q against j) is also cast with one component of the trace alone: the "
               "intensity I0 only, or the PRNU only. <i>Vote agreement</i> is the fraction of votes where that "
               "one-component vote equals the full 2-D vote; <i>closer fraction</i> is the mean fraction of pixels "
               "where q is closer. <b>0.5 means a coin flip.</b> If the intensity votes agree with the full vote "
               "and the PRNU votes are near 0.5, the decision was driven by the image intensity (scene / "
               "exposure), not by the sensor pattern.</p>")
    if d["images"]:
        out.append(_table(["", "full", "intensity only", "PRNU only"],
                          [["mean closer fraction"] + [f'<td class="num">{_f(d["closer_fraction"][c], ".3f")}</td>'
                                                       for c in ("full", "intensity", "prnu")],
                           ["mean vote agreement with the full vote", '<td class="num">1</td>']
                           + [f'<td class="num">{_f(d["vote_agreement"][c], ".3f")}</td>'
                              for c in ("intensity", "prnu")]]))
        out.append("<p>Driver per image: " + _e(", ".join(f"{k}: {v}" for k, v in d["driver_counts"].items()))
                   + f" (over {d['images']} image(s)).</p>")
        drows = []
        for i, r in items:
            diag = r["mahalanobis"].get("diagnostics") if isinstance(r["mahalanobis"].get("diagnostics"), dict) else {}
            drows.append([f'<td class="num">{i}</td>', _e(r["mahalanobis"].get("mode", _NONE))]
                         + [f'<td class="num">{_f(_d(diag, "closer_fraction", c), ".3f")}</td>'
                            for c in ("full", "intensity", "prnu")]
                         + [f'<td class="num">{_f(_d(diag, "vote_agreement", c), ".3f")}</td>'
                            for c in ("intensity", "prnu")] + [_e(diag.get("driver", _NONE))])
        out.append("<details><summary>Per image</summary>"
                   + _table(["#", "mode", "closer full", "closer intensity", "closer PRNU", "agreement intensity",
                             "agreement PRNU", "driver"], drows) + "</details>")
    else:
        out.append('<p class="muted">No diagnostics recorded.</p>')

    out.append("<h3>Per image: membership and pairwise counts</h3>")
    out.append("<p>Pairwise table (the paper's Tables 2-3), row q = the camera claimed, column j = the camera it is "
               "compared with; cell: pixels where q is closer-or-equal (satisfied) / farther (unsatisfied) than j by "
               "the 2-DOF Mahalanobis distance; bold: q beats j. Membership of q = percentage of the other cameras "
               "q beats.</p>")
    out.extend(_maha_detail(run, i, r) for i, r in items[:MAX_DETAILED_IMAGES])
    if len(items) > MAX_DETAILED_IMAGES:
        out.append(f'<p class="note">Pairwise tables are shown for the first {MAX_DETAILED_IMAGES} of {len(items)} '
                   f"images; results.jsonl holds all of them.</p>")
    out.append("</section>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# 5. per camera: I0 PDF and discriminant plane (the paper's Figures 1-5)
# ----------------------------------------------------------------------------------------------
def _hist64(values: np.ndarray) -> np.ndarray:
    """Counts in 64 equal bins over 0..255, values outside clamped to the end bins (as trace i0_hist)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    return np.bincount(np.clip((x * BINS / 255.0).astype(np.int64), 0, BINS - 1), minlength=BINS).astype(float)


def _pdf(counts: Any) -> np.ndarray | None:
    try:
        c = np.asarray(counts, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    if c.size != BINS or not np.all(np.isfinite(c)) or c.sum() <= 0:
        return None
    return c / c.sum() / (255.0 / BINS)


def _ellipse(mean: Any, cov: Any, k: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Points of the k-sigma contour of a 2-D Gaussian."""
    try:
        m = np.asarray(mean, dtype=float).reshape(2)
        s = np.asarray(cov, dtype=float).reshape(2, 2)
    except (TypeError, ValueError):
        return None
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
        return None
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    vals = np.clip(vals, 0.0, None)
    t = np.linspace(0, 2 * np.pi, 121)
    pts = (vecs @ (np.sqrt(vals)[:, None] * np.vstack([np.cos(t), np.sin(t)]))) * k + m[:, None]
    return pts[0], pts[1]


def _assigned(run: _Run, r: dict[str, Any]) -> str | None:
    """The camera an image is drawn with: truth, else the PCE decision, else a lone Mahalanobis association."""
    if r.get("truth"):
        return str(r["truth"])
    if _d(r, "pce", "decision"):
        return str(r["pce"]["decision"])
    assoc = _d(r, "mahalanobis", "associated", default=[])
    return str(assoc[0]) if isinstance(assoc, list) and len(assoc) == 1 else None


def _camera_figure(run: _Run, index: int, fp: Any, traced: list[tuple[int, dict[str, Any]]]) -> tuple[str, str]:
    i0 = np.asarray(fp.mean_i0, dtype=np.float64)
    prnu = np.asarray(fp.mean_prnu, dtype=np.float64)
    color = _camera_color(index)
    fig = _figure(8.4, 3.2, layout=None)  # fixed margins: all labels here are short and known
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.14, top=0.92, wspace=0.22)
    ax1, ax2 = fig.subplots(1, 2)
    centres = (np.arange(BINS) + 0.5) * 255.0 / BINS
    own = [(i, r) for i, r in traced if _assigned(run, r) == fp.camera]
    other = [(i, r) for i, r in traced if _assigned(run, r) != fp.camera]
    word = "true camera" if run.has_truth else "attributed to it"

    # (a) PDF of I0
    pdf_fp = _pdf(_hist64(i0))
    for group, style, label in ((other, dict(color="#9aa5b1", linewidth=0.7, alpha=0.7), "other images"),
                                (own, dict(color=color, linewidth=0.9, alpha=0.85, linestyle="--"),
                                 f"images, {word}")):
        pdfs = [p for _, r in group if (p := _pdf(_d(r, "mahalanobis", "trace", "i0_hist"))) is not None]
        if not pdfs:
            continue
        if len(pdfs) <= MAX_CURVES:
            for n, p in enumerate(pdfs):
                ax1.plot(centres, p, label=f"{label} ({len(pdfs)})" if n == 0 else None, **style)
        else:
            ax1.plot(centres, np.mean(pdfs, axis=0), label=f"{label}: mean of {len(pdfs)}",
                     **dict(style, linewidth=1.6))
    if pdf_fp is not None:
        ax1.plot(centres, pdf_fp, color=color, linewidth=2.2, label=f"fingerprint {fp.camera}")
    ax1.set_xlim(0, 255)
    ax1.set_xlabel("I0 (denoised intensity, 0..255)")
    ax1.set_ylabel("probability density")
    ax1.set_title(f"{fp.camera}: PDF of I0")
    _legend(ax1, loc="upper left", framealpha=0.85)

    # (b) discriminant plane
    x, y = i0.ravel(), prnu.ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size > 1:
        step = max(1, x.size // 3000)
        ax2.scatter(x[::step], y[::step], s=1, color=color, alpha=0.15, linewidths=0, rasterized=True)
        mean = [x.mean(), y.mean()]
        cov = np.cov(np.stack([x, y]))
        for k in (1, 2, 3):
            pts = _ellipse(mean, cov, k)
            if pts is not None:
                ax2.plot(*pts, color=color, linewidth=2.0 if k == 1 else 1.2,
                         label=f"fingerprint {fp.camera} (1, 2, 3 sigma)" if k == 1 else None)
        ax2.plot(*mean, marker="+", color=color, markersize=9, markeredgewidth=2)
    for group, gcolor, label in ((other[:MAX_CURVES], "#9aa5b1", "other images (2 sigma)"),
                                 (own[:MAX_CURVES], color, f"images, {word} (2 sigma)")):
        first = True
        for i, r in group:
            trace = _d(r, "mahalanobis", "trace", default={})
            pts = _ellipse(trace.get("mean"), trace.get("cov"), 2.0)
            if pts is None:
                continue
            ax2.plot(*pts, color=gcolor, linewidth=0.8, linestyle="--" if gcolor == color else "-",
                     label=label if first else None)
            if len(group) <= 12:  # beyond that the labels only pile up
                ax2.annotate(_img_label(i), (float(trace["mean"][0]), float(trace["mean"][1])), fontsize=6,
                             color=gcolor, ha="center", va="center")
            first = False
    ax2.set_xlabel("I0")
    ax2.set_ylabel("PRNU")
    ax2.set_title(f"{fp.camera}: (I0, PRNU) discriminant plane")
    _legend(ax2, loc="upper left", framealpha=0.85)
    note = ""
    if len(own) > MAX_CURVES or len(other) > MAX_CURVES:
        note = f" Ellipses of at most {MAX_CURVES} images per group are drawn."
    return _png(fig, f"I0 distribution and discriminant plane of camera {fp.camera}"), note


def _section_cameras(run: _Run, mpl) -> str:
    out = ['<section id="cameras"><h2>5. Fingerprints and disputed images: I0 and the (I0, PRNU) plane</h2>']
    maha_store = [fp for fp in run.store if "mahalanobis" in getattr(fp, "methods", ())]
    if not run.store:
        out.append('<p class="muted">No fingerprints could be loaded (see the notes at the top), so these figures '
                   "are left out.</p></section>")
        return "\n".join(out)
    if not maha_store:
        out.append('<p class="muted">The fingerprints hold no Mahalanobis arrays (built with --method pce), so '
                   "there is no I0/PRNU fingerprint to draw.</p></section>")
        return "\n".join(out)
    traced = [(i, r) for i, r in run.ok if isinstance(_d(r, "mahalanobis", "trace"), dict)]
    basis = ("true camera" if run.has_truth else "camera of the PCE decision (else of a lone Mahalanobis "
             "association)")
    out.append("<p>As in the paper's Figures 1-5. Left: the probability density of I0 (the denoised intensity) "
               f"over the pixels of the camera's fingerprint (thick) and of each disputed image (thin; coloured "
               f"dashed when the image's {basis} is this camera, grey otherwise). Right: the fingerprint's pixels "
               "in the (I0, PRNU) plane with the 1-, 2- and 3-sigma contours of the Gaussian of their mean and "
               "covariance, and the 2-sigma contour of each disputed image's trace (labelled with its #). The "
               "method compares per-pixel differences, so distributions that barely overlap in I0 are told apart "
               "by intensity alone.</p>")
    if not traced:
        out.append('<p class="muted">The records hold no trace summaries of the disputed images; only the '
                   "fingerprints are drawn.</p>")
    figs = []
    for index, fp in enumerate(maha_store[:MAX_CAMERA_FIGURES]):
        try:
            img, note = _camera_figure(run, index, fp, traced)
        except (ValueError, TypeError, np.linalg.LinAlgError) as exc:
            figs.append(f'<p class="note">{_e(fp.camera)}: figure not drawn ({_e(exc)}).</p>')
            continue
        figs.append(f"<figure>{img}<figcaption>Camera {_e(fp.camera)}.{_e(note)}</figcaption></figure>")
    out.append('<div class="grid">' + "".join(figs) + "</div>")
    if len(maha_store) > MAX_CAMERA_FIGURES:
        out.append(f'<p class="note">Figures are drawn for the first {MAX_CAMERA_FIGURES} of {len(maha_store)} '
                   f"cameras.</p>")
    out.append("</section>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# 6. ground truth
# ----------------------------------------------------------------------------------------------
def _confusion_table(conf: dict[str, Any]) -> str:
    rows_l, cols = conf.get("rows") or [], conf.get("columns") or []
    counts = conf.get("counts") or []
    body = []
    for t, row in zip(rows_l, counts):
        cells = [f"<th>{_e(t)}</th>"]
        for c, v in zip(cols, row):
            style = ' style="background:#dafbe1"' if c == t and _is_num(v) and v else \
                (' style="background:#ffebe9"' if _is_num(v) and v else "")
            cells.append(f'<td class="num"{style}>{_f(v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    return (f'<table><thead><tr><th>true \\ predicted</th>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody></table>")


def _confusion_figure(blocks: list[tuple[str, dict[str, Any]]]) -> str | None:
    usable = [(name, c) for name, c in blocks if c.get("rows") and c.get("columns") and c.get("counts")]
    if not usable:
        return None
    fig = _figure(4.2 * len(usable), 0.35 * max(len(c["rows"]) for _, c in usable) + 2.0)
    axes = fig.subplots(1, len(usable), squeeze=False)[0]
    for ax, (name, c) in zip(axes, usable):
        try:
            m = np.asarray(c["counts"], dtype=float).reshape(len(c["rows"]), len(c["columns"]))
        except (TypeError, ValueError):
            continue
        ax.imshow(m, cmap="Blues", aspect="auto", vmin=0, vmax=max(1.0, float(m.max())))
        ax.set_xticks(np.arange(len(c["columns"])), [str(x) for x in c["columns"]], rotation=45, ha="right")
        ax.set_yticks(np.arange(len(c["rows"])), [str(x) for x in c["rows"]])
        if m.size <= 400:
            for (y, x), v in np.ndenumerate(m):
                ax.text(x, y, f"{v:.0f}", ha="center", va="center", fontsize=7,
                        color="#ffffff" if v > m.max() / 2 else "#000000")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true camera")
        ax.set_title(name)
    return _png(fig, "confusion matrices")


def _roc_figure(pce: dict[str, Any]) -> str | None:
    curve = pce.get("roc_curve") if isinstance(pce.get("roc_curve"), dict) else {}
    try:
        far = np.asarray(curve.get("far") or [], dtype=float)
        frr = np.asarray(curve.get("frr") or [], dtype=float)
        thr = np.asarray(curve.get("thresholds") or [], dtype=float)
    except (TypeError, ValueError):
        return None
    if far.size == 0 or far.size != frr.size or far.size != thr.size:
        return None
    roc = pce.get("roc") if isinstance(pce.get("roc"), dict) else {}
    fig = _figure(8.4, 3.2, layout=None)
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.14, top=0.92, wspace=0.22)
    ax1, ax2 = fig.subplots(1, 2)
    # the curve from "accept everything" (far 1, tpr 1) to "accept nothing" (0, 0)
    xs = np.concatenate([[1.0], far, [0.0]])
    ys = np.concatenate([[1.0], 1.0 - frr, [0.0]])
    ax1.step(xs, ys, where="post", color="#1f77b4", linewidth=1.5)
    ax1.plot([0, 1], [0, 1], color="#9aa5b1", linewidth=0.7, linestyle=":")
    if _is_num(pce.get("far_at_threshold")) and _is_num(pce.get("frr_at_threshold")):
        ax1.plot(pce["far_at_threshold"], 1 - pce["frr_at_threshold"], "o", color="#d62728",
                 label=f"threshold {pce.get('threshold', '')}")
    if _is_num(roc.get("eer")):
        ax1.plot(roc["eer"], 1 - roc["eer"], "s", color="#2ca02c", label=f"EER {roc['eer']:.3f}")
    ax1.set_xlim(-0.02, 1.02)
    ax1.set_ylim(-0.02, 1.02)
    ax1.set_xlabel("false acceptance rate (impostor PCE above threshold)")
    ax1.set_ylabel("true acceptance rate (1 - FRR)")
    auc = roc.get("auc")
    ax1.set_title("PCE ROC" + (f", AUC {auc:.4f}" if _is_num(auc) else ""))
    _legend(ax1, loc="lower right", frameon=False)
    ax2.step(thr, far, where="post", label="FAR", color="#d62728")
    ax2.step(thr, frr, where="post", label="FRR", color="#1f77b4")
    ax2.set_xscale("symlog", linthresh=PCE_LINTHRESH)
    _symlog(ax2.xaxis)
    if _is_num(pce.get("threshold")):
        ax2.axvline(pce["threshold"], color="#d62728", linestyle="--", linewidth=1)
    if _is_num(roc.get("eer_threshold")):
        ax2.axvline(roc["eer_threshold"], color="#2ca02c", linestyle=":", linewidth=1)
    ax2.set_xlabel("PCE threshold (symlog; dashed: the run's threshold, dotted: EER)")
    ax2.set_ylabel("rate")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_title("FAR and FRR against the threshold")
    _legend(ax2, loc="center right", frameon=False)
    return _png(fig, "PCE ROC curve")


def _accuracy_rows(name: str, block: dict[str, Any]) -> list[list[str]]:
    rows = []
    for kind, b in [("all", block)] + list((block.get("per_kind") or {}).items()):
        if not isinstance(b, dict):
            continue
        acc = b.get("accuracy")
        rows.append([_e(name), _e(kind), f'<td class="num">{_f(b.get("count"))}</td>',
                     f'<td class="num">{_f(b.get("correct"))}</td>',
                     f'<td class="num">{format(acc, ".1%") if _is_num(acc) else _NONE}</td>'])
    return rows


def _section_truth(run: _Run, mpl) -> str:
    ev = run.evaluation
    if not run.has_truth or not isinstance(ev, dict):
        return ""
    pce, maha = ev.get("pce"), ev.get("mahalanobis")
    out = ['<section id="truth"><h2>6. Evaluation against ground truth</h2>',
           "<p>Ground truth is the camera folder of each disputed image. \"(none)\": no camera above the PCE "
           "threshold; \"(tie)\": several cameras share the highest Mahalanobis membership. Both count as wrong. "
           "Files that failed are not scored.</p>"]
    rows = []
    if isinstance(pce, dict):
        rows += _accuracy_rows("PCE (primary)", pce)
    if isinstance(maha, dict):
        rows += _accuracy_rows("Mahalanobis (beside PCE)", maha)
    if rows:
        out.append(_table(["method", "images", "scored", "correct", "accuracy"], rows))
    blocks = [(n, b["confusion"]) for n, b in (("PCE", pce), ("Mahalanobis", maha))
              if isinstance(b, dict) and isinstance(b.get("confusion"), dict)]
    if blocks:
        out.append("<h3>Confusion matrices (rows: true camera)</h3>")
        img = _confusion_figure(blocks)
        if img:
            out.append(f"<figure>{img}</figure>")
        for name, conf in blocks:
            out.append(f"<h4>{_e(name)}</h4>" + _confusion_table(conf))
    if isinstance(pce, dict):
        roc = pce.get("roc") if isinstance(pce.get("roc"), dict) else {}
        out.append("<h3>PCE ROC</h3>")
        out.append(_kv([("AUC", _f(roc.get("auc"))), ("EER", _f(roc.get("eer"))),
                        ("PCE threshold at the EER", _f(roc.get("eer_threshold"))),
                        (f"FAR at the threshold {_f(pce.get('threshold'))}", _f(pce.get("far_at_threshold"))),
                        (f"FRR at the threshold {_f(pce.get('threshold'))}", _f(pce.get("frr_at_threshold"))),
                        ("genuine PCE min / median",
                         " / ".join(_f(_d(pce, "genuine_pce", k)) for k in ("min", "median"))),
                        ("impostor PCE max / median",
                         " / ".join(_f(_d(pce, "impostor_pce", k)) for k in ("max", "median")))]))
        img = _roc_figure(pce)
        out.append(f"<figure>{img}</figure>" if img else '<p class="muted">No ROC curve (needs genuine and '
                   "impostor scores).</p>")
    errors = ev.get("errors") if isinstance(ev.get("errors"), list) else []
    if errors:
        out.append(f"<p>{len(errors)} file(s) failed and are not scored (see the decision table).</p>")
    out.append("</section>")
    return "\n".join(out)


__all__ = ["write_report", "render_report"]

"""Section 1 of the report, the run: command, times, software, backend, parameters, the fingerprints with
their SHA-256 (checked against the files now on disk), and the guide to reading the report."""
from __future__ import annotations

import os
import shlex
from typing import Any

from camid_gpu._shared.jsonio import sha256_or_none
from camid_gpu.report.html import NONE, esc, html_table, json_value, kv_table
from camid_gpu.report.load import Run, dig
from camid_gpu.report.wording import PFA_LIMITS, identical_note, param_rows


def section(run: Run) -> str:
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
           "the natural ones. Section 4 shows what drove its votes (intensity or PRNU).</p>",
           f'<p class="note"><b>What P_FA does not cover.</b> {PFA_LIMITS}</p>', identical_note(run.records)]
    argv = m.get("argv")
    command = shlex.join(str(a) for a in argv) if isinstance(argv, list) else None
    pairs = [("images", f"{len(run.records)} ({errors} with errors)"),
             ("cameras", esc(", ".join(run.cameras)) or NONE),
             ("methods", esc(", ".join(x for x in ("pce", "mahalanobis") if run.has(x))) or NONE),
             ("ground truth", "yes" if run.has_truth else "no")]
    if run.manifest is not None:
        pairs = [("command", esc(m.get("command", NONE))),
                 ("command line", f"<code>{esc(command)}</code>" if command else NONE),
                 ("started", esc(m.get("started", NONE))), ("finished", esc(m.get("finished", NONE))),
                 ("backend", esc(m.get("backend", NONE)))] + pairs
        if m.get("dataset"):
            pairs.append(("dataset", f'<span class="mono">{esc(m["dataset"])}</span>'))
    pairs.append(("fingerprints used for the figures",
                  f'<span class="mono">{esc(run.fp_dir)}</span>' if run.fp_dir else "none"))
    out.append(kv_table(pairs))
    software = m.get("software")
    if isinstance(software, dict) and software:
        out.append("<h3>Software</h3>" + kv_table((str(k), json_value(v)) for k, v in sorted(software.items())))
    params = m.get("params") if isinstance(m.get("params"), dict) else dig(run.evaluation, "params")
    if isinstance(params, dict) and params:
        out.append("<h3>Parameters</h3>" + kv_table(param_rows(params)))
    out.append(_fingerprint_table(run))
    out.append(_skipped_table(m))
    out.append("</section>")
    return "\n".join(out)


def _skipped_table(manifest: dict[str, Any]) -> str:
    """Files found under the inputs and not analysed (other suffixes, hidden, duplicates), with the reason."""
    skipped = [s for s in (manifest.get("skipped_inputs") or []) if isinstance(s, dict)]
    if not skipped:
        return ""
    rows = [[f'<span class="mono">{esc(s.get("path"))}</span>', esc(s.get("reason"))] for s in skipped]
    return (f"<h3>Files not analysed ({len(skipped)})</h3><p>Found under the inputs and skipped, each with its "
            "reason; nothing found is left out silently.</p>" + html_table(["file", "reason"], rows))


def _fingerprint_table(run: Run) -> str:
    entries = [e for e in ((run.manifest or {}).get("fingerprints") or []) if isinstance(e, dict)]
    out = ["<h3>Fingerprints</h3>"]
    if entries:
        rows = []
        for e in entries:
            refs = e.get("references") if isinstance(e.get("references"), list) else []
            ref_html = NONE
            if refs:
                items = "".join(f'<li><span class="mono">{esc(dig(r, "path", default="?"))}</span> '
                                f'<span class="mono muted">{esc(dig(r, "sha256", default=NONE))}</span></li>'
                                for r in refs)
                ref_html = f"<details><summary>{len(refs)} reference(s)</summary><ul>{items}</ul></details>"
            name = os.path.basename(str(e.get("path", "")))
            rows.append([esc(e.get("camera") or os.path.splitext(name)[0]),
                         f'<span class="mono">{esc(e.get("path", ""))}</span>',
                         f'<span class="mono">{esc(e.get("sha256") or NONE)}</span>',
                         esc(run.fp_check.get(name, "not checked")) if run.fp_dir else "not checked",
                         ref_html if str(e.get("path", "")).endswith(".json") else ""])
        out.append(html_table(["camera", "file", "SHA-256 (recorded in the manifest)", "file on disk", "references"],
                              rows))
    elif run.store:
        rows = []
        for fp in run.store:
            path = os.path.join(run.fp_dir or "", f"{fp.camera}.json")
            rows.append([esc(fp.camera), f'<span class="mono">{esc(path)}</span>',
                         f'<span class="mono">{esc(sha256_or_none(path) or NONE)}</span>', esc(", ".join(fp.methods)),
                         str(len(fp.references))])
        out.append('<p class="muted">Not recorded by a manifest: the files found now (SHA-256 taken now).</p>')
        out.append(html_table(["camera", "file", "SHA-256 (now)", "methods", "references"], rows))
    else:
        out.append('<p class="muted">Not known (no manifest and no fingerprint folder).</p>')
    return "\n".join(out)

"""Section 4 of the report, the Mahalanobis method as in the paper: the membership matrix (Table 5, grouped
by true camera), the effectiveness per camera (with ground truth), what drove the votes
(:mod:`.diagnostics`), and per image the membership, pairwise satisfied / unsatisfied counts (Tables 2-3)
and the trace."""
from __future__ import annotations

from typing import Any

import numpy as np

from camid_gpu.config import is_finite_number
from camid_gpu.report import diagnostics
from camid_gpu.report.decisions import maha_cell
from camid_gpu.report.html import (MAX_DETAILED_IMAGES, NONE, esc, html_table, image_link, img_label, kv_table, num,
                                   pct)
from camid_gpu.report.load import Run, dig


def _membership_cell(v: Any, associated: bool) -> str:
    shade = f"background:rgba(31,119,180,{0.08 + 0.5 * v / 100:.2f})" if is_finite_number(v) else ""
    text = pct(v)
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
        row = [f"<th>{esc(cq)}</th>"]
        for j in range(len(cams)):
            if q == j:
                row.append(f'<td class="num muted">{NONE}</td>')
                continue
            s, u = sat_a[q, j], uns_a[q, j]
            beat = s > u
            row.append(f'<td class="num{" beat" if beat else ""}">{s:.0f} / {u:.0f}</td>')
        rows.append(row)
    head = "".join(f"<th>{esc(c)}</th>" for c in cams)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<table><thead><tr><th>q (claimed) \\ j</th>{head}</tr></thead><tbody>{body}</tbody></table>'


def _maha_detail(run: Run, i: int, r: dict[str, Any]) -> str:
    maha = r["mahalanobis"]
    member = maha.get("membership") if isinstance(maha.get("membership"), dict) else {}
    assoc = [str(c) for c in maha.get("associated") or []]
    selected = maha.get("selected_pixels") if isinstance(maha.get("selected_pixels"), dict) else {}
    mrows = [[esc(c), _membership_cell(member.get(c), c in assoc), f'<td class="num">{num(selected.get(c), "")}</td>']
             for c in run.cameras]
    diag = maha.get("diagnostics") if isinstance(maha.get("diagnostics"), dict) else {}
    trace = maha.get("trace") if isinstance(maha.get("trace"), dict) else {}
    extra = [("mode", esc(maha.get("mode", NONE))),
             ("associated", esc(", ".join(assoc) or "none") + (' <span class="bad">(tie)</span>' if len(assoc) > 1
                                                               else "")),
             ("closer fraction full / intensity / PRNU",
              " / ".join(num(dig(diag, "closer_fraction", k), ".3f") for k in ("full", "intensity", "prnu"))),
             ("vote agreement with full: intensity / PRNU",
              " / ".join(num(dig(diag, "vote_agreement", k), ".3f") for k in ("intensity", "prnu"))),
             ("driver", esc(diag.get("driver", NONE))),
             ("trace mean (I0, PRNU)", esc(", ".join(num(v, ".4g") for v in trace.get("mean") or []) or NONE)),
             ("trace covariance [[I0 I0, I0 PRNU], [PRNU I0, PRNU PRNU]]", _matrix(trace.get("cov")))]
    summary = f"{img_label(i)} <span class=\"mono\">{esc(r.get('path'))}</span>: {maha_cell(r)}"
    return (f'<details id="maha-{i}"><summary>{summary}</summary>'
            + html_table(["camera", "membership", "pixels used"], mrows) + _pairwise_table(maha) + kv_table(extra)
            + "</details>")


def _matrix(value: Any) -> str:
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        return NONE if value is None else esc(value)
    return "[" + ", ".join("[" + ", ".join(num(v) for v in row) + "]" for row in value) + "]"


def section(run: Run) -> str:
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
                   f'<td class="wrap mono">{image_link(i, str(r.get("path")), "maha")}</td>']
            if run.has_truth:
                row.append(esc(truth))
            row += [_membership_cell(member.get(c), c in assoc) for c in cams]
            row.append(esc(", ".join(assoc) or "none") + (" (tie)" if len(assoc) > 1 else ""))
            rows.append(row)
        if truth is not None and members:
            means = []
            for c in cams:
                vals = [v for _, r in members if is_finite_number(v := dig(r, "mahalanobis", "membership", c))]
                means.append(f'<td class="num muted">{num(float(np.mean(vals)), ".1f") if vals else NONE}</td>')
            rows.append([f'<td colspan="3" class="muted">mean membership of the images of {esc(truth)}</td>']
                        + means + [""])
    out.append(html_table(headers, rows))

    ev = dig(run.evaluation, "mahalanobis")
    if run.has_truth and isinstance(ev, dict):
        out.append("<h3>Effectiveness per camera (ground truth)</h3>")
        eff = ev.get("effectiveness") if isinstance(ev.get("effectiveness"), dict) else {}
        eff_rows = [[esc(c), f'<td class="num">{num(dig(e, "images"))}</td>',
                     f'<td class="num">{num(dig(e, "associated_alone"))}</td>',
                     f'<td class="num">{num(dig(e, "rate"), ".1%") if is_finite_number(dig(e, "rate")) else NONE}</td>',
                     f'<td class="num">{num(dig(e, "mean_membership_own"), ".1f")}</td>']
                    for c, e in eff.items()]
        out.append(html_table(["camera", "images", "associated alone", "effectiveness rate", "mean membership (own)"],
                              eff_rows))
        out.append(f"<p>Accuracy (associated alone with the true camera; ties count as wrong): "
                   f"{num(ev.get('accuracy'), '.1%') if is_finite_number(ev.get('accuracy')) else NONE}; ties: "
                   f"{num(ev.get('ties'))}.</p>")

    out.extend(diagnostics.block(items))

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

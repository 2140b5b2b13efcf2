"""Section 2 of the report: the decision of every image, failed files included with their reason."""
from __future__ import annotations

from typing import Any

from camid_gpu.report.html import NONE, esc, html_table, image_link, num, pct
from camid_gpu.report.load import Run, dig


def _pce_cells(r: dict[str, Any]) -> list[str]:
    pce = r.get("pce")
    if not isinstance(pce, dict):
        return [NONE, NONE, NONE]
    decision = pce.get("decision")
    best, best_pce = pce.get("best"), pce.get("best_pce")
    if not pce.get("scores") and pce.get("not_comparable"):
        return ['<span class="bad">not comparable</span> <span class="muted">(no fingerprint of this geometry)</span>',
                NONE, NONE]
    if decision:
        dec = f"<b>{esc(decision)}</b>"
        above = [c for c in pce.get("above_threshold") or [] if c != decision]
        if above:
            dec += f' <span class="bad">(also above: {esc(", ".join(map(str, above)))})</span>'
        lfa = num(dig(pce, "scores", str(decision), "log10_p_fa"))
    else:
        dec = '<span class="muted">no camera</span>'
        lfa = NONE
    best_html = f'{num(best_pce)} <span class="muted">({esc(best)})</span>' if best is not None else num(best_pce)
    return [dec, f'<td class="num">{best_html}</td>', f'<td class="num">{lfa}</td>']


def maha_cell(r: dict[str, Any]) -> str:
    maha = r.get("mahalanobis")
    if not isinstance(maha, dict):
        return NONE
    assoc = [str(c) for c in maha.get("associated") or []]
    member = maha.get("membership") if isinstance(maha.get("membership"), dict) else {}
    if not assoc and not member and maha.get("not_comparable"):
        return '<span class="bad">not comparable</span>'
    if not assoc and maha.get("undetermined"):
        return '<span class="muted">none (one camera of this geometry: no vote)</span>'
    if not assoc:
        return '<span class="muted">none</span>'
    text = ", ".join(f"{esc(c)} {pct(member.get(c))}" for c in assoc)
    if len(assoc) > 1 or maha.get("tie"):
        text = f'<span class="bad">tie:</span> {text}'
    decision = dig(r, "pce", "decision")
    if isinstance(r.get("pce"), dict) and (len(assoc) != 1 or assoc[0] != decision):
        text += ' <span class="muted">(&ne; PCE)</span>'
    return text


def section(run: Run) -> str:
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
            reason = dig(err, "reason", default=err) if isinstance(err, dict) else err
            kind = dig(err, "kind", default="error") if isinstance(err, dict) else "error"
            cells += [f'<td class="wrap mono">{esc(path)}</td>',
                      f'<td colspan="7" class="err">not analysed: <b>{esc(kind)}</b>: {esc(reason)}</td>']
            if truth:
                cells.append(esc(r.get("truth") or NONE))
            cells.append(f'<td class="err">{esc(kind)}</td>')
            rows.append(cells)
            continue
        sha = str(r.get("sha256") or "")
        cells += [f'<td class="wrap mono">{image_link(i, path)}</td>',
                  f'<span class="mono" title="{esc(sha)}">{esc(sha[:12]) or NONE}</span>',
                  esc(r.get("kind") or NONE), esc(r.get("rotation", NONE))]
        cells += _pce_cells(r)
        cells.append(maha_cell(r))
        if truth:
            t = r.get("truth")
            marks = []
            if isinstance(r.get("pce"), dict):
                ok = dig(r, "pce", "decision") == t
                marks.append(f'<span class="{"ok" if ok else "bad"}">PCE {"✓" if ok else "✗"}</span>')
            if isinstance(r.get("mahalanobis"), dict):
                ok = [str(c) for c in dig(r, "mahalanobis", "associated", default=[])] == [t]
                marks.append(f'<span class="{"ok" if ok else "bad"}">M {"✓" if ok else "✗"}</span>')
            cells.append(f"{esc(t or NONE)} " + " ".join(marks))
        cells.append("")
        rows.append(cells)
    ok = run.ok
    decided = sum(1 for _, r in ok if dig(r, "pce", "decision"))
    ties = sum(1 for _, r in ok if len(dig(r, "mahalanobis", "associated", default=[]) or []) > 1)
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
            + '<div class="scroll">' + html_table(headers, rows, "decisions") + "</div></section>")

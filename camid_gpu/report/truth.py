"""Section 6 of the report, with ground truth: accuracy of both methods, their confusion matrices, and the
PCE ROC curve (AUC, EER, FAR/FRR against the threshold)."""
from __future__ import annotations

from typing import Any

import numpy as np

from camid_gpu.config import is_finite_number
from camid_gpu.report.figures import PCE_LINTHRESH, figure, legend, png, symlog
from camid_gpu.report.html import NONE, esc, html_table, kv_table, num
from camid_gpu.report.load import Run, dig


def _confusion_table(conf: dict[str, Any]) -> str:
    rows_l, cols = conf.get("rows") or [], conf.get("columns") or []
    counts = conf.get("counts") or []
    body = []
    for t, row in zip(rows_l, counts):
        cells = [f"<th>{esc(t)}</th>"]
        for c, v in zip(cols, row):
            style = ' style="background:#dafbe1"' if c == t and is_finite_number(v) and v else \
                (' style="background:#ffebe9"' if is_finite_number(v) and v else "")
            cells.append(f'<td class="num"{style}>{num(v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    return (f'<table><thead><tr><th>true \\ predicted</th>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody></table>")


def _confusion_figure(blocks: list[tuple[str, dict[str, Any]]]) -> str | None:
    usable = [(name, c) for name, c in blocks if c.get("rows") and c.get("columns") and c.get("counts")]
    if not usable:
        return None
    fig = figure(4.2 * len(usable), 0.35 * max(len(c["rows"]) for _, c in usable) + 2.0)
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
    return png(fig, "confusion matrices")


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
    fig = figure(8.4, 3.2, layout=None)
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.14, top=0.92, wspace=0.22)
    ax1, ax2 = fig.subplots(1, 2)
    # the curve from "accept everything" (far 1, tpr 1) to "accept nothing" (0, 0)
    xs = np.concatenate([[1.0], far, [0.0]])
    ys = np.concatenate([[1.0], 1.0 - frr, [0.0]])
    ax1.step(xs, ys, where="post", color="#1f77b4", linewidth=1.5)
    ax1.plot([0, 1], [0, 1], color="#9aa5b1", linewidth=0.7, linestyle=":")
    if is_finite_number(pce.get("far_at_threshold")) and is_finite_number(pce.get("frr_at_threshold")):
        ax1.plot(pce["far_at_threshold"], 1 - pce["frr_at_threshold"], "o", color="#d62728",
                 label=f"threshold {pce.get('threshold', '')}")
    if is_finite_number(roc.get("eer")):
        ax1.plot(roc["eer"], 1 - roc["eer"], "s", color="#2ca02c", label=f"EER {roc['eer']:.3f}")
    ax1.set_xlim(-0.02, 1.02)
    ax1.set_ylim(-0.02, 1.02)
    ax1.set_xlabel("false acceptance rate (impostor PCE above threshold)")
    ax1.set_ylabel("true acceptance rate (1 - FRR)")
    auc = roc.get("auc")
    ax1.set_title("PCE ROC" + (f", AUC {auc:.4f}" if is_finite_number(auc) else ""))
    legend(ax1, loc="lower right", frameon=False)
    ax2.step(thr, far, where="post", label="FAR", color="#d62728")
    ax2.step(thr, frr, where="post", label="FRR", color="#1f77b4")
    ax2.set_xscale("symlog", linthresh=PCE_LINTHRESH)
    symlog(ax2.xaxis)
    if is_finite_number(pce.get("threshold")):
        ax2.axvline(pce["threshold"], color="#d62728", linestyle="--", linewidth=1)
    if is_finite_number(roc.get("eer_threshold")):
        ax2.axvline(roc["eer_threshold"], color="#2ca02c", linestyle=":", linewidth=1)
    ax2.set_xlabel("PCE threshold (symlog; dashed: the run's threshold, dotted: EER)")
    ax2.set_ylabel("rate")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_title("FAR and FRR against the threshold")
    legend(ax2, loc="center right", frameon=False)
    return png(fig, "PCE ROC curve")


def _accuracy_rows(name: str, block: dict[str, Any]) -> list[list[str]]:
    rows = []
    for kind, b in [("all", block)] + list((block.get("per_kind") or {}).items()):
        if not isinstance(b, dict):
            continue
        acc = b.get("accuracy")
        rows.append([esc(name), esc(kind), f'<td class="num">{num(b.get("count"))}</td>',
                     f'<td class="num">{num(b.get("correct"))}</td>',
                     f'<td class="num">{format(acc, ".1%") if is_finite_number(acc) else NONE}</td>'])
    return rows


def section(run: Run, mpl) -> str:
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
        out.append(html_table(["method", "images", "scored", "correct", "accuracy"], rows))
    blocks = [(n, b["confusion"]) for n, b in (("PCE", pce), ("Mahalanobis", maha))
              if isinstance(b, dict) and isinstance(b.get("confusion"), dict)]
    if blocks:
        out.append("<h3>Confusion matrices (rows: true camera)</h3>")
        img = _confusion_figure(blocks)
        if img:
            out.append(f"<figure>{img}</figure>")
        for name, conf in blocks:
            out.append(f"<h4>{esc(name)}</h4>" + _confusion_table(conf))
    if isinstance(pce, dict):
        roc = pce.get("roc") if isinstance(pce.get("roc"), dict) else {}
        out.append("<h3>PCE ROC</h3>")
        out.append(kv_table([("AUC", num(roc.get("auc"))), ("EER", num(roc.get("eer"))),
                             ("PCE threshold at the EER", num(roc.get("eer_threshold"))),
                             (f"FAR at the threshold {num(pce.get('threshold'))}", num(pce.get("far_at_threshold"))),
                             (f"FRR at the threshold {num(pce.get('threshold'))}", num(pce.get("frr_at_threshold"))),
                             ("genuine PCE min / median",
                              " / ".join(num(dig(pce, "genuine_pce", k)) for k in ("min", "median"))),
                             ("impostor PCE max / median",
                              " / ".join(num(dig(pce, "impostor_pce", k)) for k in ("max", "median")))]))
        img = _roc_figure(pce)
        out.append(f"<figure>{img}</figure>" if img else '<p class="muted">No ROC curve (needs genuine and '
                   "impostor scores).</p>")
    errors = ev.get("errors") if isinstance(ev.get("errors"), list) else []
    if errors:
        out.append(f"<p>{len(errors)} file(s) failed and are not scored (see the decision table).</p>")
    out.append("</section>")
    return "\n".join(out)

"""Section 3 of the report, PCE per image: a bar chart against every fingerprint (symlog axis, threshold
drawn), or above :data:`MAX_IMAGE_CHARTS` images heat-maps of the PCE matrix; every score in a table."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from camid_gpu.config import is_finite_number
from camid_gpu.prnu.decision import exceeds
from camid_gpu.report.figures import PCE_LINTHRESH, figure, png, symlog
from camid_gpu.report.html import MAX_DETAILED_IMAGES, NONE, esc, html_table, img_label, kv_table, num
from camid_gpu.report.load import Run, dig
from camid_gpu.report.wording import axis_label, human_size

#: more images than this: no per-image bar charts, heat-maps of the PCE matrix instead
MAX_IMAGE_CHARTS = 40
#: rows per PCE heat-map figure (above MAX_IMAGE_CHARTS images)
HEATMAP_ROWS = 50
#: more images than this: one overview heat-map without per-row labels
MAX_HEATMAP_FIGURES = 20


def _pce_values(r: dict[str, Any], cameras: Sequence[str]) -> list[float]:
    scores = dig(r, "pce", "scores", default={})
    return [float(v) if is_finite_number(v := dig(scores, c, "pce")) else math.nan for c in cameras]


def _pce_axis_limits(values: Sequence[float], threshold: float) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    lo = min([0.0] + finite)
    hi = max([threshold] + finite)
    return (min(-PCE_LINTHRESH, lo * 1.6), max(threshold * 3.0, hi * 2.0))


def _pce_bar_figure(run: Run, i: int, r: dict[str, Any]) -> str:
    cameras = run.cameras
    values = _pce_values(r, cameras)
    thr = run.threshold
    decision, truth = dig(r, "pce", "decision"), r.get("truth")
    longest = max((len(c) for c in cameras), default=0)
    rotate = len(cameras) > 6 or longest > 6
    width, height = max(2.8, 0.38 * len(cameras) + 1.3), 2.3
    bottom = (0.3 + 0.05 * min(longest, 30)) if rotate else 0.35  # inches for the camera names
    # fixed margins (many of these figures: a layout engine would double the rendering time)
    fig = figure(width, height + bottom - 0.35, layout=None)
    fig.subplots_adjust(left=0.55 / width, right=1 - 0.1 / width, bottom=bottom / (height + bottom - 0.35),
                        top=1 - 0.3 / (height + bottom - 0.35))
    ax = fig.add_subplot()
    x = np.arange(len(cameras))
    heights = [v if math.isfinite(v) else 0.0 for v in values]
    colors = ["#1f77b4" if exceeds(v, thr) else "#9aa5b1" for v in values]
    edges = ["#000000" if c == truth else "none" for c in cameras]
    ax.bar(x, heights, color=colors, edgecolor=edges, linewidth=1.2, width=0.7)
    ax.set_yscale("symlog", linthresh=PCE_LINTHRESH)
    symlog(ax.yaxis)
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
    title = f"{img_label(i)}: " + (f"{decision}" if decision else "no decision")
    ax.set_title(title + (f" (truth {truth})" if truth else ""))
    return png(fig, f"PCE of image {i} against every fingerprint")


def _pce_heatmaps(run: Run, items: list[tuple[int, dict[str, Any]]]) -> list[str]:
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
        fig = figure(max(3.5, 0.5 * len(cameras) + 2.2), height)
        ax = fig.add_subplot()
        im = ax.imshow(np.ma.masked_invalid(rows), aspect="auto", cmap="viridis", norm=norm,
                       interpolation="nearest" if labelled else "antialiased")
        ax.set_xticks(np.arange(len(cameras)), cameras, rotation=45 if len(cameras) > 6 else 0)
        if labelled:
            ax.set_yticks(np.arange(len(chunk)), [axis_label(i, r.get("path")) for i, r in chunk])
            ys, xs = np.nonzero(exceeds(rows, thr))
            ax.scatter(xs, ys, marker="o", s=40, facecolors="none", edgecolors="#d62728", linewidths=1.2)
            ax.set_title(f"PCE {img_label(chunk[0][0])}-{img_label(chunk[-1][0])} (ring: > {thr:g})")
        else:
            from matplotlib.ticker import FuncFormatter, MaxNLocator

            numbers = [i for i, _ in chunk]
            ax.yaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
            ax.yaxis.set_major_formatter(FuncFormatter(
                lambda v, _pos: img_label(numbers[int(v)]) if 0 <= int(v) < len(numbers) and v == int(v) else ""))
            ax.set_ylabel("image")
            ax.set_title(f"PCE of all {len(chunk)} images")
        bar = fig.colorbar(im, ax=ax, label="PCE (symlog)", shrink=0.9)
        symlog(bar.ax.yaxis)
        out.append(f"<figure>{png(fig, 'PCE heat-map')}</figure>")
    return out


def _pce_detail(run: Run, i: int, r: dict[str, Any]) -> str:
    scores = dig(r, "pce", "scores", default={})
    refused = dig(r, "pce", "not_comparable", default={}) or {}
    thr = run.threshold
    rows = []
    for c in run.cameras:
        if c in refused and c not in scores:  # another geometry: no score, which is not "below threshold"
            reason = dig(refused, c, "reason", default="")
            rows.append([esc(c), f'<td colspan="4"><span class="bad">not comparable</span>: {esc(reason)}</td>'])
            continue
        s = dig(scores, c, default={})
        above = exceeds(s.get("pce"), thr)
        rows.append([esc(c) + (" (decision)" if c == dig(r, "pce", "decision") else ""),
                     f'<td class="num">{"<b>" if above else ""}{num(s.get("pce"))}{"</b>" if above else ""}</td>',
                     f'<td class="num">{num(s.get("ncc"))}</td>', f'<td class="num">{num(s.get("log10_p_fa"))}</td>',
                     esc(s.get("peak_shift", NONE)) + (f' <span class="muted">(crop offset, {esc(s.get("positions_searched"))} '
                                                      f'offsets searched)</span>' if "offset" in s else "")])
    exif = r.get("exif") if isinstance(r.get("exif"), dict) else {}
    meta = [("SHA-256", f'<span class="mono">{esc(r.get("sha256") or NONE)}</span>'),
            ("file", f'{esc(r.get("format") or NONE)}, {esc(human_size(r.get("file_size")))}, '
                     f'{esc(" x ".join(map(str, r.get("size") or [])) or NONE)} pixels (h x w), '
                     f'{esc(r.get("channels", NONE))} channel(s), {esc(r.get("bit_depth", NONE))} bit'),
            ("kind", f'{esc(r.get("kind") or NONE)} (from {esc(r.get("kind_source") or NONE)})'),
            ("rotation", f'{esc(r.get("rotation", NONE))} (tried {esc(r.get("rotations_tried", NONE))})')]
    by_rot = dig(r, "pce", "max_pce_by_rotation")
    if isinstance(by_rot, dict):
        meta.append(("max PCE by rotation", esc(", ".join(f"{k}: {num(v)}" for k, v in by_rot.items()))))
    if exif:
        meta.append(("EXIF (not used for decisions)",
                     esc("; ".join(f"{k}: {v}" for k, v in sorted(exif.items(), key=lambda kv: str(kv[0]))))))
    if r.get("truth"):
        meta.append(("truth", esc(r["truth"])))
    table = html_table(["camera", "PCE", "NCC", "log10 P_FA", "peak shift"], rows) if isinstance(r.get("pce"), dict) \
        else '<p class="muted">No PCE in this run.</p>'
    return (f'<details id="pce-{i}"><summary>{img_label(i)} <span class="mono">{esc(r.get("path"))}</span>'
            f"</summary>{kv_table(meta)}{table}</details>")


def section(run: Run, mpl) -> str:
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
                   f"Image numbers (#) are those of the decision table. A fingerprint of another geometry (sensor "
                   f"size) than the image is <b>not comparable</b>: it has no bar or cell (blank), which is not the "
                   f"same as a score below the threshold; the per-image tables give the reason.</p>")
        with_pce = [(i, r) for i, r in ok if isinstance(r.get("pce"), dict)]
        if len(with_pce) <= MAX_IMAGE_CHARTS:
            figs = [f'<figure>{_pce_bar_figure(run, i, r)}<figcaption>{img_label(i)} '
                    f'<a href="#pce-{i}" class="mono">{esc(r.get("path"))}</a></figcaption></figure>'
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

"""The report of a clustering run (``camid report RUN`` where RUN holds ``clusters.json``).

Sections: the run (command, software, parameters, timings); per geometry group the thresholds of both
stages (pairs, fingerprint refinement) and the null actually observed, the similarity matrix ordered by
cluster (heat-map), the average-linkage dendrogram cut at the threshold, the cluster sizes and the null
histogram with both thresholds; then every cluster with its members (SHA-256) and the evidence of every
link, merge and attachment, and the images left unclustered or failed. Same conventions as the
identification report (:mod:`camid_gpu.report.html`): one self-contained HTML file, every string from the
run escaped, figures carry numbers, not file names.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import warnings
from typing import Any

import numpy as np

from camid_gpu._shared.custody import Custody, check_files
from camid_gpu._shared.files import atomic_write
from camid_gpu._version import __version__
from camid_gpu.errors import CamidError
from camid_gpu.report.custody import CSS as CUSTODY_CSS
from camid_gpu.report.custody import banner
from camid_gpu.report.figures import RC as _RC
from camid_gpu.report.figures import camera_color as _camera_color
from camid_gpu.report.figures import figure as _figure
from camid_gpu.report.figures import load_matplotlib as _matplotlib
from camid_gpu.report.figures import png as _png
from camid_gpu.report.figures import symlog as _symlog
from camid_gpu.report.html import _CSS
from camid_gpu.report.html import NONE as _NONE
from camid_gpu.report.html import esc as _e
from camid_gpu.report.html import html_table as _table
from camid_gpu.report.wording import axis_label, param_rows, timings_table
from camid_gpu.report.html import json_value as _json_value
from camid_gpu.report.html import kv_table as _kv
from camid_gpu.report.html import num as _f
from camid_gpu.report.overview import _skipped_table

#: largest matrix drawn cell by cell in the heat-map; bigger ones are reduced by block maxima
HEATMAP_CELLS = 400
#: images beyond which the dendrogram has no leaf labels
DENDROGRAM_LABELS = 60
#: groups with figures (the rest are listed in the tables only)
MAX_GROUP_FIGURES = 12
#: members listed per cluster
MAX_MEMBERS_LISTED = 500


def is_cluster_run(run_dir: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(os.fspath(run_dir), "clusters.json"))


def write_cluster_report(run_dir: str | os.PathLike, output_html: str | os.PathLike) -> tuple[str, Custody]:
    """Write the report of a clustering run folder to ``output_html`` (atomically); returns the path and what
    ``clusters.json`` was checked against (the banner's content)."""
    mpl = _matplotlib()
    check = check_files(os.fspath(run_dir), ["clusters.json"])  # every file it reads: against the manifest
    with mpl.rc_context(_RC), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        text = render_cluster_report(run_dir, check)
    output_html = os.fspath(output_html)
    with atomic_write(output_html) as handle:  # a failure (a full disk) leaves no temporary file behind
        handle.write(text)
    return output_html, check


def render_cluster_report(run_dir: str | os.PathLike, check: Custody | None = None) -> str:
    """The HTML report of a clustering run folder (call inside :func:`write_cluster_report`'s style context);
    ``check``: what ``clusters.json`` was checked against (checked here when not given)."""
    run_dir = os.fspath(run_dir)
    if check is None:
        check = check_files(run_dir, ["clusters.json"])
    try:
        with open(os.path.join(run_dir, "clusters.json"), encoding="utf-8") as handle:
            result = json.load(handle)
    except (OSError, ValueError) as exc:
        raise CamidError(f"{run_dir}: clusters.json cannot be read ({exc})") from None
    if result.get("format") != "camid-clusters":
        raise CamidError(f"{run_dir}: clusters.json is not a camid clustering result")
    notes: list[str] = []
    manifest = None
    try:
        with open(os.path.join(run_dir, "manifest.json"), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        notes.append("No readable manifest.json: the command, times and software versions are not known.")
    custody = banner(check)
    sections = [_section_run(result, manifest), _section_groups(run_dir, result, notes),
                _section_clusters(result), _section_unclustered(result)]
    title = f"camid clustering report: {os.path.basename(os.path.abspath(run_dir))}"
    note_html = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}{CUSTODY_CSS}</style></head><body>\n<h1>{_e(title)}</h1>\n"
            f"{custody}"
            f'<p class="muted">Run folder <span class="mono">{_e(os.path.abspath(run_dir))}</span>; report made by '
            f"camid_gpu {_e(__version__)}.</p>\n{note_html}" + "\n".join(s for s in sections if s)
            + "\n</body></html>\n")


def _section_run(result: dict[str, Any], manifest: dict[str, Any] | None) -> str:
    m = manifest or {}
    argv = m.get("argv")
    command = shlex.join(str(a) for a in argv) if isinstance(argv, list) else None
    images = sum(g["images"] for g in result["groups"])
    clustered = sum(c["size"] for c in result["clusters"])
    pairs = [("command line", f"<code>{_e(command)}</code>" if command else _NONE),
             ("started", _e(m.get("started", _NONE))), ("finished", _e(m.get("finished", _NONE))),
             ("backend", _e(result.get("backend", _NONE))),
             ("images", f"{images} usable, {len(result['errors'])} with errors"),
             ("clusters", f"{len(result['clusters'])} holding {clustered} images; "
                          f"{len(result['unclustered'])} images unclustered"),
             ("comparisons in the whole set", _f(result.get("comparisons"), "d")),
             ("refinement comparisons (upper bound, fixed before refining)",
              _f(result.get("refine_comparisons"), "d") if "refine_comparisons" in result else _NONE),
             ("time (s)", timings_table(m.get("timings_s")))]
    out = ['<section id="run"><h2>1. The run</h2>',
           '<p class="lead"><b>How to read this report.</b> Two images are <b>linked</b> when the normalised '
           "correlation (NCC) of their noise residuals exceeds the threshold set by the false-alarm probability "
           "<i>for the whole set</i> (--pfa, corrected for the number of comparisons) <b>and</b> the zero-shift "
           "PCE confirms it. Clusters are built from the linked pairs by average linkage, then merged and "
           "extended by the ML fingerprints of the clusters; every step is listed with its evidence below. "
           "--pfa covers both stages together: the pairs spend one share of it over their comparisons, the "
           "fingerprint merges and attachments the other share over an upper bound of theirs, fixed before "
           "the first of them (table below). "
           "A cluster says the images share a sensor; it does not name the camera.</p>", _kv(pairs)]
    params = result.get("params") or {}
    out.append("<h3>Parameters</h3>" + _kv(param_rows(params)))
    software = m.get("software")
    if isinstance(software, dict):
        out.append("<h3>Software</h3>" + _kv((str(k), _json_value(v)) for k, v in sorted(software.items())))
    out.append("</section>")
    return "\n".join(out)


def _section_groups(run_dir: str, result: dict[str, Any], notes: list[str]) -> str:
    out = ['<section id="groups"><h2>2. Geometry groups: thresholds, null and similarity</h2>']
    rows = []
    for g in result["groups"]:
        t, null = g["threshold"], g["null"]
        rows.append([_e(g["name"]), _f(g["images"], "d"), _e("x".join(map(str, g["region"]))),
                     _f(g["image_pairs"], "d"), _f(t["ncc"]), _f(t["z"], ".3g"),
                     _f(null.get("theory_std")), _f(null.get("robust_std")), _e(t["null_source"]),
                     _f(t["pce"], ".3g"), _f(g["candidate_pairs"], "d"), _f(g["confirmed_pairs"], "d"),
                     _f(g["refine_rounds"], "d")])
    out.append(_table(["group", "images", "region", "pairs", "NCC threshold", "z", "null std (model 1/sqrt n)",
                       "null std observed", "spread used", "PCE threshold", "pairs above NCC",
                       "pairs linked", "refine rounds"], rows))
    stages = []
    for g in result["groups"]:
        for label, t in (("pairs", g["threshold"]), ("refinement", g.get("refine_threshold"))):
            if not t:
                continue
            stages.append([_e(g["name"]), _e(label), _f(t.get("share"), ".3g"), _f(t.get("stage_pfa"), ".3g"),
                           _f(t["tests"], "d"), _f(t["alpha"], ".3g"), _f(t["z"], ".3g"), _f(t["ncc"]),
                           _f(t["pce"], ".3g")])
    if any(g.get("refine_threshold") for g in result["groups"]):
        out.append("<h3>The two stages' thresholds</h3><p>Each stage has its own share of --pfa "
                   f"({_f(result['groups'][0]['threshold']['pfa'], '.3g')} for the whole run, both stages "
                   "together: 1 - (1 - pfa_pairs)(1 - pfa_refinement) = pfa) and its own Sidak level over its "
                   "comparisons (the pairs: counted; the refinement: an upper bound from the clusters and "
                   "unclustered images after the pair stage, the turns tried and the rounds allowed).</p>")
        out.append(_table(["group", "stage", "share of --pfa", "pfa spent", "comparisons", "alpha", "z",
                           "NCC threshold", "PCE threshold"], stages))
    cluster_index = {c["id"]: k for k, c in enumerate(result["clusters"])}
    for k, g in enumerate(result["groups"]):
        if k >= MAX_GROUP_FIGURES:
            notes.append(f"Figures are drawn for the first {MAX_GROUP_FIGURES} groups only.")
            break
        try:
            sim = np.load(os.path.join(run_dir, "similarity", f"{g['name']}.npy"))
            tree = np.load(os.path.join(run_dir, "similarity", f"{g['name']}-linkage.npy"))
        except (OSError, ValueError) as exc:
            notes.append(f"Group {g['name']}: similarity matrix not readable ({exc}); figures left out.")
            continue
        labels = _labels(g, result)
        figs = [_heatmap(sim, labels, g, cluster_index), _dendrogram(tree, g), _sizes(result, g),
                _null_histogram(g)]
        out.append(f"<h3>Group {_e(g['name'])}</h3><div class=\"grid\">"
                   + "".join(f"<figure>{f}</figure>" for f in figs if f) + "</div>")
    out.append("</section>")
    return "\n".join(out)


def _labels(group: dict[str, Any], result: dict[str, Any]) -> list[str | None]:
    """The cluster id of every image of a group, in the group's order (None: unclustered)."""
    of = {m["path"]: c["id"] for c in result["clusters"] if c["group"] == group["name"] for m in c["members"]}
    return [of.get(p) for p in group["order"]]


def _heatmap(sim: np.ndarray, labels: list[str | None], group: dict[str, Any], cluster_index: dict[str, int]) -> str:
    order = sorted(range(len(labels)), key=lambda i: (labels[i] is None, labels[i] or "", i))
    s = sim[np.ix_(order, order)].astype(np.float64)
    z = s / group["threshold"]["null_std"]  # in units of the null spread
    n = z.shape[0]
    if n > HEATMAP_CELLS:  # block maxima keep every link visible
        f = math.ceil(n / HEATMAP_CELLS)
        m = math.ceil(n / f)
        padded = np.full((m * f, m * f), -np.inf)
        padded[:n, :n] = z
        z = padded.reshape(m, f, m, f).max(axis=(1, 3))
    np.fill_diagonal(z, np.nan)
    fig = _figure(4.6, 4.0)
    ax = fig.add_subplot()
    zt = group["threshold"]["ncc"] / group["threshold"]["null_std"]
    im = ax.imshow(np.clip(z, -5, 2 * zt), cmap="magma", interpolation="nearest", vmin=-5, vmax=2 * zt)
    fig.colorbar(im, ax=ax, label="NCC / null spread")
    # cluster boundaries
    pos = 0
    for cid in dict.fromkeys(labels[i] for i in order):
        size = sum(1 for i in order if labels[i] == cid)
        if cid is not None and n <= HEATMAP_CELLS:
            ax.add_patch(_rect(pos - 0.5, size, _camera_color(cluster_index[cid])))
        pos += size
    ax.set_title(f"{group['name']}: NCC of all pairs, ordered by cluster")
    ax.set_xlabel("image (ordered by cluster; unclustered last)")
    if n <= DENDROGRAM_LABELS:  # file names on the axes while they stay legible
        names = [axis_label(None, group["order"][i]) for i in order]
        ax.set_xticks(range(n), names, rotation=90, fontsize=5)
        ax.set_yticks(range(n), names, fontsize=5)
    return _png(fig, f"similarity heat-map of group {group['name']}")


def _rect(start: float, size: int, color: str):
    from matplotlib.patches import Rectangle

    return Rectangle((start, start), size, size, fill=False, edgecolor=color, linewidth=1.2)


def _dendrogram(tree: np.ndarray, group: dict[str, Any]) -> str | None:
    if tree.shape[0] < 1:
        return None
    from scipy.cluster.hierarchy import dendrogram

    fig = _figure(4.6, 4.0)
    ax = fig.add_subplot()
    n = tree.shape[0] + 1
    dendrogram(tree, ax=ax, no_labels=n > DENDROGRAM_LABELS, color_threshold=0, above_threshold_color="#555555",
               leaf_font_size=6, labels=[axis_label(None, p) for p in group["order"]]
               if n <= DENDROGRAM_LABELS else None)
    cut = 1.0 - group["threshold"]["ncc"]
    ax.axhline(cut, color="#d62728", linestyle="--", linewidth=1, label=f"cut at 1 - threshold = {cut:.4f}")
    lo = max(0.0, float(tree[:, 2].min()) - 0.01)
    ax.set_ylim(lo, min(1.05, max(float(tree[:, 2].max()), cut) + 0.005))
    ax.set_ylabel("1 - average NCC")
    ax.set_title(f"{group['name']}: average-linkage dendrogram")
    ax.legend(loc="lower right")
    return _png(fig, f"dendrogram of group {group['name']}")


def _sizes(result: dict[str, Any], group: dict[str, Any]) -> str | None:
    sizes = [c["size"] for c in result["clusters"] if c["group"] == group["name"]]
    if not sizes:
        return None
    fig = _figure(4.6, 3.0)
    ax = fig.add_subplot()
    ax.bar(range(1, len(sizes) + 1), sizes, color="#1f77b4")
    ax.set_xlabel("cluster (by size)")
    ax.set_ylabel("images")
    ax.set_title(f"{group['name']}: cluster sizes ({sum(1 for p in group['order']) - sum(sizes)} unclustered)")
    return _png(fig, f"cluster sizes of group {group['name']}")


def _null_histogram(group: dict[str, Any]) -> str | None:
    hist = group["null"].get("histogram")
    if not hist:
        return None
    counts, edges = np.asarray(hist["counts"], float), np.asarray(hist["edges"], float)
    fig = _figure(4.6, 3.0)
    ax = fig.add_subplot()
    ax.stairs(np.maximum(counts, 0.5), edges, fill=True, color="#9ecae1", label="all pairs")
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    total = counts.sum()
    for std, name, style in ((group["null"]["theory_std"], "N(0, 1/n)", ":"),
                             (group["threshold"]["null_std"], "null used", "-")):
        pdf = total * width * np.exp(-0.5 * (centres / std) ** 2) / (std * math.sqrt(2 * math.pi))
        ax.plot(centres, np.maximum(pdf, 0.5), style, color="#333333", linewidth=1, label=name)
    ax.axvline(group["threshold"]["ncc"], color="#d62728", linestyle="--", linewidth=1, label="pair threshold")
    if group.get("refine_threshold"):
        ax.axvline(group["refine_threshold"]["ncc"], color="#9467bd", linestyle=":", linewidth=1,
                   label="refinement threshold")
    ax.set_yscale("log")
    _symlog(ax.yaxis)  # plain-number tick labels (mathtext is off)
    ax.set_ylim(0.5, max(total, 1) * 1.5)
    ax.set_xlabel("NCC of an image pair")
    ax.set_ylabel("pairs")
    ax.set_title(f"{group['name']}: off-diagonal NCC and the null")
    ax.legend(loc="upper right")
    return _png(fig, f"null histogram of group {group['name']}")


def _section_clusters(result: dict[str, Any]) -> str:
    out = ['<section id="clusters"><h2>3. Clusters and their evidence</h2>']
    if not result["clusters"]:
        out.append("<p>No cluster: no two images were linked at this false-alarm probability.</p>")
    for c in result["clusters"]:
        links = c["links"]
        confirmed = [l for l in links if l["confirmed"]]
        out.append(f"<h3 id=\"{_e(c['id'])}\">{_e(c['id'])} ({c['size']} images, group {_e(c['group'])})</h3>")
        out.append(f"<p>Fingerprint: <span class=\"mono\">{_e(c['fingerprint']['metadata'])}</span></p>")
        members = [[_f(k + 1, "d"), f'<span class="mono wrap">{_e(m["path"])}</span>',
                    f'<span class="mono">{_e(m["sha256"])}</span>', _f(m["rotation"], "d")]
                   for k, m in enumerate(c["members"][:MAX_MEMBERS_LISTED])]
        out.append(_table(["#", "path", "SHA-256", "rotation"], members))
        steps = []
        for e in c["events"]:
            if e["kind"] == "pairs":
                steps.append(["average linkage of linked pairs", _e(f"{len(e['members'])} images"), _NONE, _NONE])
            elif e["kind"] == "fingerprint-merge":
                steps.append(["merge by cluster fingerprints",
                              _e(f"{len(e['members_before'])} + {len(e['merged'])} images"), _f(e["ncc"]),
                              _f(e["pce"])])
            elif e["kind"] == "attach":
                steps.append(["image attached to the cluster fingerprint", f'<span class="mono wrap">{_e(e["image"])}'
                              "</span>", _f(e["ncc"]), _f(e["pce"])])
        out.append(_table(["step", "what", "NCC", "PCE"], steps))
        if confirmed:
            rows = [[f'<span class="mono wrap">{_e(l["a"])}</span>', f'<span class="mono wrap">{_e(l["b"])}</span>',
                     _f(l["ncc"]), _f(l["pce"])] for l in confirmed[:MAX_MEMBERS_LISTED]]
            out.append(f"<details><summary>{len(confirmed)} linked pairs inside the cluster</summary>"
                       + _table(["image", "image", "NCC", "PCE"], rows) + "</details>")
    out.append("</section>")
    return "\n".join(out)


def _section_unclustered(result: dict[str, Any]) -> str:
    out = ['<section id="unclustered"><h2>4. Unclustered images and errors</h2>']
    rows = [[f'<span class="mono wrap">{_e(u["path"])}</span>', f'<span class="mono">{_e(u["sha256"])}</span>',
             _e(u["group"])] for u in result["unclustered"]]
    out.append(_table(["path", "SHA-256", "group"], rows) if rows else "<p>None.</p>")
    failed = [[f'<span class="mono wrap">{_e(e["path"])}</span>', _e(e["error"]["kind"]),
               f'<td class="err">{_e(e["error"]["reason"])}</td>'] for e in result["errors"]]
    if failed:
        out.append("<h3>Files that could not be used</h3>" + _table(["path", "kind", "reason"], failed))
    identical = [[f'<span class="mono wrap">{_e(", ".join(paths))}</span>'] for paths in
                 result.get("identical_files") or []]
    if identical:
        out.append("<h3>Byte-identical files</h3><p>The same bytes under several names: they link with NCC 1, "
                   "and their link is one image's evidence, not several.</p>" + _table(["files"], identical))
    same = [[f'<span class="mono wrap">{_e(", ".join(paths))}</span>'] for paths in
            result.get("same_pixels_files") or []]
    if same:
        out.append("<h3>Files with the same decoded pixels</h3><p>One photo in several containers (JPEG, PNG, BMP, "
                   "TIFF): compared once, as one image, like byte-identical files.</p>" + _table(["files"], same))
    out.append(_skipped_table({"skipped_inputs": result.get("skipped")}))
    out.append("</section>")
    return "\n".join(out)

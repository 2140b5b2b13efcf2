"""The report's diagnostics for casework: per decision the PCE correlation surface around the peak, and per
fingerprint its quality (references used and left out with the reasons, each reference's saturation share and
PCE against the fingerprint of the others). Recomputed on NumPy by :mod:`camid_gpu.evidence.diagnostics`."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from camid_gpu.config import Params
from camid_gpu.errors import CamidError
from camid_gpu.evidence.diagnostics import fingerprint_quality, pce_surface
from camid_gpu.report.figures import figure, png
from camid_gpu.report.html import NONE, esc, html_table, num
from camid_gpu.report.load import Run, dig

#: correlation surfaces are drawn for at most this many decisions (each recomputes a residual)
MAX_SURFACES = 100
#: fingerprint quality is recomputed for at most this many references in all (two residuals and one
#: leave-one-out fingerprint each); the cameras decided in the run come first, the others are named in a note
MAX_QUALITY_REFERENCES = 300


def _params(run: Run) -> Params | None:
    params = dig(run.manifest, "params")
    try:
        return Params.from_dict(params) if isinstance(params, dict) else None
    except (TypeError, ValueError):
        return None


def _surface_figure(s: dict[str, Any], title: str) -> str:
    fig = figure(2.8, 2.5)
    ax = fig.add_subplot()
    r = s["radius"]
    image = ax.imshow(np.asarray(s["surface"]), cmap="viridis", extent=(-r - .5, r + .5, r + .5, -r - .5))
    fig.colorbar(image, ax=ax, label="C / sqrt(energy)")
    ax.set_xlabel("columns from the peak")
    ax.set_ylabel("rows from the peak")
    ax.set_title(title)
    # class "surface": told apart from the sections' figures (as the casework thumbnails, class "thumb")
    return png(fig, title).replace("<img ", '<img class="surface" ', 1)


def _surfaces(run: Run, params: Params) -> list[str]:
    by_name = {fp.camera: fp for fp in run.store}
    figs = []
    for i, r in run.ok:
        cam = dig(r, "pce", "decision")
        score = dig(r, "pce", "scores", str(cam)) if cam else None
        if not cam or cam not in by_name or not isinstance(score, dict) or score.get("match") not in ("full-frame", "clip"):
            continue
        if len(figs) >= MAX_SURFACES:
            break
        try:
            s = pce_surface(str(r.get("realpath") or r.get("path")), int(r.get("rotation") or 0), by_name[cam].k, params)
        except (CamidError, OSError, ValueError) as exc:
            figs.append(f'<figure><p class="bad">#{i}: {esc(exc)}</p></figure>')
            continue
        caption = (f"#{i} against {esc(cam)}: PCE recomputed {s['pce']:.4g} (recorded {num(score.get('pce'))}), "
                   f"peak at shift {s['peak_shift']}")
        figs.append(f"<figure>{_surface_figure(s, f'#{i} vs {cam}')}<figcaption>{caption}</figcaption></figure>")
    return figs


def _dropped(run: Run) -> list[dict[str, Any]]:
    """Reference files (and cameras) left out when the fingerprints were built, with the reasons."""
    found = dig(run.evaluation, "fingerprint_errors", default=[])
    path = os.path.join(run.fp_dir, "manifest.json") if run.fp_dir else None
    if path and os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as handle:
                found = found + (json.load(handle).get("errors") or [])
        except (OSError, ValueError, AttributeError):
            pass
    return [e for e in found if isinstance(e, dict)]


def _quality_table(run: Run, fp: Any, params: Params, dropped: list[dict[str, Any]]) -> str:
    refs = [str(x.get("path")) for x in fp.references if isinstance(x, dict)]
    try:
        rows = [[f'<span class="mono">{esc(q["path"])}</span>', f"{q['saturated_share']:.1%}",
                 num(q["pce_leave_one_out"])] for q in fingerprint_quality(refs, params)]
    except (CamidError, OSError, ValueError) as exc:
        return f'<p class="note">{esc(fp.camera)}: the references cannot be read now ({esc(exc)})</p>'
    mine = [e for e in dropped if str(e.get("path")) == fp.camera
            or os.path.basename(os.path.dirname(str(e.get("path")))) == fp.camera]
    out = [f"<h4>{esc(fp.camera)}: {len(refs)} references used, {len(mine)} left out</h4>",
           html_table(["reference", "samples at the top code", "PCE against the others (leave one out)"], rows)]
    if mine:
        out.append(html_table(["left out", "reason"], [[f'<span class="mono">{esc(e.get("path"))}</span>',
                                                        esc(dig(e, "error", "reason", default=NONE))] for e in mine]))
    return "\n".join(out)


def section(run: Run) -> str:
    params = _params(run)
    if params is None or not run.store or params.search_scales is not None:
        return ""
    out = ['<section id="quality"><h2>Diagnostics: correlation surfaces and fingerprint quality</h2>',
           "<p>Recomputed from the evidence files with the run's parameters (NumPy, float64). Each surface is the "
           "correlation plane around its peak in units of the plane's energy: the square of the peak is the PCE. "
           "A reference's PCE against the fingerprint of the other references shows how well it agrees with "
           "them: a low one marks a reference that may not be from the camera or that carries little PRNU.</p>"]
    figs = _surfaces(run, params)
    if figs:
        out.append(f"<h3>PCE correlation surface of each decision</h3><div class=\"grid\">{''.join(figs)}</div>")
    dropped = _dropped(run)
    out.append("<h3>Fingerprint quality</h3>")
    decided = {dig(r, "pce", "decision") for _, r in run.ok}
    budget, left = MAX_QUALITY_REFERENCES, []
    for fp in sorted((fp for fp in run.store if "pce" in fp.methods), key=lambda fp: fp.camera not in decided):
        if len(fp.references) > budget:
            left.append(fp.camera)
            continue
        budget -= len(fp.references)
        out.append(_quality_table(run, fp, params, dropped))
    if left:
        out.append(f'<p class="note">Not recomputed (the report recomputes at most {MAX_QUALITY_REFERENCES} references '
                   f'in all, the cameras decided in this run first): {esc(", ".join(left))}.</p>')
    out.append("</section>")
    return "\n".join(out)

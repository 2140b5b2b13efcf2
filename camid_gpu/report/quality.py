"""The report's diagnostics for casework: per decision the PCE correlation surface around the peak, and per
fingerprint its quality (references used and left out with the reasons, each reference's saturation share and
PCE against the fingerprint of the others). Recomputed on NumPy by :mod:`camid_gpu.evidence.diagnostics` in one
bounded pass and kept in the run folder (:mod:`.kept_diagnostics`)."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from camid_gpu.config import PRECISION, QUALITY_CLIP, Params
from camid_gpu.report import kept_diagnostics
from camid_gpu.report.figures import figure, png
from camid_gpu.report.html import NONE, esc, html_table, num
from camid_gpu.report.load import Run, dig

#: correlation surfaces are drawn for at most this many decisions (each recomputes a residual once: then kept)
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


def _surface_plan(run: Run) -> list[tuple[int, dict[str, Any], str]]:
    """(image number, record, decided camera) of the decisions whose surface is drawn: full-frame and clipped
    comparisons, at most :data:`MAX_SURFACES`."""
    names = {fp.camera for fp in run.store}
    plan = []
    for i, r in run.ok:
        cam = dig(r, "pce", "decision")
        score = dig(r, "pce", "scores", str(cam)) if cam else None
        if not cam or cam not in names or not isinstance(score, dict) or score.get("match") not in ("full-frame", "clip"):
            continue
        if len(plan) >= MAX_SURFACES:
            break
        plan.append((i, r, str(cam)))
    return plan


def _quality_plan(run: Run) -> tuple[list[Any], list[str]]:
    """(the cameras whose quality is computed, the cameras left out over :data:`MAX_QUALITY_REFERENCES`)."""
    decided = {dig(r, "pce", "decision") for _, r in run.ok}
    budget, chosen, left = MAX_QUALITY_REFERENCES, [], []
    for fp in sorted((fp for fp in run.store if "pce" in fp.methods), key=lambda fp: fp.camera not in decided):
        if len(fp.references) > budget:
            left.append(fp.camera)
            continue
        budget -= len(fp.references)
        chosen.append(fp)
    return chosen, left


def diagnostics(run: Run, progress: bool | None = False, host_budget: int | None = None) -> dict[str, Any] | None:
    """What this section draws, from the run folder when kept there, else computed in one bounded pass (a bar over
    the files when ``progress``, within ``host_budget`` bytes) and kept (:mod:`.kept_diagnostics`); None when the
    section is left out."""
    params = _params(run)
    if params is None or not run.store or params.search_scales is not None:
        return None
    cameras, left = _quality_plan(run)
    found = kept_diagnostics.diagnostics(run, params, _surface_plan(run), cameras, progress, host_budget)
    return {**found, "cameras": cameras, "left": left}


def _surfaces(run: Run, found: dict[str, Any]) -> list[str]:
    figs = []
    for i, r, cam in _surface_plan(run):
        s = found["surfaces"].get(str(i))
        if not isinstance(s, dict):
            continue
        if "error" in s:
            figs.append(f'<figure><p class="bad">#{i}: {esc(s["error"])}</p></figure>')
            continue
        score = dig(r, "pce", "scores", cam, default={})
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


def _quality_table(fp: Any, found: dict[str, Any], dropped: list[dict[str, Any]]) -> str:
    refs = [str(x.get("path")) for x in fp.references if isinstance(x, dict)]
    mine = found.get(fp.camera) or {"error": "not computed"}
    if "error" in mine:
        return f'<p class="note">{esc(fp.camera)}: the references cannot be read now ({esc(mine["error"])})</p>'
    rows = [[f'<span class="mono">{esc(q["path"])}</span>', f"{q['saturated_share']:.1%}",
             num(q["pce_leave_one_out"]), esc("x".join(str(v) for v in q.get("clip") or []) or NONE)]
            for q in mine["rows"]]
    left_out = [e for e in dropped if str(e.get("path")) == fp.camera
                or os.path.basename(os.path.dirname(str(e.get("path")))) == fp.camera]
    out = [f"<h4>{esc(fp.camera)}: {len(refs)} references used, {len(left_out)} left out</h4>",
           html_table(["reference", "samples at the top code", "PCE against the others (leave one out)",
                       "centre clip compared"], rows)]
    if left_out:
        out.append(html_table(["left out", "reason"], [[f'<span class="mono">{esc(e.get("path"))}</span>',
                                                        esc(dig(e, "error", "reason", default=NONE))]
                                                       for e in left_out]))
    return "\n".join(out)


def section(run: Run, found: dict[str, Any] | None = None) -> str:
    """The section, from :func:`diagnostics` (computed here when not given)."""
    found = diagnostics(run) if found is None else found
    if found is None:
        return ""
    out = ['<section id="quality"><h2>Diagnostics: correlation surfaces and fingerprint quality</h2>',
           f"<p>Recomputed from the evidence files with the run's parameters (NumPy, {PRECISION}), "
           f"{esc(found['origin'])}. Each surface is the correlation plane around its peak in units of the plane's "
           "energy: the square of the peak is the PCE. A reference's PCE against the fingerprint of the other "
           f"references shows how well it agrees with them: a low one marks a reference that may not be from the "
           f"camera or that carries little PRNU. It is computed on the centre {QUALITY_CLIP[0]}x{QUALITY_CLIP[1]} "
           "of each reference (or the run's smaller PCE clip), the same comparison on every camera whatever its "
           "sensor size: its values are lower than a whole frame's.</p>"]
    figs = _surfaces(run, found)
    if figs:
        out.append(f"<h3>PCE correlation surface of each decision</h3><div class=\"grid\">{''.join(figs)}</div>")
    dropped = _dropped(run)
    out.append("<h3>Fingerprint quality</h3>")
    out.extend(_quality_table(fp, found["quality"], dropped) for fp in found["cameras"])
    if found["left"]:
        out.append(f'<p class="note">Not recomputed (the report recomputes at most {MAX_QUALITY_REFERENCES} references '
                   f'in all, the cameras decided in this run first): {esc(", ".join(found["left"]))}.</p>')
    out.append("</section>")
    return "\n".join(out)

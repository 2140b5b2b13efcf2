"""The report's casework record (at the top) and evidence strength (LRs beside the decisions, and the
calibration's validation: Tippett, ECE and PAV plots); also ``validation.html`` of ``camid calibrate``.

The casework block shows the case, examiner, exhibits and notes from the manifest, the manifest's SHA-256 and
a thumbnail of each questioned image (decoded read-only, downscaled, embedded). The evidence block is written
when the run folder holds ``evidence.json`` (``--calibration``), checked against the manifest's SHA-256 of it;
the calibration named there is read with its own manifest check for the validation figures.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from typing import Any

import numpy as np

from camid_gpu._shared.files import open_regular
from camid_gpu._shared.jsonio import sha256_or_none
from camid_gpu.errors import CamidError
from camid_gpu.evidence.apply import EVIDENCE_NAME, SIMULATED, VERBAL_SCALE_NAME, load_calibration
from camid_gpu.evidence.model import llr_of_model
from camid_gpu.pipeline.casework import exhibit_of
from camid_gpu.report.figures import RC, figure, legend, load_matplotlib, png
from camid_gpu.report.html import NONE, esc, html_table, kv_table, num
from camid_gpu.report.load import Run

#: thumbnails of questioned images are drawn for at most this many images (side in pixels)
MAX_THUMBNAILS, THUMBNAIL_SIDE = 200, 160


# ------------------------------------------------------------------------------------------------
# Casework record
# ------------------------------------------------------------------------------------------------
def _manifest_sha256(run_dir: str) -> tuple[str | None, str | None]:
    """(SHA-256 of manifest.json now, the one recorded in manifest.sha256)."""
    now = sha256_or_none(os.path.join(run_dir, "manifest.json"))
    try:
        with open(os.path.join(run_dir, "manifest.sha256"), encoding="utf-8") as handle:
            recorded = handle.read().split()[0]
    except (OSError, IndexError):
        recorded = None
    return now, recorded


def thumbnail(path: str) -> str | None:
    """An embedded PNG thumbnail of the image at ``path`` (opened read-only), or None when it cannot be read."""
    try:
        from PIL import Image

        with open_regular(path) as handle, Image.open(handle) as image:
            image.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))  # JPEG: decode at a reduced scale
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit gray: to 8 bits for the eye only
                small = Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8))
            else:
                small = image.convert("RGB")
            small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            buffer = io.BytesIO()
            small.save(buffer, format="PNG")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def casework_section(run: Run) -> str:
    """The casework record, the manifest's SHA-256 and the questioned images' thumbnails."""
    m = run.manifest or {}
    cw = m.get("casework") if isinstance(m.get("casework"), dict) else {}
    now, recorded = _manifest_sha256(run.run_dir)
    if now is None:
        sha = '<span class="bad">no manifest.json</span>'
    elif recorded is None or recorded == now:
        sha = f'<span class="mono">{esc(now)}</span>' + ("" if recorded else " (no manifest.sha256 beside it)")
    else:
        sha = (f'<span class="mono bad">{esc(now)}</span>: differs from manifest.sha256 '
               f'(<span class="mono">{esc(recorded)}</span>); the manifest was changed after the run')
    exhibits = [e for e in cw.get("exhibits") or [] if isinstance(e, dict)]
    pairs = [("case", esc(cw.get("case")) if cw.get("case") else NONE),
             ("examiner", esc(cw.get("examiner")) if cw.get("examiner") else NONE),
             ("exhibits", "<br>".join(f'{esc(e.get("label"))}: <span class="mono">{esc(e.get("abspath"))}</span>'
                                      for e in exhibits) or NONE),
             ("notes", "<br>".join(esc(n) for n in cw.get("notes") or []) or NONE),
             ("manifest SHA-256", sha)]
    out = ['<section id="casework"><h2>Casework record</h2>', kv_table(pairs)]
    figs = []
    for i, r in run.ok[:MAX_THUMBNAILS]:
        uri = thumbnail(str(r.get("realpath") or r.get("path")))
        label = exhibit_of(str(r.get("path")), cw)
        caption = f"#{i} {esc(os.path.basename(str(r.get('path'))))}" + (f" (exhibit {esc(label)})" if label else "")
        body = (f'<img class="thumb" src="{uri}" alt="image #{i}">' if uri
                else '<p class="bad">no thumbnail: the file cannot be read now</p>')
        figs.append(f"<figure>{body}<figcaption>{caption}</figcaption></figure>")
    if figs:
        more = len(run.ok) - MAX_THUMBNAILS
        out.append("<h3>Questioned images</h3>" + f'<div class="grid">{"".join(figs)}</div>'
                   + (f"<p>{more} more not shown.</p>" if more > 0 else ""))
    out.append("</section>")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# Validation figures of a calibration
# ------------------------------------------------------------------------------------------------
def _finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str, alt: str) -> str:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    legend(ax, loc="best")
    return png(fig, alt)


def tippett_figure(validation: dict[str, Any]) -> str:
    x, y = np.asarray(validation["llrs"], float), np.asarray(validation["labels"], int)
    fig = figure(4.2, 3.0)
    ax = fig.add_subplot()
    grid = np.linspace(min(x.min(), -1.0) - 0.2, max(x.max(), 1.0) + 0.2, 400)
    for label, name, color in ((1, "same source (Hp true)", "#1f77b4"), (0, "different source (Hd true)", "#d62728")):
        sel = x[y == label]
        if sel.size:
            ax.plot(grid, [(sel > g).mean() for g in grid], color=color, label=f"{name}, n={sel.size}")
    ax.axvline(0.0, color="#6e7781", linestyle=":")
    return _finish(fig, ax, "log10 LR", "proportion of LRs greater", "Tippett plot (held-out cameras)", "Tippett plot")


def ece_figure(validation: dict[str, Any]) -> str:
    ece = validation["ece"]
    fig = figure(4.2, 3.0)
    ax = fig.add_subplot()
    for key, name, style in (("lr", "LRs", "-"), ("pav", "after PAV (best possible)", "--"), ("neutral", "LR = 1", ":")):
        values = [np.nan if v is None else v for v in ece[key]]
        ax.plot(ece["prior_log10_odds"], values, linestyle=style, label=name)
    ax.set_ylim(bottom=0)
    return _finish(fig, ax, "prior log10 odds", "empirical cross-entropy (bits)", "ECE plot", "ECE plot")


def pav_figure(validation: dict[str, Any]) -> str:
    x, pav = np.asarray(validation["llrs"], float), np.asarray(validation["pav_llrs"], float)
    order = np.argsort(x)
    fig = figure(4.2, 3.0)
    ax = fig.add_subplot()
    ax.plot(x[order], pav[order], drawstyle="steps-post", label="PAV of the LRs")
    lo, hi = float(min(x.min(), pav.min())), float(max(x.max(), pav.max()))
    ax.plot([lo, hi], [lo, hi], color="#6e7781", linestyle=":", label="perfect calibration")
    return _finish(fig, ax, "log10 LR (validation)", "log10 LR after PAV", "PAV plot", "PAV plot")


def model_figure(kind: dict[str, Any]) -> str:
    """The fitted log10 LR against the score, bounded and not, with the ELUB bounds."""
    fig = figure(4.2, 3.0)
    ax = fig.add_subplot()
    top = max(1.0, float(np.max(kind["model"].get("score", [0]))) if kind["model"]["type"] == "table" else 3.5)
    s = np.linspace(0.0, top, 300)
    b = kind["bounds"]
    ax.plot(s, np.clip(llr_of_model(kind["model"], s), b["lower"], b["upper"]), label="log10 LR (bounded)")
    ax.plot(s, llr_of_model(kind["model"], s), linestyle=":", color="#6e7781", label="unbounded")
    ax.axhline(b["upper"], color="#d4a72c", linestyle="--", label="ELUB bounds")
    ax.axhline(b["lower"], color="#d4a72c", linestyle="--")
    ax.set_ylim(b["lower"] - 1, b["upper"] + 1)
    return _finish(fig, ax, "score log10(1 - log10 P_FA), search-corrected", "log10 LR", "score to LR", "score to LR")


def validation_block(calibration: dict[str, Any]) -> str:
    """Per model (image kind and search): sizes, bounds, conditions, Cllr, Cllr-min, rates of misleading
    evidence, and the four figures."""
    data = calibration.get("data") or {}
    out = [f"<p>Hp: {esc(calibration['hypotheses']['hp'])}. Hd: {esc(calibration['hypotheses']['hd'])}. Score: "
           f"<code>{esc(calibration['score']['name'])}</code>; calibrator {esc(calibration['calibrator'])}; "
           f"verbal scale: {esc(VERBAL_SCALE_NAME)}. Data: {esc(data.get('from'))}.</p>"]
    if data.get("simulated"):
        out.append(f'<p class="bad"><b>{esc(SIMULATED.upper())}</b>. Assumptions: '
                   + esc("; ".join(data.get("assumptions") or [])) + "</p>")
    for line in calibration.get("not_calibrated") or []:
        out.append(f'<p class="note">Not calibrated (too few pairs): {esc(line)}.</p>')
    for name, kind in calibration["models"].items():
        v = kind["validation"]
        sizes = ", ".join(f"{k} {n}" for k, n in kind["sizes"].items())
        rates = "; ".join(f"{k}: {r:.3f}" for k, r in v["misleading_by_population"].items())
        out.append(f"<h3>{esc(kind['kind'])} images, {esc(kind['search'])} search</h3>" + kv_table([
            ("pairs fitted", esc(sizes)),
            ("log10 LR bounds (ELUB)", f"{num(kind['bounds']['lower'], '+.2f')} .. {num(kind['bounds']['upper'], '+.2f')}"),
            ("validation", esc(v.get("method", "")) if "method" in v else "on other cameras"),
            ("Cllr / Cllr-min", f"{num(v['cllr'], '.3f')} / {num(v['cllr_min'], '.3f')} (1 = uninformative)"),
            ("rates of misleading evidence", esc(rates)),
            ("fitted on (conditions)", esc(json.dumps(kind["conditions"], sort_keys=True)))]))
        out.append('<div class="grid">' + "".join(f"<figure>{f}</figure>" for f in (
            model_figure(kind), tippett_figure(v), ece_figure(v), pav_figure(v))) + "</div>")
    return "\n".join(out)


def write_validation_page(path: str, calibration: dict[str, Any]) -> str:
    """``validation.html`` of a calibration (self-contained, like the report); returns ``path``."""
    from camid_gpu._shared.files import write_bytes_atomic

    mpl = load_matplotlib()
    with mpl.rc_context(RC):
        body = validation_block(calibration)
    text = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>camid calibration</title></head>'
            f"<body><h1>camid calibration: validation with cameras held out</h1>{body}</body></html>\n")
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


# ------------------------------------------------------------------------------------------------
# Evidence strength of a run
# ------------------------------------------------------------------------------------------------
def _evidence_document(run: Run) -> tuple[dict[str, Any] | None, str | None]:
    """(evidence.json, a note on what is wrong with it) of the run folder; (None, None) when absent."""
    path = os.path.join(run.run_dir, EVIDENCE_NAME)
    if not os.path.exists(path):
        return None, None
    with open_regular(path) as handle:
        raw = handle.read()
    digest = hashlib.sha256(raw).hexdigest()
    recorded = [e.get("sha256") for e in (run.manifest or {}).get("outputs") or []
                if isinstance(e, dict) and os.path.basename(str(e.get("path"))) == EVIDENCE_NAME]
    if digest not in recorded:
        return None, f"{EVIDENCE_NAME} is not the file the manifest recorded (SHA-256 {digest[:16]}...): not shown"
    return json.loads(raw.decode("utf-8")), None


def _lr_cell(lr: dict[str, Any]) -> tuple[str, str]:
    """(log10 LR, verbal equivalent) cells of one pair: within the calibration the bounded LR and its words;
    outside it no words, the reasons, and the marked number only when the run asked for it."""
    if lr.get("log10_lr") is not None:
        bound = f" (at the {lr['at_bound']} bound)" if lr.get("at_bound") else ""
        return num(lr["log10_lr"], "+.2f") + esc(bound), esc(lr.get("verbal"))
    shown = lr.get("log10_lr_outside_calibration")
    number = (f'<span class="bad">{num(shown, "+.2f")} outside the calibration: not a calibrated LR</span>'
              if shown is not None else NONE)
    return number, '<span class="bad">no calibrated LR</span>: ' + esc("; ".join(lr.get("outside") or []))


def _image_rows(img: dict[str, Any], number: str) -> list[list[str]]:
    """One row per compared camera of an image, best first (by the search-corrected score)."""
    rows = []
    cameras = img.get("cameras") or {}
    for rank, cam in enumerate(img.get("ranking") or list(cameras), 1):
        lr = cameras.get(cam) or {}
        value, words = _lr_cell(lr)
        simulated = f' <span class="bad">[{esc(lr["calibrated_on"])}]</span>' if lr.get("calibrated_on") else ""
        first = rank == 1
        rows.append([number if first else "", f'<span class="mono">{esc(img.get("path"))}</span>' if first else "",
                     esc(img.get("decision") or "(none)") if first else "", f"{rank}. {esc(cam)}", num(lr.get("pce")),
                     num(lr.get("log10_p_fa"), ".2f"), esc(lr.get("condition_text") or NONE), value, words + simulated])
    return rows


def evidence_section(run: Run) -> str:
    doc, problem = _evidence_document(run)
    if problem:
        return f'<section id="evidence"><h2>Evidence strength</h2><p class="note">{esc(problem)}</p></section>'
    if doc is None:
        return ""
    cal = doc["calibration"]
    numbers = {str(r.get("path")): i for i, r in run.ok}
    rows = [row for img in doc["images"] for row in _image_rows(img, str(numbers.get(img.get("path"), NONE)))]
    simulated = (f'<p class="bad"><b>{esc(SIMULATED.upper())}</b> (camid calibrate --like): every LR below comes '
                 f"from simulated cameras matched to the case's images. Assumptions: "
                 + esc("; ".join(cal.get("assumptions") or [])) + "</p>") if cal.get("simulated") else ""
    out = ['<section id="evidence"><h2>Evidence strength: likelihood ratios</h2>',
           '<p class="lead">Beside the threshold decision (unchanged), the likelihood ratio says how much more '
           "probable the observed score is if the image was taken by the camera (Hp) than if it was taken by another "
           "camera of the calibration's population (Hd). The score is the search-corrected false-alarm probability "
           "of the PCE (a maximum over many crop offsets, scales or rotations counts for less than one unsearched "
           "comparison). It is not the probability that the camera took the image; that also needs the prior odds, "
           "which are for the court. LRs are bounded by what the calibration data support (ELUB). A pair outside "
           "the conditions the calibration was fitted on has no calibrated LR and no verbal equivalent: its own "
           "reasons are given instead. Every compared camera of each image is listed, best first.</p>", simulated,
           kv_table([("calibration", f'<span class="mono">{esc(cal.get("path"))}</span>'),
                     ("calibration SHA-256", f'<span class="mono">{esc(cal.get("sha256"))}</span>'),
                     ("Hp", esc((cal.get("hypotheses") or {}).get("hp"))),
                     ("Hd", esc((cal.get("hypotheses") or {}).get("hd"))),
                     ("verbal scale", esc(doc.get("verbal_scale")))]),
           html_table(["#", "image", "PCE decision", "camera (best first)", "PCE", "log10 P_FA (searched)",
                       "condition", "log10 LR", "verbal equivalent"], rows)]
    try:
        calibration = load_calibration(str(cal.get("path")))
        if calibration.sha256 != cal.get("sha256"):
            raise CamidError(f"{cal.get('path')} is now another calibration (SHA-256 {calibration.sha256[:16]}...)")
        out.append("<h3>Validation of the calibration (cameras held out)</h3>" + validation_block(calibration.data))
    except (CamidError, OSError, ValueError, KeyError) as exc:
        out.append(f'<p class="note">The validation figures are not shown: {esc(exc)}</p>')
    out.append("</section>")
    return "\n".join(out)

"""Section 5 of the report, per camera the paper's Figures 1-5: the PDF of I0 of the fingerprint and of the
disputed images, and their Gaussian contours in the (I0, PRNU) discriminant plane."""
from __future__ import annotations

from typing import Any

import numpy as np

from camid_gpu.errors import CamidError
from camid_gpu.report.figures import camera_color, figure, legend, png
from camid_gpu.report.html import esc, img_label
from camid_gpu.report.load import Run, dig

#: per-camera figures (I0 PDF, discriminant plane) for at most this many cameras
MAX_CAMERA_FIGURES = 60
#: disputed-image curves / ellipses drawn per group in a camera figure
MAX_CURVES = 30
#: bins of the I0 histograms over 0..255 (as the records' trace i0_hist)
BINS = 64


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


def _assigned(run: Run, r: dict[str, Any]) -> str | None:
    """The camera an image is drawn with: truth, else the PCE decision, else a lone Mahalanobis association."""
    if r.get("truth"):
        return str(r["truth"])
    if dig(r, "pce", "decision"):
        return str(r["pce"]["decision"])
    assoc = dig(r, "mahalanobis", "associated", default=[])
    return str(assoc[0]) if isinstance(assoc, list) and len(assoc) == 1 else None


def _camera_figure(run: Run, index: int, fp: Any, traced: list[tuple[int, dict[str, Any]]]) -> tuple[str, str]:
    i0 = np.asarray(fp.mean_i0, dtype=np.float64)
    prnu = np.asarray(fp.mean_prnu, dtype=np.float64)
    color = camera_color(index)
    fig = figure(8.4, 3.2, layout=None)  # fixed margins: all labels here are short and known
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
        pdfs = [p for _, r in group if (p := _pdf(dig(r, "mahalanobis", "trace", "i0_hist"))) is not None]
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
    legend(ax1, loc="upper left", framealpha=0.85)

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
            trace = dig(r, "mahalanobis", "trace", default={})
            pts = _ellipse(trace.get("mean"), trace.get("cov"), 2.0)
            if pts is None:
                continue
            ax2.plot(*pts, color=gcolor, linewidth=0.8, linestyle="--" if gcolor == color else "-",
                     label=label if first else None)
            if len(group) <= 12:  # beyond that the labels only pile up
                ax2.annotate(img_label(i), (float(trace["mean"][0]), float(trace["mean"][1])), fontsize=6,
                             color=gcolor, ha="center", va="center")
            first = False
    ax2.set_xlabel("I0")
    ax2.set_ylabel("PRNU")
    ax2.set_title(f"{fp.camera}: (I0, PRNU) discriminant plane")
    legend(ax2, loc="upper left", framealpha=0.85)
    note = ""
    if len(own) > MAX_CURVES or len(other) > MAX_CURVES:
        note = f" Ellipses of at most {MAX_CURVES} images per group are drawn."
    return png(fig, f"I0 distribution and discriminant plane of camera {fp.camera}"), note


def section(run: Run, mpl) -> str:
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
    traced = [(i, r) for i, r in run.ok if isinstance(dig(r, "mahalanobis", "trace"), dict)]
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
        except (CamidError, ValueError, TypeError, np.linalg.LinAlgError) as exc:  # arrays read on use
            figs.append(f'<p class="note">{esc(fp.camera)}: figure not drawn ({esc(exc)}).</p>')
            continue
        figs.append(f"<figure>{img}<figcaption>Camera {esc(fp.camera)}.{esc(note)}</figcaption></figure>")
    out.append('<div class="grid">' + "".join(figs) + "</div>")
    if len(maha_store) > MAX_CAMERA_FIGURES:
        out.append(f'<p class="note">Figures are drawn for the first {MAX_CAMERA_FIGURES} of {len(maha_store)} '
                   f"cameras.</p>")
    out.append("</section>")
    return "\n".join(out)

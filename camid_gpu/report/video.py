"""The report's video section: per video its container facts (hash, codec, decoder), how its frames were pooled
(plain or aligned: stabilisation; hybrid: the scale and offset found against a still fingerprint) and the
per-frame PCE series against the best camera, drawn."""
from __future__ import annotations

from typing import Any

from camid_gpu.report.figures import figure, png
from camid_gpu.report.html import NONE, esc, html_table, num
from camid_gpu.report.load import Run

#: per-frame series drawn for at most this many videos (the table lists them all)
MAX_VIDEO_CHARTS = 40


def _series_figure(record: dict[str, Any], threshold: float) -> str:
    frames = [f for f in record.get("frames") or [] if isinstance(f.get("pce"), (int, float))]
    fig = figure(5.5, 2.2)
    ax = fig.add_subplot()
    for kind, marker in (("I", "o"), ("P", "s"), ("B", "^")):
        points = [(f["index"], f["pce"]) for f in frames if f.get("type") == kind]
        if points:
            ax.plot(*zip(*points), marker, label=f"{kind}-frames", markersize=4)
    ax.axhline(threshold, color="red", linestyle="--", linewidth=1)
    best = (record.get("pce") or {}).get("best_pce")
    if isinstance(best, (int, float)):
        ax.axhline(best, color="black", linewidth=1, label="pooled")
    ax.set_xlabel("frame (display order)")
    ax.set_ylabel("PCE of the frame")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper right")
    return png(fig, f"per-frame PCE of {record.get('path')}")


def _row(number: int, record: dict[str, Any]) -> list[str]:
    video, pce = record.get("video") or {}, record.get("pce") or {}
    best = pce.get("best")
    score = (pce.get("scores") or {}).get(best) or {}
    if score.get("match") == "video-hybrid":
        how = (f"hybrid: scale {num(score.get('scale'))}, offset {esc(score.get('offset'))}, "
               f"{score.get('positions_searched')} positions" + (" (cached geometry)" if
                                                               score.get("geometry_from_cache") else ""))
    else:
        how = "aligned (stabilisation detected)" if score.get("stabilisation_detected") else "plain"
    return [str(number), f'<span class="mono">{esc(record.get("path"))}</span>',
            esc(f"{video.get('format')} {video.get('codec')} {video.get('width')}x{video.get('height')}"),
            f'<span class="mono">{esc(str(video.get("sha256", ""))[:16])}…</span>', esc(video.get("decoder")),
            esc(f"{len(video.get('frames_used') or [])} of {video.get('frames_in_stream')} "
                f"(--frames {video.get('selection')})" + (", variable frame rate" if
                                                          video.get("variable_frame_rate") else "")),
            esc(how), esc(pce.get("decision") or NONE), num(pce.get("best_pce"))]


def section(run: Run, mpl) -> str:
    videos = [(i, r) for i, r in run.ok if isinstance(r.get("video"), dict)]
    if not videos:
        return ""
    out = ['<section id="video"><h2>Videos</h2>',
           "<p>Each video's frames (intra-coded by default) were pooled by the maximum-likelihood estimate and "
           "scored as one; its PCE is the PCE equivalent of its false-alarm probability (the union of the plain "
           "pooled test and the test with each frame aligned to its own peak). The series below is each frame's "
           f"own PCE against the best camera (dashed red: the threshold {run.threshold:g}; black: the pooled "
           "PCE).</p>",
           html_table(["#", "video", "stream", "SHA-256", "decoder", "frames used", "pooling", "decision",
                       "PCE"], [_row(i, r) for i, r in videos])]
    for i, record in videos[:MAX_VIDEO_CHARTS]:
        if record.get("frames"):
            out.append(f"<figure>{_series_figure(record, run.threshold)}<figcaption>#{i} "
                       f'<span class="mono">{esc(record.get("path"))}</span></figcaption></figure>')
    out.append("</section>")
    return "\n".join(out)

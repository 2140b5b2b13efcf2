"""Section 4 of the report, what drove the Mahalanobis votes: each pairwise vote cast again with the
intensity I0 alone and with the PRNU alone, summarised over the images (the same summary as the
evaluation's, :func:`camid_gpu.mahalanobis.summarise_diagnostics`) and per image."""
from __future__ import annotations

from typing import Any

from camid_gpu.mahalanobis.results import summarise_diagnostics
from camid_gpu.report.html import NONE, esc, html_table, num
from camid_gpu.report.load import dig


def block(items: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """The HTML of the diagnostics of ``items`` (image number, record with a ``mahalanobis`` result)."""
    out: list[str] = []
    d = summarise_diagnostics([r["mahalanobis"].get("diagnostics") for _, r in items])
    out.append("<h3>What drove the votes</h3>")
    out.append("<p>Each pairwise vote (q against j) is also cast with one component of the trace alone: the "
               "intensity I0 only, or the PRNU only. <i>Vote agreement</i> is the fraction of votes where that "
               "one-component vote equals the full 2-D vote; <i>closer fraction</i> is the mean fraction of pixels "
               "where q is closer. <b>0.5 means a coin flip.</b> If the intensity votes agree with the full vote "
               "and the PRNU votes are near 0.5, the decision was driven by the image intensity (scene / "
               "exposure), not by the sensor pattern.</p>")
    if d["images"]:
        out.append(html_table(["", "full", "intensity only", "PRNU only"],
                              [["mean closer fraction"] + [f'<td class="num">{num(d["closer_fraction"][c], ".3f")}</td>'
                                                           for c in ("full", "intensity", "prnu")],
                               ["mean vote agreement with the full vote", '<td class="num">1</td>']
                               + [f'<td class="num">{num(d["vote_agreement_with_full"][c], ".3f")}</td>'
                                  for c in ("intensity", "prnu")]]))
        out.append("<p>Driver per image: " + esc(", ".join(f"{k}: {v}" for k, v in d["driver_counts"].items()))
                   + f" (over {d['images']} image(s)).</p>")
        drows = []
        for i, r in items:
            diag = r["mahalanobis"].get("diagnostics") if isinstance(r["mahalanobis"].get("diagnostics"), dict) else {}
            drows.append([f'<td class="num">{i}</td>', esc(r["mahalanobis"].get("mode", NONE))]
                         + [f'<td class="num">{num(dig(diag, "closer_fraction", c), ".3f")}</td>'
                            for c in ("full", "intensity", "prnu")]
                         + [f'<td class="num">{num(dig(diag, "vote_agreement", c), ".3f")}</td>'
                            for c in ("intensity", "prnu")] + [esc(diag.get("driver", NONE))])
        out.append("<details><summary>Per image</summary>"
                   + html_table(["#", "mode", "closer full", "closer intensity", "closer PRNU", "agreement intensity",
                                 "agreement PRNU", "driver"], drows) + "</details>")
    else:
        out.append('<p class="muted">No diagnostics recorded.</p>')
    return out

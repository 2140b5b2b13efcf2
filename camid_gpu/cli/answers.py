"""The console answer of ``camid identify`` (issue 18, items 5 and 6).

For every image: the answer (a camera, ``none``, ``not comparable`` or ``error``), the best-scoring camera with
its PCE and log10 false-alarm probability, the threshold, and the runner-up; a best camera under the threshold
by less than half of it is named a "near miss" (``config.NEAR_MISS_FRACTION``): "none" alone hid a true camera
at PCE 52.9 with log10 P_FA -12.8. The same facts are printed per image as it is done (:func:`image_line`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from camid_gpu.config import NEAR_MISS_FRACTION
from camid_gpu.io.listing import printable
from camid_gpu.pipeline.records import ImageRecord, is_error, pce_of

HEADERS = ["image", "PCE decision", "best camera", "PCE", "log10 P_FA", "threshold", "runner-up", "note"]


def ranked(pce: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The comparable cameras' scores, highest PCE first (non-finite scores last)."""
    scores = pce.get("scores") or {}
    return sorted(scores.items(), key=lambda kv: -kv[1]["pce"] if kv[1].get("pce") is not None else math.inf)


def runner_up(pce: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The best camera after the best one among the comparable same-geometry cameras: when some camera was compared
    at full frame (the image has its sensor's size), a crop searched inside a larger sensor (``--search-crops``)
    is never the runner-up (its best of ~10^6 offsets reaches PCE ~20 on unrelated images); None when none is."""
    order = ranked(pce)
    same = [(cam, s) for cam, s in order if s.get("match") != "crop"]
    return next(((cam, s) for cam, s in (same or order) if cam != order[0][0]), None) if order else None


def answer(record: ImageRecord) -> str:
    """``camera``, ``none``, ``not comparable`` or ``error``."""
    if is_error(record):
        return "error"
    pce = pce_of(record)
    if pce is None:
        return "-"
    if not pce.get("scores"):
        return "not comparable"
    return pce.get("decision") or "none"


def note(record: ImageRecord) -> str:
    """``near miss`` for a best camera under the threshold but within NEAR_MISS_FRACTION of it; the other
    cameras above the threshold for a decision; else empty."""
    pce = pce_of(record)
    if not pce or not pce.get("scores"):
        return ""
    threshold, best = pce.get("threshold"), pce.get("best_pce")
    if pce.get("decision") is None:
        if best is not None and threshold and best >= NEAR_MISS_FRACTION * threshold:
            return f"near miss: {pce['best']} under the threshold"
        return ""
    also = [c for c in pce.get("above_threshold", []) if c != pce["decision"]]
    return f"also above the threshold: {', '.join(also)}" if also else ""


def row(record: ImageRecord, methods: Sequence[str]) -> list[Any]:
    """One table row (see :data:`HEADERS`; a Mahalanobis column when that method ran)."""
    maha = [] if "mahalanobis" not in methods else [_mahalanobis_cell(record.get("mahalanobis") or {})]
    pce = pce_of(record)
    if is_error(record) or not pce or not pce.get("scores"):
        return [record["path"], answer(record), "-", "-", "-", pce.get("threshold") if pce else "-", "-",
                record["error"]["reason"] if is_error(record) else "", *maha]
    best, score = ranked(pce)[0]
    second = runner_up(pce)
    runner = f"{second[0]} {_number(second[1].get('pce'))}" if second else "-"
    return [record["path"], answer(record), best, score.get("pce"), score.get("log10_p_fa"), pce.get("threshold"),
            runner, note(record), *maha]


def _mahalanobis_cell(maha: dict[str, Any]) -> str:
    """The cameras the Mahalanobis method associated, or why it gave none (its compared region unusable)."""
    if maha.get("insufficient_content"):
        return "insufficient content"
    return ",".join(maha.get("associated", [])) or "-"


def table_headers(methods: Sequence[str]) -> list[str]:
    return HEADERS + (["Mahalanobis (beside PCE)"] if "mahalanobis" in methods else [])


def image_line(record: ImageRecord, index: int, total: int) -> str:
    """``[k/N] path: answer (best camera, PCE, log10 P_FA; threshold; runner-up)``, one image as it is done."""
    where = f"[{index}/{total}] {printable(record['path'])}"
    pce = pce_of(record)
    if is_error(record):
        return f"{where}: error: {printable(record['error']['reason'])}"
    if not pce or not pce.get("scores"):
        return f"{where}: {answer(record)}"
    best, score = ranked(pce)[0]
    second = runner_up(pce)
    runner = f"; runner-up {printable(second[0])} {_number(second[1].get('pce'))}" if second else ""
    extra = note(record)
    return (f"{where}: {printable(answer(record))} (best {printable(best)} PCE {_number(score.get('pce'))}, "
            f"log10 P_FA {_number(score.get('log10_p_fa'))}; threshold {_number(pce.get('threshold'))}{runner})"
            + (f" {printable(extra)}" if extra else ""))


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) and abs(value) < 1e5 else f"{value:.3g}"


def print_answers(records: Sequence[ImageRecord], methods: Sequence[str]) -> None:
    """The table of every image's answer (see :data:`HEADERS`)."""
    from camid_gpu.evaluate import table

    print(table(table_headers(methods), [row(r, methods) for r in records]))


def live_lines(quiet: bool):
    """``on_records`` for the engine: each image's line (:func:`image_line`) as it is written; None when quiet."""
    if quiet:
        return None

    def show(records: Sequence[ImageRecord], progress: Any) -> None:
        for i, record in enumerate(records):
            progress.note(image_line(record, progress.done + i + 1, progress.total))

    return show


def print_warnings(warnings: Sequence[str]) -> None:
    """One ``camid: warning:`` line per warning on stderr (e.g. fewer references than recommended)."""
    import sys

    for w in warnings:
        print(f"camid: warning: {printable(w)}", file=sys.stderr)

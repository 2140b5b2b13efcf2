"""Words for the values a report shows (issue 18, item 14): a parameter's "no value" said as what it means
(``pce_clip`` None is the full frame, ``refs`` None every usable reference), sizes in units a reader
takes in at a glance, a timing split as a table, file names on plot axes, byte-identical inputs flagged,
and what the false-alarm probability does not cover (item 16)."""
from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

from camid_gpu.io.listing import printable
from camid_gpu.report.html import NONE, esc, html_table, json_value

#: what a None parameter means, per parameter name
NONE_MEANS = {"pce_clip": "full frame", "mahalanobis_clip": "full frame", "clip": "full frame",
              "region": "full frame", "refs": "all usable references", "shift_range": "every shift",
              "search_scales": "off (no scale/crop search)"}
#: parameters given as (rows, columns)
PAIRS = ("pce_clip", "mahalanobis_clip", "clip", "shift_range")

#: what the false-alarm probability of a PCE score covers, and what it does not (shown with every P_FA)
PFA_LIMITS = ("log10 P_FA is the probability that a camera which did not take the image scores this PCE "
              "or more <i>under a white-noise model of the residual</i> (the Goljan-Fridrich-Filler formula, "
              "corrected for the shifts and rotations searched). It does not cover what is common to cameras "
              "of one model or one processing pipeline (demosaicing, JPEG grid, lens shading, in-camera "
              "filtering): against a camera of the same model it is optimistic (a twin camera scored PCE "
              "16.7 with log10 P_FA -4.7 on real photos). The decision uses the PCE threshold, not P_FA; read "
              "a small P_FA under the threshold as a reason to look closer, not as an identification.")


def param_value(key: str, value: Any) -> str:
    """HTML for one parameter's value: None as what it means, (rows, columns) as RxC, else as JSON."""
    if value is None:
        return esc(NONE_MEANS.get(key, NONE))
    if key in PAIRS and isinstance(value, (list, tuple)) and len(value) == 2:
        if key == "shift_range" and list(value) == [0, 0]:
            return "none (0x0)"
        return esc(f"{value[0]}x{value[1]}")
    return json_value(value)


def param_rows(params: dict[str, Any]) -> Iterable[tuple[str, str]]:
    return ((str(k), param_value(str(k), v)) for k, v in sorted(params.items()))


def human_size(size: Any) -> str:
    """``1.07 MB (1,072,301 bytes)``; the exact count kept beside the rounded one."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return NONE
    for unit, scale in (("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit} ({size:,} bytes)"
    return f"{size:,} bytes"


def timings_table(timings: Any) -> str:
    """A stage / seconds / share table of a ``timings_s`` dict (nested dicts flattened with "/")."""
    if not isinstance(timings, dict) or not timings:
        return json_value(timings)
    flat = dict(_flatten(timings))
    numbers = {k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    total = numbers.get("total") or sum(v for k, v in numbers.items() if k != "total")
    rows = [[esc(k), f'<td class="num">{v:.2f}</td>' if k in numbers else esc(v),
             f'<td class="num">{100 * v / total:.0f}%</td>' if k in numbers and total and k != "total" else ""]
            for k, v in flat.items()]
    return html_table(["stage", "seconds", "share"], rows)


def _flatten(d: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}/")
        else:
            yield f"{prefix}{k}", v


def axis_label(number: int | None, path: Any, width: int = 28) -> str:
    """``#3 IMG_0012.jpg`` for a plot axis: the image's number in the tables (None: none) and its file name
    (shortened in the middle past ``width`` characters; control characters escaped; mathtext is off)."""
    name = printable(os.path.basename(str(path))) if path else ""
    if len(name) > width:
        name = name[: width // 2 - 1] + "..." + name[-(width // 2 - 2):]
    return name if number is None else f"#{number} {name}".rstrip()


def identical_inputs(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Groups of two or more records with the same SHA-256 (the same bytes under several names)."""
    by_hash: dict[str, list[str]] = {}
    for r in records:
        if isinstance(r.get("sha256"), str):
            by_hash.setdefault(r["sha256"], []).append(str(r.get("path")))
    return [paths for paths in by_hash.values() if len(paths) > 1]


def identical_note(records: Sequence[dict[str, Any]]) -> str:
    """A note listing byte-identical inputs, or empty: their results are one image's evidence, not several."""
    groups = identical_inputs(records)
    if not groups:
        return ""
    items = "".join(f"<li>{', '.join(f'<span class=mono>{esc(p)}</span>' for p in g)}</li>" for g in groups)
    return (f'<div class="note"><b>Byte-identical inputs.</b> {len(groups)} group(s) of files have the same '
            f"SHA-256: each group is one image under several names, and its results count once as evidence."
            f"<ul>{items}</ul></div>")

"""The report of a library search (``camid report RUN`` of a ``camid library search`` run folder).

Sections: the library searched (path, version, cameras per geometry), the screening (its compact form, miss
rate, signal model and thresholds) and the decision rule (Sidak over the cameras compared); the decision of
every image; per image its shortlist with the screen z and the confirmation's PCE, and the best screen scores
of cameras left out. Every string from the run is escaped (:func:`camid_gpu.report.html.esc`).
"""
from __future__ import annotations

import json
import os
from typing import Any

from camid_gpu._shared.custody import Custody, check_files
from camid_gpu._shared.files import write_bytes_atomic
from camid_gpu.pipeline.records import inconsistent_records
from camid_gpu.report.html import NONE, esc, html_table, json_value, kv_table, num, page
from camid_gpu.report.load import Run, _read_json, _read_records

COMMAND = "library-search"


def is_library_run(run_dir: str | os.PathLike) -> bool:
    try:
        with open(os.path.join(os.fspath(run_dir), "run.json"), encoding="utf-8") as handle:
            return json.load(handle).get("command") == COMMAND
    except (OSError, ValueError, AttributeError):
        return False


def write_library_report(run_dir: str | os.PathLike, output_html: str | os.PathLike) -> tuple[str, Custody]:
    """Write the report; returns (path, what results.jsonl was checked against: its banner's content)."""
    run = _load(os.fspath(run_dir))
    text = _render(run)
    return write_bytes_atomic(output_html, text.encode("utf-8")), run.custody


def render_library_report(run_dir: str) -> str:
    return _render(_load(run_dir))


def _load(run_dir: str) -> Run:
    notes: list[str] = []
    custody = check_files(run_dir, ["results.jsonl"])  # the file it reads, against the manifest, before reading
    custody.problems += inconsistent_records(os.path.join(run_dir, "results.jsonl"))  # each record against itself
    records = _read_records(os.path.join(run_dir, "results.jsonl"), notes)
    manifest = _read_json(os.path.join(run_dir, "manifest.json"), "The manifest", notes)
    run = Run(run_dir, records, manifest, None, None, [], [], notes)
    run.custody = custody
    return run


def _render(run: Run) -> str:
    return page(run, [_section_library(run), _section_decisions(run), _section_shortlists(run)])


def _threshold(run: Run) -> dict[str, Any]:
    for r in run.records:
        if isinstance(r.get("library"), dict):
            return r["library"].get("threshold") or {}
    return {}


def _section_library(run: Run) -> str:
    m = run.manifest or {}
    lib = m.get("library") or {}
    thr = _threshold(run)
    pairs = [("library", esc(lib.get("path"))), ("version (catalogue hash)", esc(lib.get("version"))),
             ("cameras searched", num(lib.get("cameras"))), ("geometries", json_value(lib.get("geometries"))),
             ("cameras refused (screening row or arrays differ from their hashes)",
              esc(", ".join(lib.get("refused") or {}) or NONE)),
             ("command", esc(" ".join(m.get("argv") or []) or NONE)), ("started", esc(m.get("started"))),
             ("finished", esc(m.get("finished"))), ("backend", esc(m.get("backend"))),
             ("screen: compact form", esc(thr.get("form") or (m.get("screen") or {}).get("form"))),
             ("screen: miss rate at the decision threshold", num(thr.get("miss"))),
             ("screen: signal model", esc(f"z = {thr.get('retained')} * sqrt(PCE) + N(0, {thr.get('spread')}^2)")
              if thr else NONE),
             ("per-comparison PCE threshold T", num(thr.get("pce_threshold"))),
             ("parameters", json_value(m.get("params")))]
    text = ("<p>Each image was screened against every camera of its geometry on the compact form; the shortlist "
            "was confirmed by full-frame PCE as <code>camid identify</code> scores it. The decision threshold "
            "T_N counts every camera compared (Sidak): a larger library asks for stronger evidence.</p>")
    return f'<section id="run"><h2>1. The run</h2>{text}{kv_table(pairs)}</section>'


def _section_decisions(run: Run) -> str:
    rows = []
    for i, r in enumerate(run.records, 1):
        if r.get("error"):
            rows.append([f"#{i}", esc(r.get("path")), f'<td colspan="7">error: {esc(r["error"].get("reason"))}</td>'])
            continue
        lib, pce = r.get("library") or {}, r.get("pce") or {}
        thr = lib.get("threshold") or {}
        rows.append([f"#{i}", esc(r.get("path")), _decision(pce, lib), num(pce.get("best_pce")),
                     num(thr.get("decision_pce")), num(lib.get("compared")), num(lib.get("screened")),
                     num(len(lib.get("shortlist") or [])), num(thr.get("z"))])
    table = html_table(["#", "image", "decision", "best PCE", "threshold T_N", "compared", "screened",
                        "shortlisted", "screen z threshold"], rows)
    return f'<section id="decisions"><h2>2. Decisions</h2>{table}</section>'


def _decision(pce: dict[str, Any], lib: dict[str, Any]) -> str:
    """The decision cell: the camera, "none", or "not comparable" (no library camera of the image's geometry, as
    identify says), and the cameras refused (their screening row or arrays differ from their hashes)."""
    if lib.get("compared") == 0:
        text = '<span class="bad">not comparable</span> <span class="muted">(no library camera of its geometry)</span>'
    else:
        text = esc(pce.get("decision") or "none")
    refused = lib.get("refused") or {}
    if refused:
        text += f' <span class="bad">REFUSED, not compared: {esc(", ".join(refused))}</span>'
    return text


def _section_shortlists(run: Run) -> str:
    blocks = []
    for i, r in enumerate(run.records, 1):
        if r.get("error"):
            continue
        lib, scores = r.get("library") or {}, (r.get("pce") or {}).get("scores") or {}
        rows = []
        for entry in lib.get("shortlist") or []:
            s = scores.get(entry.get("camera"), {})
            rows.append([esc(entry.get("camera")), num(entry.get("z")), num(entry.get("rotation")), num(s.get("pce")),
                         num(s.get("log10_p_fa")), num(s.get("log10_p_fa_library")), esc(s.get("match"))])
        for cam, why in (lib.get("unscreened") or {}).items():
            s = scores.get(cam, {})
            rows.append([esc(cam), esc(f"unscreened: {why}"), num(s.get("rotation")), num(s.get("pce")),
                         num(s.get("log10_p_fa")), num(s.get("log10_p_fa_library")), esc(s.get("match"))])
        table = html_table(["camera", "screen z", "rotation", "PCE", "log10 P_FA", "log10 P_FA (library)", "match"],
                           rows) if rows else "<p>No camera shortlisted.</p>"
        top = ", ".join(f"{esc(t.get('camera'))} {num(t.get('z'))}" for t in lib.get("screen_top") or []) or NONE
        blocks.append(f"<h3>#{i} {esc(r.get('path'))}</h3>{table}<p class=\"muted\">best screen z: {top}</p>")
    return f'<section id="pce"><h2>3. Shortlists and confirmation</h2>{"".join(blocks)}</section>'

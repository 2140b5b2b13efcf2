"""``camid library link LIB``: pairs of library fingerprints that come from one camera.

Fingerprint against fingerprint: the same unknown camera met in two cases (two cluster fingerprints), or a
seized camera already met as a cluster. Every pair of active cameras of one geometry (sensor frame and PCE
clip) is compared by the zero-shift NCC of their screening rows (the Gram of the normalised rows, in tiles,
through the cluster Gram's :func:`~camid_gpu.cluster.similarity.gram_tiles`), and every pair of a frame with
its turned frame (``H x W`` against ``W x H``) at 90 and 270 degrees. The threshold is the cluster's
(:func:`~camid_gpu.cluster.threshold.pair_threshold`): ``--pfa`` is the probability of any false link over all
the comparisons, Sidak per comparison, on the ``1/sqrt(n)`` null or the wider spread observed among the pairs;
every link must be confirmed by the zero-shift PCE of the two fingerprints (``z_alpha^2``).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from camid_gpu.cluster.group_ops import pair_pce
from camid_gpu.cluster.similarity import cross_gram, gram_tiles, normalise_rows
from camid_gpu.cluster.threshold import pair_threshold
from camid_gpu.config import LIBRARY_LINK_PFA, RunConfig
from camid_gpu.engine.context import backend_of
from camid_gpu.errors import LibraryError
from camid_gpu.library import arrays as arr
from camid_gpu.library import integrity
from camid_gpu.library import screen as scr
from camid_gpu.library.search import Geometry, geometries
from camid_gpu.prnu.decision import exceeds

#: rows per Gram tile
LINK_TILE = 1024


def _rows(library: str, g: Geometry, turn: int = 0) -> np.ndarray:
    """Normalised float32 rows of a geometry's active cameras, each frame turned by ``turn`` degrees."""
    count = int(max(r["screen_row"] for r in g.rows)) + 1
    raw16 = np.array(arr.screen_rows(library, g.name, g.pixels, count)[[r["screen_row"] for r in g.rows]])
    bad = arr.screen_row_mismatches(raw16, [r["screen_sha256"] for r in g.rows])
    if bad:  # a link between two cameras is named by their names: a row that is not theirs is no evidence
        raise LibraryError(f"{arr.screen_path(library, g.name)}: the screening rows of "
                           f"{', '.join(repr(g.rows[i]['name']) for i in bad)} differ from the SHA-256 the catalogue "
                           f"records (changed or damaged); nothing was linked: run 'camid library verify'")
    raw = raw16.astype(np.float32)
    if turn:
        h, w = g.clip or g.shape
        raw = np.rot90(raw.reshape(-1, h, w), turn // 90, axes=(1, 2)).reshape(len(g.rows), -1)
    return normalise_rows(raw)


def _pairs_of(geoms: list[Geometry]) -> list[tuple[int, int, int]]:
    """(geometry a, geometry b, turn of b): each geometry with itself, and with its turned frame."""
    out = [(i, i, 0) for i in range(len(geoms))]
    for i, a in enumerate(geoms):
        for j, b in enumerate(geoms):
            turned = (b.clip[1], b.clip[0]) if b.clip else None
            if i < j and a.shape == (b.shape[1], b.shape[0]) and a.clip == turned:
                out += [(i, j, 90), (i, j, 270)]
    return out


def link_library(library: str, pfa: float = LIBRARY_LINK_PFA, config: RunConfig | None = None,
                 expect_version: str | None = None) -> dict[str, Any]:
    """Every pair of active cameras linked at ``pfa``; returns the links, the threshold and the counts. The
    catalogue is checked first (:func:`integrity.snapshot`), and each screening row as it is read."""
    config = config or RunConfig(progress=False)
    version, rows, _ = integrity.snapshot(library, expect_version)
    geoms = geometries(rows)
    combos = _pairs_of(geoms)
    tests = sum(len(geoms[i].rows) * (len(geoms[i].rows) - 1) // 2 if i == j else len(geoms[i].rows) * len(geoms[j].rows)
                for i, j, _ in combos)
    bk = backend_of(config)
    engine = scr.engine_for(bk)
    candidates: list[tuple[int, int, int, int, int, float]] = []
    negative = [0.0, 0]  # sum of squares and count of the negative NCCs: the observed null spread
    # the lowest NCC any geometry's threshold can have (the model's, at the most pixels): kept as candidates
    floor = pair_threshold(pfa, max(tests, 1), max((g.pixels for g in geoms), default=1)).ncc
    for i, j, turn in combos:
        a = _rows(library, geoms[i])
        if i == j:
            blocks = gram_tiles(lambda s, e: a[s:e], len(a), engine, LINK_TILE)
        else:
            blocks = [((0, len(a), 0, len(geoms[j].rows)), cross_gram(a, _rows(library, geoms[j], turn), engine, LINK_TILE))]
        for (i0, _, j0, _), block in blocks:
            block = np.asarray(block, np.float64)
            # a diagonal tile of one geometry: each pair once, never a camera with itself
            mask = np.triu(np.ones(block.shape, bool), 1) if (i == j and i0 == j0) else np.ones(block.shape, bool)
            neg = block[mask & (block < 0)]
            negative[0] += float(np.sum(neg * neg))
            negative[1] += int(neg.size)
            for r, c in zip(*np.nonzero(mask & (block >= floor))):
                candidates.append((i, j, turn, int(i0 + r), int(j0 + c), float(block[r, c])))
    observed = math.sqrt(negative[0] / negative[1]) if negative[1] >= 10 else None
    links, thresholds = [], {}
    for i, j, turn, r, c, ncc in candidates:
        g = geoms[i]
        thr = thresholds.setdefault(g.name, pair_threshold(pfa, max(tests, 1), g.pixels, observed))
        if ncc < thr.ncc:
            continue
        ka = arr.camera_fingerprint(library, g.rows[r]).k
        kb = arr.camera_fingerprint(library, geoms[j].rows[c]).k
        kb = np.ascontiguousarray(np.rot90(kb, turn // 90)) if turn else kb
        value = float(pair_pce(bk, ka.reshape(1, -1), kb.reshape(1, -1), ka.shape)[0])
        if not exceeds(value, thr.pce):  # the project's one PCE rule: finite and strictly above (NaN never links)
            continue
        a_row, b_row = g.rows[r], geoms[j].rows[c]
        links.append({"a": a_row["name"], "b": b_row["name"], "ncc": ncc, "z": ncc * math.sqrt(g.pixels),
                      "pce": value, "rotation": turn, "geometry": g.name,
                      "cases": [a_row["case_id"], b_row["case_id"]], "kinds": [a_row["kind"], b_row["kind"]]})
    links.sort(key=lambda link: (-link["z"], link["a"], link["b"]))
    return {"library": library, "version": version, "cameras": len(rows), "tests": tests, "pfa": pfa,
            "observed_null_std": observed, "thresholds": {k: v.to_dict() for k, v in thresholds.items()},
            "links": links}

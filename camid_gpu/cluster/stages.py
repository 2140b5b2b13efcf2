"""The two stages of one geometry group: the row Gram (only new rows multiplied on resume; tiles on Dask with
``--dask``), the pair stage (NCC threshold, PCE confirmation, average linkage) and the fingerprint refinement,
each at its share of ``--pfa``."""
from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from camid_gpu._shared.jsonio import json_number, write_json
from camid_gpu.backend import Backend
from camid_gpu.cluster.group_ops import GroupOps, pair_pce
from camid_gpu.cluster.linkage import (
    Cluster,
    average_linkage,
    image_similarity,
    member_candidates,
    refine,
    refine_comparisons,
)
from camid_gpu.cluster.rows import RowStore
from camid_gpu.cluster.scene import group_scene_guard
from camid_gpu.cluster.similarity import GramEngine, gram_matrix, resolve_precision, tile_rows
from camid_gpu.cluster.threshold import null_summary, robust_spread, stage_threshold
from camid_gpu.config import ClusterParams
from camid_gpu.engine.context import RunContext


#: values per pixel of one pair's zero-shift PCE (two planes, two complex spectra, the correlation)
PCE_VALUES_PER_PIXEL = 10


def group_gram(run_dir: str, name: str, store: RowStore, params: ClusterParams, ctx: RunContext,
               resume: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """The row Gram of a group (only new rows multiplied when an earlier Gram is there)."""
    bk = ctx.backend
    gram_path = os.path.join(run_dir, "gram", f"{name}.npy")
    info_path = os.path.join(run_dir, "gram", f"{name}.json")
    precision = resolve_precision(bk, params.precision)
    previous = None
    if resume and os.path.exists(gram_path):
        # reused only when made in this precision (a float16 Gram is never topped up with float32 pairs, or the
        # other way round, under one precision's name) and no rows were dropped since (an interrupted run)
        try:
            with open(info_path, encoding="utf-8") as handle:
                made = json.load(handle)
            previous = np.load(gram_path)
        except (OSError, ValueError):
            made, previous = {}, None  # unknown or damaged: recompute
        if (previous is None or not isinstance(made, dict) or made.get("precision") != precision
                or made.get("rows") != previous.shape[0] or previous.shape[0] > store.count):
            previous = None
    host = ctx.host_budget // 4  # the float32 row blocks read from the file
    device = ctx.gpu_budget
    tile = tile_rows(store.pixels, host, 4)
    if device:
        tile = min(tile, tile_rows(store.pixels, device, 2 if precision == "float16" else 4))
    start = 0 if previous is None else previous.shape[0]
    if ctx.dask:
        from camid_gpu.cluster.dask_gram import gram_on_dask

        gram = gram_on_dask(store.path, store.count, store.pixels, tile, previous, ctx.config, precision)
    else:
        gram = gram_matrix(store.read, store.count, GramEngine(bk, precision), tile, previous)
    os.makedirs(os.path.dirname(gram_path), exist_ok=True)
    if os.path.exists(info_path):
        os.remove(info_path)  # never a description of another Gram, should the write below be interrupted
    np.save(gram_path, gram)
    write_json(info_path, {"precision": precision, "rows": int(store.count)})
    new_pairs = store.count * (store.count - 1) // 2 - start * (start - 1) // 2
    return gram, {"tile_rows": tile, "precision": precision, "rows": store.count, "rows_reused": start,
                  "row_pairs_computed": new_pairs}


def confirm_pairs(bk: Backend, store: RowStore, records: list[dict[str, Any]], pairs: list[tuple[int, int]],
                  choice: np.ndarray, shape: tuple[int, int], budget: int) -> np.ndarray:
    """Zero-shift PCE of every candidate image pair, in batches that fit ``budget`` bytes."""
    per_pair = shape[0] * shape[1] * PCE_VALUES_PER_PIXEL * 8
    batch = max(1, min(64, budget // per_pair))
    out = np.zeros(len(pairs))
    for s in range(0, len(pairs), batch):
        chunk = pairs[s:s + batch]
        ra = [records[i]["rows"][choice[i, j, 0]] for i, j in chunk]
        rb = [records[j]["rows"][choice[i, j, 1]] for i, j in chunk]
        a = np.stack([store.read(r, r + 1)[0] for r in ra])
        b = np.stack([store.read(r, r + 1)[0] for r in rb])
        out[s:s + batch] = pair_pce(bk, a, b, shape)
    return out


def pair_stage(run_dir: str, name: str, records: list[dict[str, Any]], store: RowStore, tests: int,
               params: ClusterParams, ctx: RunContext, resume: bool, timings: dict[str, float]) -> dict[str, Any]:
    """Gram, pair threshold, links and average linkage of one group: the first clusters, before refinement.

    ``tests``: the image comparisons of the whole run (every group's pairs times rotations), over which the
    pair stage's share of ``--pfa`` is spread. The result carries :func:`refine_comparisons` of the group,
    the bound its refinement is held to, fixed here before any refinement comparison is made.
    """
    bk = ctx.backend
    t0 = time.perf_counter()
    gram, gram_info = group_gram(run_dir, name, store, params, ctx, resume)
    t1 = time.perf_counter()
    rows = [r["rows"] for r in records]
    sim, choice = image_similarity(gram, rows)
    n = len(records)
    pixels = records[0]["region"][0] * records[0]["region"][1]
    scene = group_scene_guard(run_dir, name, records, store.count)  # same-scene pairs: never candidates, not null
    scene.add_duplicates(sim)  # and pairs of one photo (a re-encode: residuals alike at NCC near 1), the same way
    spread = robust_spread(scene.null_values(sim))
    threshold = stage_threshold("pairs", params.pfa, tests, pixels, spread)
    candidates = [(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu((sim > threshold.ncc) & ~scene.blocked, 1)))]
    shape = tuple(records[0]["region"])
    budget = ctx.gpu_budget or ctx.host_budget // 4
    pces = confirm_pairs(bk, store, records, candidates, choice, shape, budget)
    linked = np.zeros((n, n), dtype=bool)
    link_list = []
    for (i, j), p in zip(candidates, pces):
        ok = bool(p > threshold.pce)
        linked[i, j] = linked[j, i] = ok
        link_list.append({"a": i, "b": j, "ncc": json_number(sim[i, j]), "pce": json_number(p), "confirmed": ok})
    t2 = time.perf_counter()
    first, tree = average_linkage(np.where(scene.blocked, np.float32(0), sim), linked, threshold.ncc)
    clusters = [Cluster(member_candidates(c, gram, rows),
                        events=[{"kind": "pairs", "members": c}]) for c in first]
    clustered = {i for c in first for i in c}
    singles = [i for i in range(n) if i not in clustered]
    rotations = max(len(r) for r in rows)
    bound = {"clusters": len(clusters), "unclustered": len(singles), "rotations": rotations,
             "rounds": min(params.max_rounds, max(len(clusters) + len(singles), 1)),
             "comparisons": refine_comparisons(len(clusters), len(singles), rotations, params.max_rounds)}
    timings["products"] = timings.get("products", 0.0) + t1 - t0
    timings["pce_confirmation"] = timings.get("pce_confirmation", 0.0) + t2 - t1
    timings["clustering"] = timings.get("clustering", 0.0) + time.perf_counter() - t2
    return {"name": name, "threshold": threshold, "clusters": clusters, "singles": singles, "links": link_list,
            "scene": scene,
            "linked": linked, "sim": sim, "tree": tree, "gram_info": gram_info, "pixels": pixels, "spread": spread,
            "refine_bound": bound}


def refine_stage(run_dir: str, stage: dict[str, Any], records: list[dict[str, Any]], store: RowStore,
                 refine_tests: int, params: ClusterParams, ctx: RunContext,
                 timings: dict[str, float], held: list | None = None) -> dict[str, Any]:
    """Fingerprint refinement of one group at the refinement's thresholds: its share of ``--pfa`` over
    ``refine_tests``, the whole run's bound (every group's :func:`refine_comparisons`, summed before any
    group is refined). ``held``: the run's list of fingerprint sums held (:class:`~.group_ops.GroupOps`)."""
    bk = ctx.backend
    t0 = time.perf_counter()
    threshold = stage_threshold("refine", params.pfa, refine_tests, stage["pixels"], stage["spread"])
    ops = GroupOps(records, store, params, ctx, held)
    engine = GramEngine(bk, resolve_precision(bk, params.precision))
    final, singles, rounds = refine(stage["clusters"], stage["singles"], ops, threshold, engine,
                                    stage["gram_info"]["tile_rows"], params.max_rounds, stage["scene"])
    timings["clustering"] = timings.get("clustering", 0.0) + time.perf_counter() - t0
    name, sim, iu = stage["name"], stage["sim"], np.triu_indices(len(records), 1)
    os.makedirs(os.path.join(run_dir, "similarity"), exist_ok=True)
    np.save(os.path.join(run_dir, "similarity", f"{name}.npy"), sim)
    np.save(os.path.join(run_dir, "similarity", f"{name}-linkage.npy"), stage["tree"])
    null = null_summary(sim[iu], stage["threshold"].pixels, stage["threshold"].ncc)
    return dict(stage, refine_threshold=threshold, final=final, singles=singles, rounds=rounds, null=null, ops=ops)

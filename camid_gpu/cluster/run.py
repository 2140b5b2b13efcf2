"""A clustering run: residuals on the scheduler, the tiled Gram per geometry group, links, clusters, outputs.

Run folder ``RUN``::

    cluster-params.json       the parameters that shape the residuals (a resumed run must use the same)
    images.jsonl              one record per input (path, SHA-256, size, group, residual rows; or the error)
    residuals/<group>.f32     normalised residual rows of the group's region, float32, append-only
    gram/<group>.npy          the row Gram (NCC of every pair of rows), kept for incremental runs
    similarity/<group>.npy    image-level NCC matrix; <group>-linkage.npy the average-linkage tree
    clusters.json             clusters with members, SHA-256s and the evidence of every link and merge
    clusters.csv              one row per image: its cluster (or none)
    fingerprints/<group>/     the cluster fingerprints, a fingerprint store ``camid identify`` accepts
    manifest.json             provenance (inputs, outputs, parameters, software)

A geometry group holds the images of one sensor size (rows x columns, landscape; portrait images are
turned both ways, 90 and 270 degrees, and each turn is a row). Images of different groups are never
compared. ``resume`` continues a run: files already done are skipped, new inputs are added, and only
the pairs that involve new rows are multiplied.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from camid_gpu._cuda.loader import kernels_status
from camid_gpu._shared.files import atomic_write
from camid_gpu._shared.jsonio import json_number, sha256_or_none, write_json
from camid_gpu.backend import Backend
from camid_gpu.cluster.linkage import (Cluster, average_linkage, comparisons, image_similarity, refine,
                                      refine_comparisons)
from camid_gpu.cluster.region import resolve_region
from camid_gpu.cluster.scene import group_scene_guard, store_scene
from camid_gpu.cluster.similarity import GramEngine, gram_matrix, normalise_rows, resolve_precision, tile_rows
from camid_gpu.cluster.threshold import null_summary, robust_spread, stage_threshold
from camid_gpu.config import (CLUSTER_MIN_REGION, CLUSTER_MIN_RESIDUAL_RMS, ClusterParams,
                              InputLimits, RunConfig)
from camid_gpu.engine import run_folder
from camid_gpu.engine.runner import CLUSTER_KERNELS
from camid_gpu.engine.scheduler import (
    Progress,
    ResultsWriter,
    chunk_size,
    default_gpu_memory,
    default_host_memory,
    ordered_map,
    read_results,
    run_chunk_with_retry,
)
from camid_gpu.errors import CamidError, ImageNoSignalError, ImageTooSmallError
from camid_gpu.io import ImageInfo, center_clip, read_image
from camid_gpu.io.listing import file_identity, printable
from camid_gpu.pipeline.prepare import disputed_listing
from camid_gpu.pipeline.records import error_entry
from camid_gpu.prnu.fingerprint import FingerprintAccumulator
from camid_gpu.prnu.pce import crosscorr, pce
from camid_gpu.prnu.residual import pixels_to_device, residual_native, wiener_dft
from camid_gpu.provenance import file_entry, utc_now
from camid_gpu.store import CameraFingerprint, save_fingerprint, software_versions

FORMAT = "camid-clusters"
VERSION = 1
#: pixels assumed per image when sizing chunks for full-frame regions (the size is known only after decoding;
#: a 24 MP frame, so that bigger chunks are not planned for smaller frames than that)
FULL_FRAME_PIXELS = 24_000_000
#: member images per ML accumulation step of a cluster fingerprint (as the pipeline's build_fingerprint)
FINGERPRINT_BATCH = 4
#: values per pixel of one pair's zero-shift PCE (two planes, two complex spectra, the correlation)
PCE_VALUES_PER_PIXEL = 10


def group_key(height: int, width: int) -> tuple[int, int]:
    """The sensor geometry of an image: (short side, long side), i.e. landscape rows x columns."""
    return (min(height, width), max(height, width))


def group_name(group: tuple[int, int]) -> str:
    return f"{group[0]}x{group[1]}"


def region_clip(group: tuple[int, int], region: int | None) -> tuple[int, int] | None:
    """The clipping compared in a group: the largest centred square up to ``region``, or None (full)."""
    if region is None:
        return None
    side = min(region, group[0])
    return (side, side)


# ----------------------------------------------------------------------------------------------
# residuals
# ----------------------------------------------------------------------------------------------
@dataclass
class PreparedImage:
    """A decoded image turned to landscape and clipped, once per candidate rotation (host arrays)."""

    path: str
    info: ImageInfo
    group: tuple[int, int]
    rotations: list[int]
    clips: list[np.ndarray]


def prepare_image(path: str, region: int | None, limits: InputLimits | None = None) -> PreparedImage:
    """Host work for one image (worker processes): decode within ``limits``, turn portrait frames both ways, clip."""
    pixels, info = read_image(path, limits=limits)
    group = group_key(info.height, info.width)
    if group[0] < CLUSTER_MIN_REGION:
        raise ImageTooSmallError(path, f"image is {info.height}x{info.width}; clustering needs at least "
                                       f"{CLUSTER_MIN_REGION} pixels on the short side")
    rotations = [90, 270] if info.height > info.width else [0]
    clip = region_clip(group, region)
    clips = [np.ascontiguousarray(center_clip(np.rot90(pixels, r // 90) if r else pixels, clip, path))
             for r in rotations]
    return PreparedImage(path, info, group, rotations, clips)


def residual_rows(bk: Backend, clips: Sequence[np.ndarray], params: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """Normalised Wiener-filtered gray residuals of clips of one shape and dtype -> ``(m, h*w)`` float32,
    and each residual's RMS before normalising ``(m,)`` float64 (0..255 gray levels)."""
    pixels = pixels_to_device(bk, np.stack(clips))
    res = wiener_dft(bk, residual_native(bk, pixels, params.sigma, params.levels, params.wavelet))
    host = bk.to_numpy(res).reshape(len(clips), -1).astype(np.float64)
    rms = np.sqrt(np.mean((host - host.mean(axis=1, keepdims=True)) ** 2, axis=1))
    return normalise_rows(host), rms


class RowStore:
    """Append-only float32 rows of one group in ``RUN/residuals/<group>.f32`` (read through a memory map)."""

    def __init__(self, path: str, pixels: int, rows_kept: int):
        self.path, self.pixels = path, pixels
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = "r+b" if os.path.exists(path) else "w+b"
        with open(path, mode) as handle:  # rows past the last record are from an interrupted chunk: drop them
            handle.truncate(rows_kept * pixels * 4)
        self.count = rows_kept

    def append(self, rows: np.ndarray) -> list[int]:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.shape[1] != self.pixels:
            raise ValueError(f"{self.path}: rows of {rows.shape[1]} pixels, store holds {self.pixels}")
        with open(self.path, "ab") as handle:
            handle.write(rows.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        first = self.count
        self.count += rows.shape[0]
        return list(range(first, self.count))

    def read(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.zeros((0, self.pixels), np.float32)
        mm = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.count, self.pixels))
        return np.array(mm[start:stop])


def _stores_from_records(run_dir: str, records: list[dict[str, Any]]) -> dict[str, RowStore]:
    stores: dict[str, RowStore] = {}
    kept: dict[str, tuple[int, int]] = {}
    for r in records:
        if not r.get("error"):
            last = max(r["rows"]) + 1
            pixels = r["region"][0] * r["region"][1]
            kept[r["group"]] = (max(kept.get(r["group"], (0, 0))[0], last), pixels)
    for name, (rows, pixels) in kept.items():
        stores[name] = RowStore(os.path.join(run_dir, "residuals", f"{name}.f32"), pixels, rows)
    return stores


def check_resume_params(run_dir: str, params: ClusterParams, resume: bool, precision: str) -> None:
    """Refuse to continue a run made with other residual parameters or working precision (``--precision``):
    its rows would not be comparable, or the run would mix float32 and float64 residuals."""
    path = os.path.join(run_dir, "cluster-params.json")
    shaping = {k: params.to_dict()[k] for k in ("region", "sigma", "levels", "wavelet")}
    shaping["residual_precision"] = precision
    if resume and os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as handle:
                stored = json.load(handle)
            if not isinstance(stored, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise CamidError(f"{path} is damaged ({exc}); the run's residual parameters are unknown, so it cannot "
                             f"be resumed: start a new run folder") from exc
        stored.setdefault("residual_precision", precision)  # folders written before it was recorded
        diffs = [f"{k}: run {stored.get(k)!r}, requested {v!r}" for k, v in shaping.items() if stored.get(k) != v]
        if diffs:
            raise CamidError(f"{run_dir} was made with other residual parameters ({'; '.join(diffs)}); "
                             f"resume with the same ones or start a new run folder")
        return
    if os.path.exists(os.path.join(run_dir, "images.jsonl")):
        if not resume:
            return  # ResultsWriter refuses this case with its own message
        raise CamidError(f"{path} is missing: the residuals in {run_dir} were made with unknown parameters and "
                         f"cannot be resumed; start a new run folder")
    write_json(path, shaping)  # atomic: an interrupted write never leaves a damaged file


def already_in_run(paths: Sequence[str], records_path: str) -> tuple[list[str], list[dict[str, str]]]:
    """Split new ``paths`` into those to add and those naming a file already in the run under another spelling
    (a relative and an absolute path, a link, a hard link): a second record of one file would link with its
    first at NCC 1 and make a "cluster" of one image. Returns (paths to keep, skipped entries)."""
    if not os.path.exists(records_path):
        return list(paths), []
    known = {r["path"] for r in read_results(records_path)}
    first = {file_identity(p): p for p in sorted(known)}
    keep, skipped = [], []
    for p in paths:
        twin = None if p in known else first.get(file_identity(p))
        if twin is None:
            keep.append(p)
        else:
            skipped.append({"path": p, "reason": f"duplicate: the same file as {printable(twin)}, already in the run"})
    return keep, skipped


def compute_residuals(paths: Sequence[str], run_dir: str, params: ClusterParams, config: RunConfig,
                      resume: bool) -> tuple[list[dict[str, Any]], int]:
    """Residual rows of every new image appended to the group stores; returns (all records, processed)."""
    records_path = os.path.join(run_dir, "images.jsonl")
    writer = ResultsWriter(records_path, resume)
    existing = read_results(records_path) if resume and os.path.exists(records_path) else []
    stores = _stores_from_records(run_dir, existing)
    changed = [p for p in paths if writer.done.get(p) and not writer.is_done(p, sha256_or_none(p))]
    if changed:
        writer.close()
        raise CamidError(f"{len(changed)} file(s) changed since they were added to {run_dir}, e.g. {changed[0]}: "
                         f"their residuals no longer match them; start a new run folder")
    todo = [p for p in paths if not writer.is_done(p)]
    bk = config.backend_obj()
    pixels = params.region ** 2 if params.region else FULL_FRAME_PIXELS
    gpu_budget = config.max_gpu_memory or default_gpu_memory(bk)
    host_budget = config.max_host_memory or default_host_memory()
    value_bytes = bk.itemsize
    size = config.chunk or chunk_size(pixels, 0, gpu_budget, host_budget, rotations=2, value_bytes=value_bytes)
    state = {"size": size}
    progress = Progress(len(todo), "residuals", config.progress)

    def compute(items: list[tuple[int, int, np.ndarray]]) -> list[tuple[np.ndarray, float]]:
        rows, rms = residual_rows(bk, [c for _, _, c in items], params)
        return list(zip(rows, rms))

    def flush(pending: list) -> None:
        prepared = [x for x in pending if isinstance(x, PreparedImage)]
        flat = [(i, k, item.clips[k]) for i, item in enumerate(prepared) for k in range(len(item.clips))]
        rows_of: dict[tuple[int, int], np.ndarray] = {}
        for layout in sorted({(c.shape, c.dtype.str) for _, _, c in flat}):
            sel = [x for x in flat if (x[2].shape, x[2].dtype.str) == layout]
            for (i, k, _), row in zip(sel, run_chunk_with_retry(compute, sel, lambda n: state.update(size=n))):
                rows_of[(i, k)] = row
        records = []
        index = 0
        for x in pending:
            if not isinstance(x, PreparedImage):
                records.append(x)
                continue
            index += 1
            rms = np.array([rows_of[(index - 1, k)][1] for k in range(len(x.clips))])  # one per rotation
            flat_rms = float(rms.max()) if np.isfinite(rms).all() else float("nan")
            if not np.isfinite(flat_rms):  # never normalised into a row that looks valid
                records.append(error_entry(x.path, ImageNoSignalError(
                    x.path, f"the residual is not finite (RMS {flat_rms}); the backend produced NaN or Inf")))
                continue
            if not flat_rms >= CLUSTER_MIN_RESIDUAL_RMS:  # normalising rounding error would make it look alike
                records.append(error_entry(x.path, ImageNoSignalError(
                    x.path, f"no sensor noise to compare: the residual's RMS is {flat_rms:.3g} gray levels (under "
                            f"{CLUSTER_MIN_RESIDUAL_RMS:g}); a constant or saturated frame")))
                continue
            name = group_name(x.group)
            clip_shape = x.clips[0].shape[:2]
            if name not in stores:
                stores[name] = RowStore(os.path.join(run_dir, "residuals", f"{name}.f32"),
                                        clip_shape[0] * clip_shape[1], 0)
            rows = stores[name].append(np.stack([rows_of[(index - 1, k)][0] for k in range(len(x.clips))]))
            store_scene(run_dir, name, rows, x.clips)
            info = x.info
            records.append({"path": x.path, "sha256": info.sha256, "file_size": info.file_size, "format": info.format,
                            "size": [info.height, info.width], "channels": info.channels, "bit_depth": info.bit_depth,
                            "exif": info.exif, "group": name, "region": list(clip_shape), "rotations": x.rotations,
                            "rows": rows, "error": None})
        writer.write(records)
        progress.advance(len(records))

    pending: list = []
    try:
        tasks = [(p, params.region, config.limits) for p in todo]
        for (path, *_), result in ordered_map(prepare_image, tasks, config.workers, max(size + config.workers, 2)):
            pending.append(error_entry(path, result) if isinstance(result, BaseException) else result)
            if sum(isinstance(x, PreparedImage) for x in pending) >= state["size"]:
                flush(pending)
                pending = []
        if pending:
            flush(pending)
    finally:
        progress.close()
        writer.close()
    return read_results(records_path), len(todo)


# ----------------------------------------------------------------------------------------------
# fingerprints of clusters (the refine step's view of the run)
# ----------------------------------------------------------------------------------------------
class GroupOps:
    """ML fingerprints of member sets (members re-decoded, SHA-256 checked) and rows of one group."""

    def __init__(self, records: list[dict[str, Any]], store: RowStore, params: ClusterParams, config: RunConfig):
        self.records, self.store, self.params, self.config = records, store, params, config
        self.bk = config.backend_obj()
        self.shape = tuple(records[0]["region"])

    def accumulate(self, members: Sequence[tuple[int, int]]) -> FingerprintAccumulator:
        p = self.params
        acc = FingerprintAccumulator(p.sigma, p.levels, p.wavelet, self.bk)
        tasks = [(self.records[i]["path"], p.region, self.config.limits) for i, _ in members]
        batch: list[np.ndarray] = []
        for ((path, *_), result), (i, k) in zip(ordered_map(prepare_image, tasks, self.config.workers,
                                                           max(2 * self.config.workers, 2)), members):
            if isinstance(result, BaseException):
                raise CamidError(f"{path}: cannot be read again to build its cluster's fingerprint ({result})")
            if result.info.sha256 != self.records[i]["sha256"]:
                raise CamidError(f"{path}: the file changed during the run (SHA-256 {result.info.sha256[:16]}..., "
                                 f"was {self.records[i]['sha256'][:16]}...)")
            batch.append(result.clips[k])
            if len(batch) == FINGERPRINT_BATCH:
                acc.add(np.stack(batch))
                batch = []
        if batch:
            acc.add(np.stack(batch))
        return acc

    def absorb(self, into: FingerprintAccumulator, other: FingerprintAccumulator) -> FingerprintAccumulator:
        return into.merge(other)

    def fingerprint_row(self, acc: FingerprintAccumulator) -> np.ndarray:
        return normalise_rows(acc.fingerprint().reshape(1, -1))[0]

    def candidates(self, index: int) -> int:
        return len(self.records[index]["rows"])

    def image_rows(self, index: int) -> np.ndarray:
        return np.stack([self.store.read(r, r + 1)[0] for r in self.records[index]["rows"]])

    def pce(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(pair_pce(self.bk, a[None], b[None], self.shape)[0])

    def turn_row(self, row: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(row.reshape(self.shape), 2)).reshape(-1)


def pair_pce(bk: Backend, a: np.ndarray, b: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zero-shift PCE of row pairs ``a[i]``, ``b[i]`` (``(m, h*w)`` each) reshaped to ``shape``."""
    h, w = shape
    corr = crosscorr(bk, bk.asarray(a.reshape(-1, h, w)), bk.asarray(b.reshape(-1, h, w)))
    return pce(bk, corr, (0, 0))["pce"]


# ----------------------------------------------------------------------------------------------
# one group
# ----------------------------------------------------------------------------------------------
def group_gram(run_dir: str, name: str, store: RowStore, params: ClusterParams, config: RunConfig,
               resume: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """The row Gram of a group (only new rows multiplied when an earlier Gram is there)."""
    bk = config.backend_obj()
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
    host = (config.max_host_memory or default_host_memory()) // 4  # the float32 row blocks read from the file
    device = config.max_gpu_memory or default_gpu_memory(bk)
    tile = tile_rows(store.pixels, host, 4)
    if device:
        tile = min(tile, tile_rows(store.pixels, device, 2 if precision == "float16" else 4))
    start = 0 if previous is None else previous.shape[0]
    if config.cluster:
        from camid_gpu.cluster.distributed import gram_on_dask

        gram = gram_on_dask(store.path, store.count, store.pixels, tile, previous, config, precision)
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


def member_candidates(cluster: list[int], sim_rows: np.ndarray, rows: list[list[int]]) -> list[tuple[int, int]]:
    """For each member, the rotation candidate that agrees best with the members already placed (summed NCC).

    The turns are chosen jointly, so that every member lies in one frame: landscape members (one candidate)
    are placed first; with none, the first member is placed at its last turn (270 degrees: a portrait frame
    stored turned 90 degrees counter-clockwise, as a camera held with its grip up writes it, is then in the
    sensor's frame; the other way round, the whole cluster is a half turn off and ``frame_known`` says so).
    Then, repeatedly, the member
    and turn with the highest summed row NCC against the placed members are placed. (Choosing each member's
    turn on its own does not: a portrait frame turned 90 and one turned 270 degrees are 180 degrees apart, and
    each agrees equally with the other in either of its turns, so independent choices mix the two frames and
    the cluster fingerprint averages a pattern with its own half turn.)
    """
    placed: dict[int, int] = {i: 0 for i in cluster if len(rows[i]) == 1}
    if not placed and cluster:
        placed[cluster[0]] = len(rows[cluster[0]]) - 1
    pending = [i for i in cluster if i not in placed]
    width = max((len(rows[i]) for i in pending), default=1)
    # score[p, a]: summed NCC of pending member p's turn a with the placed members' chosen rows
    cand = np.array([[rows[i][min(a, len(rows[i]) - 1)] for a in range(width)] for i in pending], dtype=np.int64)
    chosen = np.array([rows[j][k] for j, k in placed.items()], dtype=np.int64)
    score = (sim_rows[cand.reshape(-1)][:, chosen].astype(np.float64).sum(axis=1).reshape(len(pending), width)
             if pending else np.zeros((0, width)))
    while pending:
        p, a = np.unravel_index(int(np.argmax(score)), score.shape)
        i = pending.pop(int(p))
        placed[i] = int(a)
        row = rows[i][int(a)]
        cand = np.delete(cand, p, axis=0)
        score = np.delete(score, p, axis=0) + sim_rows[cand, row].astype(np.float64)
    return [(i, placed[i]) for i in cluster]


def pair_stage(run_dir: str, name: str, records: list[dict[str, Any]], store: RowStore, tests: int,
               params: ClusterParams, config: RunConfig, resume: bool, timings: dict[str, float]) -> dict[str, Any]:
    """Gram, pair threshold, links and average linkage of one group: the first clusters, before refinement.

    ``tests``: the image comparisons of the whole run (every group's pairs times rotations), over which the
    pair stage's share of ``--pfa`` is spread. The result carries :func:`refine_comparisons` of the group,
    the bound its refinement is held to, fixed here before any refinement comparison is made.
    """
    bk = config.backend_obj()
    t0 = time.perf_counter()
    gram, gram_info = group_gram(run_dir, name, store, params, config, resume)
    t1 = time.perf_counter()
    rows = [r["rows"] for r in records]
    sim, choice = image_similarity(gram, rows)
    n = len(records)
    pixels = records[0]["region"][0] * records[0]["region"][1]
    scene = group_scene_guard(run_dir, name, records, store.count)  # same-scene pairs: never candidates, not null
    spread = robust_spread(scene.null_values(sim))
    threshold = stage_threshold("pairs", params.pfa, tests, pixels, spread)
    candidates = [(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu((sim > threshold.ncc) & ~scene.blocked, 1)))]
    shape = tuple(records[0]["region"])
    budget = config.max_gpu_memory or default_gpu_memory(bk) or (config.max_host_memory or
                                                                         default_host_memory()) // 4
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
                 refine_tests: int, params: ClusterParams, config: RunConfig,
                 timings: dict[str, float]) -> dict[str, Any]:
    """Fingerprint refinement of one group at the refinement's thresholds: its share of ``--pfa`` over
    ``refine_tests``, the whole run's bound (every group's :func:`refine_comparisons`, summed before any
    group is refined)."""
    bk = config.backend_obj()
    t0 = time.perf_counter()
    threshold = stage_threshold("refine", params.pfa, refine_tests, stage["pixels"], stage["spread"])
    ops = GroupOps(records, store, params, config)
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


# ----------------------------------------------------------------------------------------------
# the whole run
# ----------------------------------------------------------------------------------------------
def cluster_images(inputs: Sequence[str], run_dir: str, params: ClusterParams = ClusterParams(),
                   config: RunConfig | None = None, resume: bool = False,
                   argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Cluster the images in ``inputs`` (files or folders) by camera; writes ``run_dir`` (see module doc).

    Returns the content of ``clusters.json``.
    """
    config = config or RunConfig()
    run_folder.check_outputs(inputs, folders=[run_dir], command="cluster")  # never into the evidence; before any work
    if not config.cluster:  # a Gram precision this device cannot do is refused before the run folder is made
        resolve_precision(config.backend_obj(), params.precision)
    with run_folder.locked(run_dir):
        return _cluster_images(inputs, run_dir, params, config, resume, argv)


def _cluster_images(inputs: Sequence[str], run_dir: str, params: ClusterParams, config: RunConfig, resume: bool,
                    argv: Sequence[str] | None) -> dict[str, Any]:
    started = utc_now()
    listing = disputed_listing(inputs)
    paths, skipped = listing.images, [s.to_dict() for s in listing.skipped]
    params, region_choice = resolve_region(params, paths, run_dir, resume)  # --region auto: from frames and budget
    check_resume_params(run_dir, params, resume, config.precision)
    if resume:
        paths, again = already_in_run(paths, os.path.join(run_dir, "images.jsonl"))
        skipped += again
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    records, processed = compute_residuals(paths, run_dir, params, config, resume)
    timings["residuals"] = time.perf_counter() - t0
    ok = [r for r in records if not r.get("error")]
    # byte-identical copies are one image: compared once (the first), and they follow it into its cluster
    first_of: dict[str, str] = {}
    copies: dict[str, str] = {}
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        if r["sha256"] in first_of:
            copies[r["path"]] = first_of[r["sha256"]]
            continue
        first_of[r["sha256"]] = r["path"]
        by_group.setdefault(r["group"], []).append(r)
    stores = _stores_from_records(run_dir, ok)
    tests = sum(comparisons([r["rows"] for r in g]) for g in by_group.values())
    # the pair stage of every group first: the refinement's bound is then fixed, for the whole run, from the
    # pair stage's outcome alone, before any refinement comparison is made (a count made later would void --pfa)
    firsts = [pair_stage(run_dir, name, by_group[name], stores[name], tests, params, config, resume, timings)
              for name in sorted(by_group)]
    refine_tests = sum(g["refine_bound"]["comparisons"] for g in firsts)
    groups = [refine_stage(run_dir, g, by_group[g["name"]], stores[g["name"]], refine_tests, params, config, timings)
              for g in firsts]
    result = _write_outputs(run_dir, records, by_group, groups, params, config, tests, timings, skipped, copies,
                            refine_tests, region_choice)
    outputs = [os.path.join(run_dir, f) for f in ("images.jsonl", "cluster-params.json", "clusters.json",
                                                   "clusters.csv")]
    outputs += [c["fingerprint"]["metadata"] for c in result["clusters"]]
    outputs += [c["fingerprint"]["arrays"] for c in result["clusters"]]
    inputs_manifest = []
    for r in records:
        if r.get("error"):
            e = file_entry(r["path"], "image")
            e["error"] = r["error"]
        else:
            e = {"path": r["path"], "abspath": os.path.abspath(r["path"]), "role": "image", "size": r["file_size"],
                 "sha256": r["sha256"], "pixels": r["size"], "format": r["format"], "exif": r.get("exif", {})}
        inputs_manifest.append(e)
    bk = config.backend_obj()
    run_folder.write_manifest(
        run_dir, "cluster", argv, params.to_dict(), bk.describe() if not config.cluster else f"dask {config.cluster}",
        started, inputs_manifest, None, outputs,
        extra={"resumed": resume, "processed": processed, "timings_s": result["timings_s"],
               "skipped_inputs": skipped, "inputs_found": listing.counts()},
        kernels=kernels_status(bk) if not config.cluster else CLUSTER_KERNELS)
    return result


def _write_outputs(run_dir, records, by_group, groups, params, config, tests, timings, skipped,
                   copies: dict[str, str], refine_tests: int, region_choice: dict | None = None) -> dict[str, Any]:
    """``copies``: path of a byte-identical copy -> the path of the first file with its bytes (the one compared)."""
    copies_of: dict[str, list[str]] = {}
    for copy, first in copies.items():
        copies_of.setdefault(first, []).append(copy)
    clusters_out, unclustered = [], []
    cluster_of: dict[str, str] = {}
    number = 0
    for g in groups:
        name, recs = g["name"], by_group[g["name"]]
        ordered = sorted(g["final"], key=lambda c: (-len(c.members), c.images[0]))
        for c in ordered:
            number += 1
            cid = f"cluster-{number:03d}"
            members = sorted(c.members)
            fp = g["ops"].accumulate(members).fingerprint() if c.acc is None else c.acc.fingerprint()
            group = tuple(int(v) for v in name.split("x"))
            clip = region_clip(group, params.region)
            member_info = [{"path": recs[i]["path"], "sha256": recs[i]["sha256"],
                            "rotation": recs[i]["rotations"][k], "size": recs[i]["size"]} for i, k in members]
            store_fp = CameraFingerprint(
                camera=cid, methods=("pce",), arrays={"k": fp}, clips={"pce": clip}, source_shape=group,
                params=dict(params.fingerprint_params(), refs=len(members)),
                references=[{"path": m["path"], "abspath": os.path.abspath(m["path"]), "sha256": m["sha256"],
                             "size": m["size"]} for m in member_info],
                software=software_versions())
            fp_dir = os.path.join(run_dir, "fingerprints", name)
            meta = save_fingerprint(store_fp, fp_dir)
            index = {i for i, _ in members}
            links = [dict(l, a=recs[l["a"]]["path"], b=recs[l["b"]]["path"]) for l in g["links"]
                     if l["a"] in index and l["b"] in index]
            events = [_event_paths(e, recs) for e in c.events]
            # with portrait members only, the frame is known up to a half turn (see member_candidates)
            frame_known = any(m["rotation"] == 0 for m in member_info)
            clusters_out.append({"id": cid, "group": name, "size": len(members), "members": member_info,
                                 "frame_known": frame_known,
                                 "links": links, "events": events,
                                 "fingerprint": {"metadata": meta, "arrays": os.path.join(fp_dir, f"{cid}.npz")}})
            member_info += [dict(m, path=copy, identical_to=m["path"]) for m in list(member_info)
                            for copy in copies_of.get(m["path"], [])]
            clusters_out[-1]["copies"] = len(member_info) - len(members)
            for m in member_info:
                cluster_of[m["path"]] = cid
        for i in g["singles"]:
            unclustered.append({"path": recs[i]["path"], "sha256": recs[i]["sha256"], "group": name})
            unclustered += [dict(unclustered[-1], path=copy, identical_to=recs[i]["path"])
                            for copy in copies_of.get(recs[i]["path"], [])]
    groups_out = []
    for g in groups:
        t = g["threshold"]
        recs = by_group[g["name"]]
        groups_out.append({"name": g["name"], "images": len(recs), "region": recs[0]["region"],
                           "image_pairs": len(recs) * (len(recs) - 1) // 2,
                           "threshold": t.to_dict(), "refine_threshold": g["refine_threshold"].to_dict(),
                           "refine_bound": g["refine_bound"], "null": g["null"], "gram": g["gram_info"],
                           "candidate_pairs": len(g["links"]),
                           "confirmed_pairs": sum(link["confirmed"] for link in g["links"]),
                           "refine_rounds": g["rounds"], "same_scene": g["scene"].to_json(recs, g["sim"]),
                           "order": [r["path"] for r in recs]})
    errors = [r for r in records if r.get("error")]
    by_sha: dict[str, list[str]] = {}
    for r in records:
        if not r.get("error"):
            by_sha.setdefault(r["sha256"], []).append(r["path"])
    # byte-identical copies link with NCC 1: their link is one image's evidence, not two, so they are named
    identical = [paths for paths in by_sha.values() if len(paths) > 1]
    result = {"format": FORMAT, "version": VERSION, "params": params.to_dict(), "comparisons": tests,
              "refine_comparisons": refine_tests,
              "backend": config.backend_obj().describe() if not config.cluster else f"dask {config.cluster}",
              "groups": groups_out, "clusters": clusters_out, "unclustered": unclustered,
              "errors": [{"path": r["path"], "error": r["error"]} for r in errors], "skipped": skipped,
              "identical_files": identical, "region_choice": region_choice}
    # the same inputs and parameters give the same bytes: times go to the manifest, not here
    with atomic_write(os.path.join(run_dir, "clusters.json"), "w") as handle:
        json.dump(result, handle, indent=1, sort_keys=True, allow_nan=False)
        handle.write("\n")
    _write_csv(os.path.join(run_dir, "clusters.csv"), records, cluster_of)
    return dict(result, timings_s={k: round(v, 3) for k, v in timings.items()})


def _event_paths(event: dict[str, Any], recs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(event)
    for key in ("members", "members_before", "merged"):
        if key in out:
            out[key] = [recs[i]["path"] for i in out[key]]
    if "image" in out:
        out["image"] = recs[out["image"]]["path"]
    return out


def _write_csv(path: str, records: list[dict[str, Any]], cluster_of: dict[str, str]) -> None:
    import csv

    # names escaped as on the terminal (a name that is not UTF-8 cannot be written raw)
    with atomic_write(path, "w") as handle:
        w = csv.writer(handle)
        w.writerow(["path", "sha256", "group", "cluster", "error"])
        for r in records:
            if r.get("error"):
                w.writerow([printable(r["path"]), "", "", "", printable(r["error"]["reason"])])
            else:
                w.writerow([printable(r["path"]), r["sha256"], r["group"], cluster_of.get(r["path"], ""), ""])

"""``camid library search LIB IMAGES... -o RUN``: screen every compatible camera, confirm the shortlist by PCE.

A run folder like identify's (:mod:`camid_gpu.engine.run_folder`: lock, ``run.json``, ``--resume``, manifest),
one record per image in ``results.jsonl``. Per chunk of images:

1. **Plan** each image against each geometry of the library (sensor frame and PCE clip): the rotations at which
   the image matches the frame in full are screened; a crop (the image fits inside the frame), a non-zero
   ``--shift-range`` or the scale search cannot be screened at zero shift, and those cameras go to the
   confirmation unscreened (as many as identify would score); other geometries are not comparable.
2. **Screen** (:mod:`.screen`): the views' residuals (the functions identify uses) against the library's
   float16 rows, streamed from the memory-mapped screening files chunk by chunk, locally or as Dask tasks.
3. **Confirm** the shortlist with :func:`camid_gpu.pipeline.identify.identify_chunk`, the very code of
   ``identify`` (full frames, crops, rotations, the scale search), at the decision threshold ``T_N`` of the
   image (Sidak over every camera it was compared with), so the decision rule is identify's.

Each record has identify's fields plus ``library``: version, cameras in the library, compared (screened and
unscreened), not comparable, the screening threshold, the shortlist with its z, the best screen scores, and the
decision threshold with its false-alarm probabilities.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu._shared.jsonio import json_number
from camid_gpu.backend import Backend
from camid_gpu.backend.base import to_host
from camid_gpu.config import LIBRARY_CHUNK_LIMIT, LIBRARY_SCREEN_MISS, Params, RunConfig
from camid_gpu.engine.context import RunContext, run_context
from camid_gpu.engine import run_folder
from camid_gpu.engine import scheduler
from camid_gpu.engine.video import video_spec
from camid_gpu.errors import CamidError, ImageError, LibraryError, ScoreError
from camid_gpu.io.geometry import center_clip
from camid_gpu.library import arrays as arr
from camid_gpu.library import integrity, runcheck
from camid_gpu.library import screen as scr
from camid_gpu.pipeline import identify as ident
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline.crops import native_size
from camid_gpu.pipeline.records import (CROPS_NONE, CROPS_SCALES, CROPS_SKIPPED, base_record, crop_rule, error_entry,
                                        pce_record)
from camid_gpu.prnu.residual import gray_intensity, pixels_to_device, residual_native, wiener_dft
from camid_gpu.provenance import input_entries, utc_now

COMMAND = "library-search"
#: screen scores kept per image beyond the shortlist (the report shows how close the next cameras came)
SCREEN_TOP = 5
#: fingerprints kept loaded between images (the confirmation's cache)
FINGERPRINT_CACHE = 64


@dataclass
class Geometry:
    """The active cameras of one screening file: sensor frame, PCE clip, catalogue rows by screening row."""

    name: str
    shape: tuple[int, int]
    clip: tuple[int, int] | None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pixels(self) -> int:
        h, w = self.clip or self.shape
        return h * w


def geometries(rows: Sequence[dict[str, Any]]) -> list[Geometry]:
    found: dict[str, Geometry] = {}
    for r in rows:
        clip = (r["clip_rows"], r["clip_cols"]) if r["clip_rows"] else None
        found.setdefault(r["screen_file"], Geometry(r["screen_file"], (r["rows"], r["cols"]), clip)).rows.append(r)
    for g in found.values():
        g.rows.sort(key=lambda r: r["screen_row"])
    return [found[k] for k in sorted(found)]


@dataclass
class Plan:
    """One image against the library: views to screen, cameras confirmed unscreened, the count of the rest."""

    screen: list[tuple[int, int]] = field(default_factory=list)       # (geometry index, degrees)
    unscreened: dict[str, str] = field(default_factory=dict)          # camera -> why
    not_comparable: int = 0
    crops: str = CROPS_NONE                                           # the crop rule (records.CROP_RULES)
    crop_skipped: int = 0                                             # cameras a crop would fit, not searched
    crop_geometry: dict[int, bool] = field(default_factory=dict)      # unscreened geometry -> only as a crop

    def compared(self, geoms: list[Geometry]) -> int:
        screened = {gi for gi, _ in self.screen}
        return sum(len(geoms[gi].rows) for gi in screened) + len(self.unscreened)


def plan_image(item: prepare.Prepared, geoms: list[Geometry], params: Params) -> Plan:
    """Which rotations of ``item`` are screened against which geometry (identify's geometry rule, and its crop
    rule over the whole library: an image of a library sensor's size is not crop-searched in larger ones)."""
    plan = _geometry_plan(item, geoms, params)
    if params.search_scales is not None:
        plan.crops = CROPS_SCALES
        return plan
    crop_only = [gi for gi, g in enumerate(geoms) if plan.crop_geometry.get(gi)]
    native = native_size(item.shape_at(0), [g.shape for g in geoms])
    plan.crops = crop_rule(native, bool(crop_only), params.search_crops)
    if plan.crops == CROPS_SKIPPED:
        for gi in crop_only:
            for r in geoms[gi].rows:
                del plan.unscreened[r["name"]]
            plan.crop_skipped += len(geoms[gi].rows)
            plan.not_comparable += len(geoms[gi].rows)
    return plan


def _geometry_plan(item: prepare.Prepared, geoms: list[Geometry], params: Params) -> Plan:
    """:func:`plan_image` before the crop rule: every geometry the image fits in as a crop is searched."""
    plan = Plan()
    screenable = params.search_scales is None and tuple(params.shift_range or (1, 1)) == (0, 0)
    for gi, g in enumerate(geoms):
        tried = [d for d in prepare.rotations_to_try(item.shape_at(0), g.shape, params.rotations) if d in item.rotations]
        relations = {d: prepare.match_geometry(item.shape_at(d), g.shape, g.clip, crops=True)[0] for d in tried}
        if params.search_scales is not None:
            from camid_gpu.prnu.search import scaled_size

            top = scaled_size(g.shape, max(params.search_scales[:2]))
            fits = [d for d in tried if item.shape_at(d)[0] <= top[0] and item.shape_at(d)[1] <= top[1]]
            why = "the scale/crop search is not screened"
        else:
            fits = [d for d, rel in relations.items() if rel]
            why = ("a crop of the sensor frame (its offset is searched)" if prepare.FULL not in relations.values()
                   else "--shift-range searches other shifts than zero")
        full = [d for d, rel in relations.items() if rel == prepare.FULL]
        if full and screenable:
            plan.screen.extend((gi, d) for d in full)
        elif fits:
            plan.unscreened.update({r["name"]: why for r in g.rows})
            plan.crop_geometry[gi] = not full
        else:
            plan.not_comparable += len(g.rows)
    return plan


def _views(bk: Backend, items: Sequence[prepare.Prepared], tasks: list[tuple[int, int]], g: Geometry,
           params: Params, kept: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query rows of the (image, rotation) views ``tasks`` of geometry ``g`` (in task order): residuals as
    identify makes them, one batch per pixel layout (8- and 16-bit, gray and colour are never stacked together,
    as in :func:`camid_gpu.pipeline.identify.clip_batches`). Each view's residual and intensity are kept in
    ``kept[image][(degrees, clip)]`` for the confirmation, which then does not compute them again."""
    views = [to_host(items[i].view(d, g.clip)) for i, d in tasks]
    layouts: dict[tuple, list[int]] = {}
    for t, v in enumerate(views):
        layouts.setdefault((v.shape, str(v.dtype)), []).append(t)
    first = np.empty((2 * len(tasks), g.pixels), np.float32)
    squares = np.empty((len(tasks), g.pixels), np.float32)
    norms = np.empty(len(tasks))
    for members in layouts.values():
        pixels = pixels_to_device(bk, np.stack([views[t] for t in members]))
        res = wiener_dft(bk, residual_native(bk, pixels, params.sigma_query, params.levels, params.wavelet))
        res, inten = bk.to_numpy(res), bk.to_numpy(gray_intensity(bk, pixels))
        a, b, c = scr.query_rows(res, inten)
        m = len(members)
        for n, t in enumerate(members):
            i, d = tasks[t]
            kept[i][(d, g.clip)] = (res[n], inten[n])
        first[members], first[[len(tasks) + t for t in members]] = a[:m], a[m:]
        squares[members], norms[members] = b, c
    return first, squares, norms


class Screener:
    """Streams each geometry's screening rows past a block of query views, locally or on Dask."""

    def __init__(self, library: str, geoms: list[Geometry], ctx: RunContext):
        self.library, self.geoms, self.config = library, geoms, ctx.config
        self.bk = ctx.backend
        self.engine = scr.engine_for(self.bk)
        self.buffers = scr.TileBuffers()
        budget = ctx.host_budget // 4
        self.client = self.cluster = None
        if ctx.dask:
            from camid_gpu._shared.optional import import_optional
            from camid_gpu.engine.dask import dask_client

            distributed = import_optional("dask.distributed", "dist", "--dask")
            self.client, self.cluster = dask_client(distributed, ctx.dask, config=ctx.config)
        self.tiles = {g.name: self._tiles(g, budget) for g in geoms}
        #: camera -> why it was refused (its screening row as read differs from its SHA-256)
        self.refused: dict[str, str] = {}

    def _tiles(self, g: Geometry, budget: int) -> list[tuple[np.ndarray, list[str]]]:
        """(screening rows, their catalogue SHA-256s) of each tile of ``g``."""
        index = np.array([r["screen_row"] for r in g.rows], dtype=np.int64)
        hashes = [r["screen_sha256"] for r in g.rows]
        step = scr.chunk_rows(g.pixels, budget)
        return [(index[s:s + step], hashes[s:s + step]) for s in range(0, len(index), step)]

    def z(self, g: Geometry, first: np.ndarray, squares: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """z of every query view against every active camera of ``g`` (in ``g.rows`` order); a camera whose
        screening row differs from its SHA-256 as read is refused (:attr:`refused`, its z NaN)."""
        path = arr.screen_path(self.library, g.name)
        tiles = self.tiles[g.name]
        if self.client is not None:
            futures = [self.client.submit(scr.tile_task, path, g.pixels, idx, first, squares, self.config.backend,
                                          self.config.device, hashes, pure=False) for idx, hashes in tiles]
            products = [f.result() for f in futures]
        else:
            products = []
            for idx, hashes in tiles:
                rows, bad = scr.checked_rows(path, g.pixels, idx, hashes, self.buffers)
                products.append((*scr.tile_products(self.engine, first, squares, rows, self.buffers), bad))
        z = np.concatenate([scr.z_scores(a, b, norms, g.pixels) for a, b, _ in products], axis=1)
        start = 0
        for (idx, _), (_, _, bad) in zip(tiles, products):
            for position in bad:
                row = g.rows[start + position]
                z[:, start + position] = np.nan
                self.refused[row["name"]] = (f"its screening row {row['screen_row']} of {path} differs from the "
                                             f"SHA-256 the catalogue records (changed or damaged; run 'camid "
                                             f"library verify')")
            start += len(idx)
        return z

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def screen_chunk(screener: Screener, items: Sequence[prepare.Prepared], plans: list[Plan], params: Params,
                 floors: Sequence[float], kept: list[dict]) -> list[dict[str, tuple[float, int]]]:
    """Per image: camera -> (best screen z over the rotations screened, its rotation), for the cameras at or
    over the image's screening threshold ``floors[i]`` and the :data:`SCREEN_TOP` best of every view."""
    found: list[dict[str, tuple[float, int]]] = [{} for _ in items]
    by_geometry: dict[int, list[tuple[int, int]]] = {}
    for i, plan in enumerate(plans):
        for gi, d in plan.screen:
            by_geometry.setdefault(gi, []).append((i, d))
    for gi, tasks in sorted(by_geometry.items()):
        g = screener.geoms[gi]
        first, squares, norms = _views(screener.bk, items, tasks, g, params, kept)
        z = np.nan_to_num(screener.z(g, first, squares, norms), nan=-np.inf)
        top = min(SCREEN_TOP, z.shape[1])
        for t, (i, d) in enumerate(tasks):
            keep = np.union1d(np.flatnonzero(z[t] >= floors[i]), np.argpartition(-z[t], top - 1)[:top])
            best = found[i]
            for c in keep:
                name, value = g.rows[c]["name"], float(z[t, c])
                if np.isfinite(value) and (name not in best or value > best[name][0]):
                    best[name] = (value, d)
    return found


class FingerprintCache:
    """The library's fingerprints as CameraFingerprint objects, loaded (hash-checked) on first use; a camera
    whose arrays or metadata differ from their hashes is refused (:attr:`refused`: camera -> why)."""

    def __init__(self, library: str, rows: Sequence[dict[str, Any]]):
        self.library, self.rows, self.loaded = library, {r["name"]: r for r in rows}, {}
        self.refused: dict[str, str] = {}

    def get(self, name: str):
        if name in self.refused:
            raise LibraryError(self.refused[name])
        if name not in self.loaded:
            if len(self.loaded) >= FINGERPRINT_CACHE:
                self.loaded.pop(next(iter(self.loaded)))
            try:
                self.loaded[name] = arr.camera_fingerprint(self.library, self.rows[name])
            except LibraryError as exc:
                self.refused[name] = str(exc)
                raise
        return self.loaded[name]


def confirm(bk: Backend, item: prepare.Prepared, names: Sequence[str], cache: FingerprintCache,
            params: Params, kept: dict | None = None, refused: dict[str, str] | None = None) -> dict[str, Any]:
    """identify's record of ``item`` against the cameras ``names`` at ``params.pce_threshold`` (one
    identify_chunk per PCE clip of the library; their scores joined under identify's decision rule). A camera
    whose fingerprint fails its checks is left out and named in ``refused``."""
    by_clip: dict[Any, list] = {}
    for name in sorted(names):
        try:
            fp = cache.get(name)
        except LibraryError as exc:
            (refused if refused is not None else {})[name] = str(exc)
            continue
        by_clip.setdefault(fp.clip_of("pce"), []).append(fp)
    if not by_clip:
        record = base_record(item)
        record["pce"], record["rotation"] = pce_record({}, {}, params.pce_threshold, item.path), 0
        return record
    parts = []
    for clip, store in by_clip.items():
        view = item if clip is None else replace(item, clips=[_clipped(item, d, clip) for d in item.rotations])
        known = {(0, d): v for (d, c), v in (kept or {}).items() if c == clip}
        parts.append(ident.identify_chunk(bk, store, [view], replace(params, pce_clip=clip), ("pce",),
                                          residuals=known)[0])
    if len(parts) == 1 or any(p.get("error") for p in parts):
        return next((p for p in parts if p.get("error")), parts[0])
    scores = {cam: s for p in parts for cam, s in p["pce"]["scores"].items()}
    record = parts[0]
    record["pce"] = pce_record(dict(sorted(scores.items())), {}, params.pce_threshold, item.path,
                               _joined_searched([p["pce"]["searched"] for p in parts]))
    best = record["pce"]["best"]
    record["rotation"] = scores[best]["rotation"] if best else 0
    record["pce"].pop("max_pce_by_rotation", None)
    return record


def _joined_searched(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``searched`` of records of one image against disjoint camera sets (one per PCE clip): the lists joined,
    the crop rule of the first part that had one to apply."""
    rules = [p["crops"] for p in parts if p["crops"] != CROPS_NONE]
    return {"crops": rules[0] if rules else CROPS_NONE,
            **{key: [c for p in parts for c in p[key]] for key in ("full_frame", "crop", "crop_skipped")}}


def _clipped(item: prepare.Prepared, degrees: int, clip: tuple[int, int]) -> Any:
    try:
        return center_clip(item.view(degrees), clip, item.path)
    except ImageError:
        return None


def search_chunk(screener: Screener, cache: FingerprintCache, version: str, items: Sequence[prepare.Prepared],
                 params: Params, miss: float) -> list[dict[str, Any]]:
    """The records of a chunk of prepared images."""
    plans = [plan_image(item, screener.geoms, params) for item in items]
    thresholds = [scr.screen_threshold(plan.compared(screener.geoms), params.pce_threshold, miss) for plan in plans]
    kept: list[dict] = [{} for _ in items]
    screened = screen_chunk(screener, items, plans, params, [t.z for t in thresholds], kept)
    out = []
    total = sum(len(g.rows) for g in screener.geoms)
    for item, plan, scores, thr, views in zip(items, plans, screened, thresholds, kept):
        n = thr.cameras if plan.compared(screener.geoms) else 0
        shortlist = sorted(((z, d, cam) for cam, (z, d) in scores.items() if z >= thr.z), key=lambda t: (-t[0], t[2]))
        names = [cam for _, _, cam in shortlist] + sorted(plan.unscreened)
        screened = {screener.geoms[gi].name for gi, _ in plan.screen}
        refused = {r["name"]: screener.refused[r["name"]] for g in screener.geoms if g.name in screened
                   for r in g.rows if r["name"] in screener.refused}
        try:
            record = confirm(screener.bk, item, names, cache, replace(params, pce_threshold=thr.decision_pce), views,
                             refused)
        except ScoreError as exc:
            record = error_entry(item.path, exc)
        if not record.get("error"):
            for s in record["pce"]["scores"].values():
                s["log10_p_fa_library"] = json_number(scr.library_log10_pfa(s["log10_p_fa"], n))
            top = sorted(((z, cam) for cam, (z, _) in scores.items()), key=lambda t: (-t[0], t[1]))[:SCREEN_TOP]
            record["library"] = {
                "version": version, "cameras": total, "compared": n, "screened": n - len(plan.unscreened),
                "unscreened": dict(sorted(plan.unscreened.items())), "not_comparable": plan.not_comparable,
                "crops": plan.crops, "crop_skipped": plan.crop_skipped,
                "threshold": thr.to_dict(),
                "shortlist": [{"camera": cam, "z": json_number(z), "rotation": int(d)} for z, d, cam in shortlist],
                "screen_top": [{"camera": cam, "z": json_number(z)} for z, cam in top],
                "refused": dict(sorted(refused.items()))}
            record["mahalanobis_skipped"] = "a library search is PCE only"
        out.append(record)
    return out


def search_library(library: str, inputs: Sequence[str], run_dir: str, params: Params,
                   config: RunConfig | RunContext, *, resume: bool = False, kind: str = "auto",
                   miss: float = LIBRARY_SCREEN_MISS, argv: Sequence[str] | None = None,
                   extra_outputs: Callable[[list[dict[str, Any]]], list[str]] | None = None,
                   on_records: Callable[[list[dict[str, Any]], Any], None] | None = None,
                   expect_version: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Search ``inputs`` in ``library`` into the run folder ``run_dir``; returns (run summary, final records).
    ``extra_outputs(records)`` (e.g. the evidence file of ``--calibration``) writes more files before the
    manifest and returns their paths. ``on_records(records, progress)``: called as records are written, as
    identify's (each image's answer shown as it is done, above the progress bar). ``expect_version``: the
    library's version kept outside it; another is refused before any image is read. The cameras searched are
    kept in ``RUN/library.jsonl`` (:mod:`.runcheck`), hashed into the manifest, for ``camid verify``."""
    started = utc_now()
    ctx = run_context(config)
    scr.screen_threshold(1, params.pce_threshold, miss)  # checks the miss rate before any work
    run_folder.check_outputs(list(inputs) + [library], folders=[run_dir], command=COMMAND)
    with run_folder.locked(run_dir):
        unchecked: list[str] = []
        version, rows, meta = integrity.snapshot(library, expect_version, unchecked)
        if not rows:
            raise CamidError(f"{library}: the library has no camera to search (add fingerprints first)")
        params = ident.with_params(params, levels=int(meta["levels"]) if "levels" in meta else None,
                                   wavelet=meta.get("wavelet"))
        geoms = geometries(rows)
        listing = prepare.disputed_listing(inputs)
        results = os.path.join(run_dir, run_folder.RESULTS_NAME)
        if os.path.exists(results) and not resume:
            raise CamidError(f"{results}: results file exists; pass --resume to continue it or choose another output")
        spec = {"format": run_folder.SPEC_FORMAT, "version": 1, "command": COMMAND, "params": params.to_dict(),
                "methods": ["pce"], "library": {"path": os.path.abspath(library), "version": version},
                "screen": {"miss": miss, "form": scr.SCREEN_FORM}, "kind": kind,
                "inputs": sorted({run_folder.canonical(p) for p in listing.images}),
                "computed_by": ctx.computed_by(), **video_spec(listing.images)}  # --frames, when it has videos
        run_folder.record_spec(run_dir, spec, resume)
        plan = run_folder.plan_resume(listing.images, run_folder.existing_records(results) if resume else [])
        writer = scheduler.ResultsWriter(results, resume)
        if plan.changed:
            writer.write(plan.changed)
        _search_files(library, plan.todo, writer, rows, geoms, version, params, ctx, kind, miss, on_records)
        records = scheduler.read_results(results)
        info = {"path": os.path.abspath(library), "version": version, "cameras": len(rows),
                "geometries": {g.name: len(g.rows) for g in geoms},
                "refused": _refused(records), "unchecked": unchecked}
        manifest, digest = run_folder.write_manifest(
            run_dir, COMMAND, argv, params.to_dict(), ctx.describe(), started, input_entries(records), None,
            [results, runcheck.write_snapshot(run_dir, library, version, rows)]
            + (extra_outputs(records) if extra_outputs else []),
            extra={"methods": ["pce"], "resumed": resume, "library": info, "screen": {"miss": miss, "form": scr.SCREEN_FORM},
                   "skipped_inputs": [s.to_dict() for s in listing.skipped], "inputs_found": listing.counts()},
            kernels=ctx.kernels())
    run = {"library": info, "manifest": manifest, "manifest_sha256": digest, "processed": len(plan.todo),
           "skipped_as_done": plan.done, "retried": plan.retried, "changed": len(plan.changed),
           "skipped_inputs": [s.to_dict() for s in listing.skipped], "inputs_found": listing.counts()}
    return run, records


def _refused(records: list[dict[str, Any]]) -> dict[str, str]:
    """Every camera refused in the run (its screening row or arrays differ from their hashes), and why."""
    return dict(sorted({cam: why for r in records for cam, why in ((r.get("library") or {}).get("refused") or {}).items()
                        }.items()))


def _search_files(library, todo, writer, rows, geoms, version, params, ctx: RunContext, kind, miss,
                  on_records=None) -> None:
    """Prepared in worker processes, searched chunk by chunk, written in input order."""
    full = replace(params, pce_clip=None)  # views of any clip are cut from the whole frame
    shapes = sorted({g.shape for g in geoms})
    tasks = [(p, full, shapes, kind, ctx.config.limits) for p in todo]
    # images per chunk: each pass over the library's rows serves a whole chunk, so as many as the budgets allow
    size = ctx.config.chunk or scheduler.chunk_size(max(g.shape[0] * g.shape[1] for g in geoms), 4,
                                                    ctx.gpu_budget, ctx.host_budget,
                                                    value_bytes=ctx.backend.itemsize, limit=LIBRARY_CHUNK_LIMIT)
    screener = Screener(library, geoms, ctx)
    cache = FingerprintCache(library, rows)
    progress = scheduler.Progress(len(todo), "search", ctx.config.progress)
    if on_records is not None:
        writer.on_write = lambda records: on_records(records, progress)
    pending: list = []

    def flush():
        prepared = [x for x in pending if isinstance(x, prepare.Prepared)]
        found = iter(search_chunk(screener, cache, version, prepared, params, miss) if prepared else [])
        records = [next(found) if isinstance(x, prepare.Prepared) else x for x in pending]
        for r in records:
            r["realpath"] = run_folder.canonical(r["path"])
        writer.write(records)
        progress.advance(len(records))
        pending.clear()

    try:
        videos = _search_videos(screener, cache, version, todo, writer, params, miss, ctx, progress)
        tasks = [t for t in tasks if t[0] not in videos]
        for (path, *_), result in scheduler.ordered_map(prepare.prepare_disputed, tasks, ctx.workers,
                                                        max(size + ctx.workers, 2)):
            pending.append(error_entry(path, result) if isinstance(result, BaseException) else result)
            if len(pending) >= size:
                flush()
        if pending:
            flush()
    finally:
        progress.close()
        writer.close()
        screener.close()


def _search_videos(screener, cache, version, todo, writer, params, miss, ctx: RunContext, progress) -> set[str]:
    """The videos of ``todo``, one at a time in this process (:mod:`camid_gpu.library.video`), before the images;
    returns their paths."""
    from camid_gpu.library.video import search_video
    from camid_gpu.pipeline.video import is_video_path

    videos = [p for p in todo if is_video_path(p)]
    for path in videos:
        try:
            record = search_video(screener, cache, version, path, params, miss, ctx)
        except (CamidError, OSError, MemoryError, ValueError) as exc:
            record = error_entry(path, exc)
        record["realpath"] = run_folder.canonical(path)
        writer.write([record])
        progress.advance(1)
    return set(videos)


__all__ = ["geometries", "plan_image", "search_chunk", "search_library"]

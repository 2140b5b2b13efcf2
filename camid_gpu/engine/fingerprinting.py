"""``camid fingerprint``: one fingerprint per camera subfolder of a reference folder, and the manifest.

Every camera folder is listed (and its name checked) before any image is decoded; a file or a camera that
cannot be used gets an error entry naming it and the reason, and the other cameras go on.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
from typing import Any, Sequence

from camid_gpu.pipeline.kernels import kernels_status
from camid_gpu.config import Params, RunConfig
from camid_gpu.engine import run_folder, store_add
from camid_gpu.engine.context import RunContext, run_context
from camid_gpu.engine.scheduler import Progress, ordered_map
from camid_gpu.engine.video import is_video_path, video_reference_frames
from camid_gpu.errors import CamidError, OutputPathError
from camid_gpu.io.listing import Listing, scan_inputs
from camid_gpu.pipeline import identify as ident
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline import references
from camid_gpu.pipeline.copies import ReferenceCheck
from camid_gpu.provenance import file_entry, utc_now
from camid_gpu.store import load_store, save_fingerprint


def fingerprint_folder(refs_dir: str, out_dir: str, methods: Sequence[str], params: Params,
                       config: RunConfig | RunContext, argv: Sequence[str] | None = None, manifest: bool = True,
                       overwrite: bool = False, add: bool = False) -> dict[str, Any]:
    """Build and save one fingerprint per camera subfolder of ``refs_dir``; with ``manifest``, write
    ``out_dir/manifest.json`` (when a fingerprint was built).

    Returns ``{"cameras": [...saved...], "errors": [...per-file and per-camera...], "manifest_sha256"}``.
    Existing fingerprint files in ``out_dir`` are refused unless ``overwrite``, or ``add`` (the cameras join the
    store there: :mod:`camid_gpu.engine.store_add`).
    """
    started = utc_now()
    ctx = run_context(config)
    run_folder.check_outputs([refs_dir], folders=[out_dir], command="fingerprint")
    existing = sorted(f for f in os.listdir(out_dir) if f.endswith((".npz", ".json"))
                      and f != "manifest.json") if os.path.isdir(out_dir) else []
    if existing and not overwrite and not add:
        raise OutputPathError(f"{out_dir} already holds fingerprint files ({', '.join(existing[:3])}"
                              f"{', ...' if len(existing) > 3 else ''}); pass --overwrite to replace them, "
                              f"or choose another folder")
    listed = reference_listing(refs_dir)  # every folder is listed before any image is decoded
    cameras = {camera for camera, _, _ in listed}
    # --overwrite replaces this run's cameras; a camera it does not build would stay beside them, unlisted in
    # the new manifest, and every later identify would score it as part of this store
    strangers = sorted({os.path.splitext(f)[0] for f in existing} - cameras)
    if strangers and not add:
        raise OutputPathError(f"{out_dir} holds fingerprints of cameras this run does not build ("
                              f"{', '.join(strangers[:3])}{', ...' if len(strangers) > 3 else ''}); one store holds "
                              f"one run's cameras: choose another folder or remove them")
    with run_folder.locked(out_dir):
        kept = store_add.kept_cameras(out_dir, sorted(cameras), methods, params, overwrite) if add else None
        summary = _fingerprint_folder(listed, out_dir, methods, params, ctx, kept.pixels if kept else None)
        built = {c["camera"] for c in summary["cameras"]}
        for camera in sorted(cameras - built):  # failed this time: its earlier fingerprint must not stand in
            for suffix in (".json", ".npz"):
                stale = os.path.join(out_dir, camera + suffix)
                if os.path.lexists(stale):
                    os.remove(stale)
                    summary["errors"].append(ctx.error(
                        stale, "stale-fingerprint-removed",
                        f"camera {camera!r} got no fingerprint in this run; its earlier {camera}{suffix} "
                        f"(from another run, replaced under --overwrite) was removed"))
        if manifest and summary["cameras"]:
            summary["manifest"], summary["manifest_sha256"] = run_folder.write_manifest(
                out_dir, "fingerprint", argv, params.to_dict(), summary["backend"], started,
                (kept.inputs if kept else []) + [file_entry(p, "reference") for p in summary["files"]], None,
                [f for c in summary["cameras"] for f in (c["metadata"], c["arrays"])] + (kept.outputs if kept else []),
                extra={"errors": summary["errors"], "methods": list(methods), "skipped_inputs": summary["skipped"],
                       "decode": ctx.config.decode, "warnings": summary["warnings"],
                       **({"added_to_store": kept.record()} if kept and kept.cameras else {})},
                kernels=summary["kernels"])
    return summary


def _fingerprint_folder(listed: list[tuple[str, str, Listing]], out_dir: str, methods: Sequence[str], params: Params,
                        ctx: RunContext, stored: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """Fingerprint each camera of ``listed`` (:func:`reference_listing`) into ``out_dir`` (always in this process:
    fingerprints are not built on Dask)."""
    bk = ctx.backend
    decoder = ctx.jpeg_decoder()
    saved, errors, tried, skipped = [], [], [], []
    # another camera's photo among a camera's references (``stored``: the pixels of the cameras a --add keeps):
    # refused, naming both files
    check = ReferenceCheck(stored)

    def batches(sensor: tuple[int, int]) -> int:
        """References per residual batch within the memory budgets."""
        return ctx.fingerprint_batch(max(math.prod(params.clip_of(m) or sensor) for m in methods))

    # every camera's count against --refs before any image is decoded (a refusal after minutes of decoding helps no one)
    # (a camera with reference videos is counted in frames, once they are decoded: build_fingerprint checks it)
    short = {camera: None if any(map(is_video_path, listing.images)) else
             references.count_problem(camera, len(listing.images), params.refs)
             for camera, _, listing in listed if listing.images}
    progress = Progress(sum(len(listing.images) for camera, _, listing in listed if not short.get(camera)),
                        "fingerprint references", ctx.config.progress)
    try:
        for camera, folder, listing in listed:
            paths = listing.images
            skipped.extend(s.to_dict() for s in listing.skipped)
            tried.extend(paths)
            if not paths:
                errors.append(ctx.error(folder, "empty", f"camera {camera!r}: no images"))
                continue
            if short[camera]:
                errors.append(short[camera])
                continue
            prefetch = max(2 * ctx.workers, 2)
            videos = [p for p in paths if is_video_path(p)]  # their frames are references (after the images)
            images = [p for p in paths if p not in set(videos)]
            # whole frames: build_fingerprint clips per method
            stream = ordered_map(prepare.load_reference,
                                 [(p, None, ctx.config.limits, decoder is not None) for p in images], ctx.workers,
                                 prefetch)
            loaded = ((task[0], result) for task, result in stream)
            if decoder is not None:
                loaded = prepare.decode_references(loaded, decoder, None)
            loaded = progress.counted(loaded)
            if videos:
                loaded = itertools.chain(loaded, video_reference_frames(videos, ctx, progress))
            try:
                fp, errs = ident.build_fingerprint(camera, paths, bk, params, methods, loaded=loaded,
                                                   batch_size=batches, check=check)
            except CamidError as exc:
                fp, errs = None, [ctx.error(folder, type(exc).__name__, str(exc))]
            errors.extend(errs)
            if fp is not None:
                path = save_fingerprint(fp, out_dir)
                saved.append({"camera": camera, "metadata": path, "references": len(fp.references),
                              "arrays": os.path.join(out_dir, f"{camera}.npz")})
    except BaseException:
        check.close()  # the temporary file of residual squares, also when the run stops on an error
        raise
    progress.close()
    saved = _refuse_crossed(check.finish(), saved, errors, folders={c: f for c, f, _ in listed}, ctx=ctx)
    warnings = [w for w in [references.few_references_warning({c["camera"]: c["references"] for c in saved})] if w]
    return {"cameras": saved, "errors": errors, "backend": bk.describe(), "kernels": kernels_status(bk),
            "files": tried, "skipped": skipped, "warnings": warnings}


def _refuse_crossed(refused: dict[str, str], saved: list[dict[str, Any]], errors: list[dict[str, Any]],
                    folders: dict[str, str], ctx: RunContext) -> list[dict[str, Any]]:
    """The fingerprints of cameras whose references hold another camera's photo (:class:`ReferenceCheck`) are
    removed (this run wrote them) and each camera gets an error entry saying why."""
    for camera, reason in refused.items():
        for entry in [c for c in saved if c["camera"] == camera]:
            for path in (entry["metadata"], entry["arrays"]):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
        errors.append(ctx.error(folders.get(camera, camera), "another-camera-reference", reason))
    return [c for c in saved if c["camera"] not in refused]


def reference_listing(refs_dir: str) -> list[tuple[str, str, Listing]]:
    """(camera, folder, listing of its images and skipped files) for every camera subfolder of ``refs_dir``;
    camera names are checked here, so a bad folder name is reported before any work."""
    from camid_gpu.store import check_camera_name

    listed = []
    seen: dict[str, str] = {}
    owner: dict[tuple[int, int], tuple[str, str]] = {}  # (device, inode) of a reference file -> (camera, path)
    for camera, folder in prepare.camera_folders(refs_dir):
        try:
            check_camera_name(camera)
        except ValueError as exc:
            raise CamidError(f"{folder}: {exc}") from None
        if camera.casefold() in seen:  # the store refuses them at load; on a case-insensitive disk one replaces
            raise CamidError(f"{folder}: camera {camera!r} and {seen[camera.casefold()]!r} differ only in case; "
                             f"a fingerprint store holds one of them (rename one folder)")
        seen[camera.casefold()] = camera
        listing = scan_inputs(folder)
        for path in listing.images:
            try:
                st = os.stat(path)
            except OSError:
                continue  # a missing or unreadable file gets its own error entry when it is read
            first = owner.setdefault((st.st_dev, st.st_ino), (camera, path))
            if first[0] != camera:  # one folder under two names (links), a nested folder or a hard link
                raise CamidError(f"{refs_dir}: cameras {first[0]!r} and {camera!r} share the reference file "
                                 f"{first[1]} (also reached as {path}); their fingerprints would be the same "
                                 f"and a decision would name either: give each camera its own references")
        listed.append((camera, folder, listing))
    prepare.refuse_identical_references(refs_dir, listed)  # copies, not only links: before any decoding
    return listed


def _fingerprints_of(refs: str, fp_dir: str, ctx: RunContext) -> dict[str, Any]:
    """The summary :func:`_fingerprint_folder` would give for fingerprints already in ``fp_dir`` (resume)."""
    store = load_store(fp_dir, unverified=True)  # this run's own store: the run folder's manifest checks it on resume
    cameras = [{"camera": fp.camera, "metadata": os.path.join(fp_dir, f"{fp.camera}.json"),
                "arrays": os.path.join(fp_dir, f"{fp.camera}.npz"), "references": len(fp.references)} for fp in store]
    files = [r.get("path") for fp in store for r in fp.references if isinstance(r.get("path"), str)]
    bk = ctx.backend
    return {"cameras": cameras, "errors": [], "backend": bk.describe(), "kernels": kernels_status(bk), "files": files,
            "skipped": []}

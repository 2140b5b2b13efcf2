"""``camid residual``: noise residuals of image files as float32 TIFFs, one JSON line per image, a manifest.

A file that cannot be used gets an error entry naming the path and the reason; the other files go on.
"""
from __future__ import annotations

import io
import json
import os
from typing import Any, Callable, Sequence

import numpy as np
import tifffile

from camid_gpu.pipeline.kernels import kernels_status
from camid_gpu._shared.files import write_bytes_atomic, writing
from camid_gpu.config import Params, RunConfig
from camid_gpu.engine import run_folder
from camid_gpu.engine.context import RunContext, run_context
from camid_gpu.engine.scheduler import Progress, ordered_map
from camid_gpu.errors import ImageTooSmallError, OutputPathError
from camid_gpu.io.decode import read_image
from camid_gpu.io.geometry import center_clip, green_channel
from camid_gpu.io.listing import scan_inputs
from camid_gpu.pipeline import prepare
from camid_gpu.pipeline.records import error_entry
from camid_gpu.prnu.residual import extract_residual
from camid_gpu.provenance import file_entry, utc_now


def _residual_input(path: str, clip: tuple[int, int] | None, channel: str, limits) -> tuple[np.ndarray, Any]:
    pixels, info = read_image(path, limits=limits)
    pixels = center_clip(pixels, clip, path)
    if min(pixels.shape[:2]) < prepare.MIN_SIDE:  # a 1xN image gave an all-zero "residual" and NaN warnings
        raise ImageTooSmallError(path, f"image{' clip' if clip else ''} is {pixels.shape[0]}x{pixels.shape[1]} "
                                       f"(rows x columns), smaller than the {prepare.MIN_SIDE}x{prepare.MIN_SIDE} a "
                                       f"residual needs")
    return (green_channel(pixels) if channel == "green" else pixels), info


def residual_files(inputs: Sequence[str], out_dir: str, *, sigma: float, levels: int, wavelet: str,
                   clip: tuple[int, int] | None, channel: str, wiener: bool, config: RunConfig | RunContext,
                   on_record: Callable[[dict[str, Any]], None] | None = None,
                   argv: Sequence[str] | None = None,
                   skipped: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Noise residuals of image files as float32 TIFFs ``OUT/<stem>-<sha8>.tif`` (``(H, W)``, 0..255 units),
    with one JSON line per image appended to ``OUT/residuals.jsonl`` and ``OUT/manifest.json``; returns the
    per-file error entries.

    ``channel``: "color" (per-channel residuals combined to gray, Binghamton) or "green"; ``wiener`` also
    applies WienerInDFT. Files under the inputs that are not images are appended to ``skipped`` (path, reason).
    """
    started = utc_now()
    params = Params(clip=clip, sigma_fingerprint=sigma, levels=levels, wavelet=wavelet)  # checks the values
    run_folder.check_outputs(inputs, folders=[out_dir], command="residual")
    index_path = os.path.join(out_dir, "residuals.jsonl")
    if os.path.lexists(index_path):  # appending would mix two runs' records (and replace TIFFs the first lists)
        raise OutputPathError(f"{out_dir} already holds residuals ({index_path}); choose a new output folder")
    listing = scan_inputs(*inputs)
    paths = listing.images
    if skipped is not None:
        skipped.extend(s.to_dict() for s in listing.skipped)
    if not paths:
        raise ValueError(f"no images found in {', '.join(inputs)}")
    errors: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    ctx = run_context(config)
    bk = ctx.backend  # one image per call: the smallest working set there is, whatever the budget
    tasks = [(p, clip, channel, ctx.config.limits) for p in paths]
    with run_folder.locked(out_dir), open(index_path, "a", encoding="utf-8") as index, \
            Progress(len(paths), "residual", ctx.config.progress) as progress:
        for (path, *_), result in ordered_map(_residual_input, tasks, ctx.workers, 2 * ctx.workers):
            progress.advance()
            if isinstance(result, BaseException):
                errors.append(error_entry(path, result))
                continue
            pixels, info = result
            res = extract_residual(pixels[None], sigma=sigma, levels=levels, wavelet=wavelet,
                                   backend=bk, wiener=wiener)[0]
            stem = os.path.splitext(os.path.basename(path))[0]
            out = os.path.join(out_dir, f"{stem}-{info.sha256[:8]}.tif")
            buffer = io.BytesIO()
            tifffile.imwrite(buffer, res.astype(np.float32), metadata=None)
            write_bytes_atomic(out, buffer.getvalue())
            record = {"path": path, "sha256": info.sha256, "shape": list(res.shape), "output": out,
                      "params": {"sigma": sigma, "levels": levels, "wavelet": wavelet,
                                 "clip": list(clip) if clip else None, "channel": channel,
                                 "wiener": wiener, "zero_mean": True},
                      "backend": bk.describe(), "std": float(res.std())}
            with writing(index_path):
                index.write(json.dumps(record, sort_keys=True) + "\n")
                index.flush()
                os.fsync(index.fileno())
            records.append(record)
            if on_record is not None:
                on_record(record)
        index.close()
        inputs_done = [dict(file_entry(r["path"], "input"), sha256=r["sha256"]) for r in records]
        run_folder.write_manifest(out_dir, "residual", argv, dict(params.to_dict(), channel=channel, wiener=wiener),
                                  bk.describe(), started, inputs_done + [dict(file_entry(e["path"], "input"), error=e["error"]) for e in errors], None,
                                  [index_path] + [r["output"] for r in records],
                                  extra={"errors": errors, "skipped_inputs": [s.to_dict() for s in listing.skipped]},
                                  kernels=kernels_status(bk))
    return errors

"""Writing a synthetic dataset (step 9 of the model in :mod:`camid_gpu.datasets.synthetic`): each image
rendered from its scene through its camera, stored as JPEG, PNG or TIFF with EXIF Make/Model, the true
PRNU of every camera, and ``ground_truth.json`` (:func:`make_dataset`, :func:`load_ground_truth`).
"""
from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from camid_gpu.datasets.scenes import flat_scene, natural_scene
from camid_gpu.datasets.sensor import (STREAM_IMAGE, Camera, ModelArtefacts, SensorModel, check_int, develop, expose,
                                       make_camera, model_artefacts, rng_for)

FORMAT_NAME = "camid-synth"
FORMAT_VERSION = 1

_FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "tiff": "tiff", "tif": "tiff"}
_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif"}
_KIND_CODES = {"ref": 0, "flat": 1, "natural": 2}

_EXIF_MAKE, _EXIF_MODEL, _EXIF_ORIENTATION = 0x010F, 0x0110, 0x0112
_MIN_SIDE = 16
_MAX_SIDE = 65500  # JPEG's limit


def _render(
    kind: str, index: int, camera: Camera, seed: int, sensor: SensorModel, bits: int
) -> np.ndarray:
    """One developed image of ``camera`` on the sensor grid: (H, W, 3) uint8 or uint16."""
    height, width = camera.gain_map.shape
    rng = rng_for(seed, STREAM_IMAGE, camera.index, _KIND_CODES[kind], index)
    scene_fn = natural_scene if kind == "natural" else flat_scene
    scene = scene_fn(rng, height, width, sensor)
    raw = expose(scene, camera, sensor, rng)
    return develop(raw, camera, sensor, bits)


def _write_image(
    path: Path, image: np.ndarray, fmt: str, jpeg_quality: int, make: str, model: str
) -> None:
    """Store an (h, w, 3) uint8 (JPEG/PNG) or uint16 (TIFF) image with Make/Model/Orientation."""
    if fmt == "tiff":
        tifffile.imwrite(
            path,
            image,
            photometric="rgb",
            metadata=None,
            extratags=[(271, "s", 0, make, True), (272, "s", 0, model, True), (274, "H", 1, 1, True)],
        )
        return
    exif = Image.Exif()
    exif[_EXIF_MAKE] = make
    exif[_EXIF_MODEL] = model
    exif[_EXIF_ORIENTATION] = 1
    pil = Image.fromarray(image)
    if fmt == "jpeg":
        pil.save(path, format="JPEG", quality=jpeg_quality, subsampling=0, exif=exif)
    else:
        pil.save(path, format="PNG", exif=exif)


def _clear_previous(out: Path) -> None:
    """Delete the files a previous camid-synth dataset in ``out`` listed, and its empty folders."""
    try:
        old = load_ground_truth(out)
    except (FileNotFoundError, ValueError):
        return
    paths = [out / img["path"] for img in old.get("images", [])]
    paths += [out / cam["K"] for cam in old.get("cameras", []) if "K" in cam]
    for path in paths:
        if path.is_file() and path.resolve().is_relative_to(out.resolve()):
            path.unlink()
    for sub in ("refs", "disputed", "truth"):
        top = out / sub
        if top.is_dir():
            for folder in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            if not any(top.iterdir()):
                top.rmdir()
    (out / "ground_truth.json").unlink(missing_ok=True)


def _prepare_outdir(outdir: str | os.PathLike[str], overwrite: bool) -> Path:
    if not isinstance(outdir, (str, os.PathLike)):
        raise ValueError(f"outdir must be a path, got {outdir!r}")
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"outdir must be a directory, got {str(out)!r} (a file)")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"outdir {str(out)!r} is not empty; pass overwrite=True to replace a dataset"
            )
        _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _validate_counts(**counts: object) -> None:
    minimum = {"cameras": 1, "per_model": 1, "refs": 1}
    for name, value in counts.items():
        check_int(name, value, minimum.get(name, 0), 100000)


def _render_and_write(
    out: Path,
    camera: Camera,
    seed: int,
    sensor: SensorModel,
    fmt: str,
    jpeg_quality: int,
    portrait: int,
    item: tuple[str, int],
) -> dict[str, Any]:
    """Render image ``item = (kind, index)`` of ``camera``, store it and return its truth entry."""
    kind, index = item
    folder = "refs" if kind == "ref" else "disputed"
    rel = f"{folder}/{camera.name}/{kind}_{index:03d}{_EXTENSIONS[fmt]}"
    image = _render(kind, index, camera, seed, sensor, 16 if fmt == "tiff" else 8)
    rotation = 90 if kind == "natural" and index < portrait else 0
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, 1))
    _write_image(out / rel, image, fmt, jpeg_quality, sensor.exif_make, camera.model.name)
    return {
        "path": rel,
        "camera": camera.name,
        "kind": kind,
        "rotation": rotation,
        "size": [int(image.shape[0]), int(image.shape[1])],
    }


def _check_arguments(cameras: Any, per_model: Any, refs: Any, disputed_flat: Any, disputed_natural: Any,
                     height: Any, width: Any, jpeg_quality: Any, fmt: Any, portrait: Any, seed: Any, sensor: Any,
                     overwrite: Any, workers: Any) -> None:
    """ValueError naming the first invalid argument of :func:`make_dataset`."""
    _validate_counts(
        cameras=cameras,
        per_model=per_model,
        refs=refs,
        disputed_flat=disputed_flat,
        disputed_natural=disputed_natural,
        portrait=portrait,
    )
    check_int("height", height, _MIN_SIDE, _MAX_SIDE)
    check_int("width", width, _MIN_SIDE, _MAX_SIDE)
    check_int("jpeg_quality", jpeg_quality, 1, 100)
    check_int("seed", seed, 0, 2**128 - 1)
    if not isinstance(fmt, str) or fmt.lower() not in _FORMATS:
        raise ValueError(f"fmt must be one of 'jpeg', 'png', 'tiff', got {fmt!r}")
    if portrait > disputed_natural:
        raise ValueError(
            f"portrait must be <= disputed_natural ({disputed_natural}), got {portrait!r}"
        )
    if not isinstance(sensor, SensorModel):
        raise ValueError(f"sensor must be a SensorModel or None, got {sensor!r}")
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be a bool, got {overwrite!r}")
    check_int("workers", workers, 1, 256)


def _camera_names(cameras: int, per_model: int) -> list[list[str]]:
    """The cameras' names (``C01``, ``C02``, ...; wider past 99), ``per_model`` to a model, by model."""
    digits = max(2, len(str(cameras)))
    names = [f"C{i + 1:0{digits}d}" for i in range(cameras)]
    n_models = -(-cameras // per_model)
    return [names[m * per_model : (m + 1) * per_model] for m in range(n_models)]


def _empty_truth(sensor: SensorModel, **parameters: Any) -> dict[str, Any]:
    """The ground truth before any model, camera or image: format, seed and ``parameters`` (in the order
    given, then the sensor's fields)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "seed": parameters["seed"],
        "parameters": {**parameters, "sensor": sensor.to_dict()},
        "models": [],
        "cameras": [],
        "images": [],
    }


def _write_camera(
    out: Path,
    seed: int,
    sensor: SensorModel,
    fmt: str,
    jpeg_quality: int,
    portrait: int,
    plan: list[tuple[str, int]],
    workers: int,
    cam_index: int,
    name: str,
    artefacts: ModelArtefacts,
    model_members: list[str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Make camera ``cam_index`` of a model, save its true PRNU and write its ``plan`` of images: its
    ground-truth entry and its images' entries (one camera's full-size maps in memory at a time)."""
    camera = make_camera(cam_index, name, artefacts, seed, sensor)
    k_rel = f"truth/{name}_K.npy"
    np.save(out / k_rel, camera.prnu)
    entry = {
        "name": name,
        "model": artefacts.name,
        "twins": [n for n in model_members if n != name],
        "K": k_rel,
        "exposure_gain": camera.exposure,
        "wb_gains": list(camera.wb_gains),
    }
    (out / "refs" / name).mkdir(parents=True, exist_ok=True)
    (out / "disputed" / name).mkdir(parents=True, exist_ok=True)
    job = functools.partial(
        _render_and_write, out, camera, seed, sensor, fmt, jpeg_quality, portrait
    )
    # Every image has its own generator, so threads change the speed, never the bytes;
    # NumPy, SciPy's FFT and Pillow's encoders release the GIL for the heavy parts.
    if workers == 1:
        return entry, [job(item) for item in plan]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return entry, list(pool.map(job, plan))


def make_dataset(
    outdir: str | os.PathLike[str],
    *,
    cameras: int = 4,
    per_model: int = 2,
    refs: int = 15,
    disputed_flat: int = 3,
    disputed_natural: int = 3,
    height: int = 1000,
    width: int = 1200,
    jpeg_quality: int = 92,
    fmt: str = "jpeg",
    portrait: int = 0,
    seed: int = 0,
    sensor: SensorModel | None = None,
    overwrite: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write a synthetic dataset of ``cameras`` cameras into ``outdir`` and return its ground truth.

    Camera ``i`` (0-based, named ``C01``, ``C02``, ...) belongs to model ``i // per_model``
    (``ModelA``, ``ModelB``, ...), so the defaults give 2 models x 2 twins.  Every camera gets
    ``refs`` flat reference images, ``disputed_flat`` flat and ``disputed_natural`` natural disputed
    images; the first ``portrait`` of its natural ones are stored rotated by ``np.rot90(img, 1)``.
    Images are ``height x width`` RGB (``width x height`` when rotated), 8-bit JPEG
    (``fmt="jpeg"``, quality ``jpeg_quality``, 4:4:4) or PNG (``"png"``), or 16-bit TIFF
    (``"tiff"``).  ``outdir`` must be empty or absent unless ``overwrite`` is true, in which case
    the files of a previous camid-synth dataset there (as listed by its ground truth) are deleted
    first and other files are left alone.  ``workers`` threads render a camera's images in
    parallel (default ``min(4, os.cpu_count())``); the output does not depend on it.

    Ground truth (returned, and written to ``outdir/ground_truth.json``)::

        {"format": "camid-synth", "version": 1, "seed": int,
         "parameters": {"cameras", "per_model", "refs", "disputed_flat", "disputed_natural",
                        "height", "width", "jpeg_quality", "fmt", "portrait", "seed",
                        "sensor": {every SensorModel field}},
         "models":  [{"name", "cameras": [names], "vignetting_strength",
                      "optical_centre": [y, x] (px), "fpn_period" (px)}],
         "cameras": [{"name", "model", "twins": [other cameras of the model],
                      "K": "truth/<name>_K.npy", "exposure_gain", "wb_gains": [r, g, b]}],
         "images":  [{"path" (relative to outdir, posix), "camera",
                      "kind": "ref" | "flat" | "natural", "rotation": 0 | 90,
                      "size": [h, w] (as stored)}]}

    Raises ``ValueError`` (naming the parameter) for invalid arguments and ``FileExistsError`` for
    a non-empty ``outdir`` without ``overwrite``.
    """
    if sensor is None:
        sensor = SensorModel()
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    _check_arguments(cameras, per_model, refs, disputed_flat, disputed_natural, height, width, jpeg_quality, fmt,
                     portrait, seed, sensor, overwrite, workers)
    fmt = _FORMATS[fmt.lower()]
    cameras, per_model, refs = int(cameras), int(per_model), int(refs)
    disputed_flat, disputed_natural, portrait = int(disputed_flat), int(disputed_natural), int(portrait)
    height, width, jpeg_quality, seed = int(height), int(width), int(jpeg_quality), int(seed)

    out = _prepare_outdir(outdir, overwrite)
    truth = _empty_truth(sensor, cameras=cameras, per_model=per_model, refs=refs, disputed_flat=disputed_flat,
                         disputed_natural=disputed_natural, height=height, width=width, jpeg_quality=jpeg_quality,
                         fmt=fmt, portrait=portrait, seed=seed)
    (out / "truth").mkdir(exist_ok=True)
    plan = [("ref", i) for i in range(refs)]
    plan += [("flat", i) for i in range(disputed_flat)]
    plan += [("natural", i) for i in range(disputed_natural)]
    write = functools.partial(_write_camera, out, seed, sensor, fmt, jpeg_quality, portrait, plan, workers)

    for m, model_members in enumerate(_camera_names(cameras, per_model)):
        artefacts = model_artefacts(m, height, width, seed, sensor)
        truth["models"].append({**artefacts.summary(), "cameras": model_members})
        for j, name in enumerate(model_members):
            entry, images = write(m * per_model + j, name, artefacts, model_members)
            truth["cameras"].append(entry)
            truth["images"].extend(images)

    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return truth


def load_ground_truth(outdir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``outdir/ground_truth.json``; ``ValueError`` if it is not a camid-synth v1 file."""
    path = Path(outdir) / "ground_truth.json"
    with path.open(encoding="utf-8") as fh:
        truth = json.load(fh)
    if not isinstance(truth, dict) or truth.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(path)!r} is not a {FORMAT_NAME} ground-truth file")
    if truth.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has version {truth.get('version')!r}; expected {FORMAT_VERSION}"
        )
    return truth

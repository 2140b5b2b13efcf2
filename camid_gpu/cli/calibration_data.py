"""Where ``camid calibrate`` gets its scored pairs when it is not given evaluate runs.

``--references REFS``: the lab's own cameras, ``REFS/<camera>/`` real images of each (flats, and naturals where
the lab has them; their kind as camid determines it: a word of the name, else the content). Same-source pairs
come from leave-one-image-out fingerprints: fold k fingerprints every camera from all its images but its k-th,
and scores each camera's k-th image against every fingerprint (its own, built without it, and the others'). Each
fold is a ``camid evaluate`` run (the machinery of every run: checked inputs, records, manifest) on a folder of
symbolic links, in a temporary folder removed afterwards; the calibration records each fold run's hashes.

``--like SEIZED``: no data of the lab's own. Cameras are simulated (``camid_gpu.datasets``: 3 models x twins)
to match the seized images: their sizes (scaled down to a long side of ``--like-max-side``, aspect kept), their
JPEG qualities (estimated from each file's quantisation table) and their kinds. The simulator's assumptions are
stated in the calibration and every LR from it says "calibrated on simulated data".

These orchestrate runs (``engine``) and the simulator (``datasets``), so they live at the command line's layer.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import Counter
from typing import Any, Optional

from camid_gpu import config as cfg
from camid_gpu.errors import CamidError
from camid_gpu.evidence.pairs import RunPairs, read_pairs

#: a camera folder named <model>_<n> or <model>-<n> (Dresden: Nikon_D70_0): the model is the prefix
_MODEL_SUFFIX = re.compile(r"^(.+?)[ _-]+\d+$")


def _folder_models(cameras: list[str]) -> Optional[dict[str, str]]:
    """camera -> model from folder names <model>_<n>, when at least two folders share a model; else None."""
    found = {cam: m.group(1) for cam in cameras if (m := _MODEL_SUFFIX.match(cam))}
    if len(found) != len(cameras) or max(Counter(found.values()).values(), default=0) < 2:
        return None
    return found


def _synth_models(refs: str) -> Optional[dict[str, str]]:
    """camera -> model of a camid-synth dataset whose refs/ folder REFS is (its ground_truth.json beside)."""
    truth = os.path.join(os.path.dirname(os.path.abspath(refs)), "ground_truth.json")
    try:
        with open(truth, encoding="utf-8") as handle:
            data = json.load(handle)
        return {c["name"]: c["model"] for c in data["cameras"]} if data.get("format") == "camid-synth" else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _reference_listing(refs: str) -> dict[str, list[str]]:
    from camid_gpu.io.listing import list_images

    if not os.path.isdir(refs):
        raise CamidError(f"--references {refs}: not a folder (REFS/<camera>/ holds each camera's images)")
    cameras = {}
    for name in sorted(os.listdir(refs)):
        folder = os.path.join(refs, name)
        if os.path.isdir(folder) and not name.startswith("."):
            images = sorted(list_images(folder))
            if images:
                cameras[name] = images
    return _enough(cameras, f"--references {refs}")


def write_crop(path: str, folder: str, fraction: float) -> str:
    """A centre crop of ``fraction`` of each side of the image at ``path``, written into ``folder`` (a JPEG at
    the file's own estimated quality, else a PNG): a questioned image that the crop search must find."""
    from PIL import Image

    from camid_gpu._shared.files import open_regular
    from camid_gpu.evidence.conditions import jpeg_quality

    quality = jpeg_quality(path)
    with open_regular(path) as handle, Image.open(handle) as image:
        w, h = image.size
        cw, ch = max(16, int(w * fraction) // 2 * 2), max(16, int(h * fraction) // 2 * 2)
        left, top = (w - cw) // 4 * 2, (h - ch) // 4 * 2  # even offsets: the CFA phase kept
        crop = image.crop((left, top, left + cw, top + ch))
        stem = os.path.splitext(os.path.basename(path))[0]
        out = os.path.join(folder, f"crop_{stem}" + (".jpg" if quality else ".png"))
        crop.save(out, **({"quality": quality} if quality else {}))
    return out


def _link_fold(folder: str, cameras: dict[str, list[str]], k: int, crops: Optional[float]) -> None:
    for cam, images in cameras.items():
        for part, chosen in (("refs", [p for i, p in enumerate(images) if i != k]),
                             ("disputed", [images[k]] if k < len(images) else [])):
            target = os.path.join(folder, part, cam)
            os.makedirs(target, exist_ok=True)
            for i, path in enumerate(chosen):
                name = f"{i:04d}_{os.path.basename(path)}"  # kind words of the name kept
                os.symlink(os.path.abspath(path), os.path.join(target, name))
                if part == "disputed" and crops:
                    write_crop(path, target, crops)


def _renamed(data: RunPairs, homes: dict[str, str]) -> RunPairs:
    """The pairs with each fold's camera names (``<fold dataset>::<camera>``) named ``<REFS>::<camera>``: one
    camera under one name in every fold (the validation holds a camera out of every fold at once)."""
    def rename(name: str) -> str:
        folder, _, cam = name.rpartition("::")
        return f"{homes.get(folder, folder)}::{cam}"

    data.pairs = [dataclasses.replace(p, image_camera=rename(p.image_camera), camera=rename(p.camera))
                  for p in data.pairs]
    return data


def _evaluate(dataset: str, run: str, backend: str) -> None:
    from camid_gpu.config import Params, RunConfig, methods_of
    from camid_gpu.engine.runner import evaluate_dataset

    evaluate_dataset(dataset, run, methods_of("pce"), Params(refs=None), RunConfig(backend=backend))


def _check_crops(crops: Optional[float]) -> None:
    if crops is not None and not (cfg.is_finite_number(crops) and 0.1 <= crops < 1.0):
        raise ValueError(f"--crops must be a fraction of each side in [0.1, 1), got {crops!r}")


def _enough(cameras: dict[str, list[str]], where: str) -> dict[str, list[str]]:
    short = [f"{c} ({len(v)})" for c, v in cameras.items() if len(v) < 2]
    if len(cameras) < cfg.CALIBRATION_MIN_CAMERAS or short:
        raise CamidError(f"{where}: {len(cameras)} camera folders with images, at least "
                         f"{cfg.CALIBRATION_MIN_CAMERAS} needed, each with at least 2 images (one is left out of "
                         f"its fingerprint in turn)" + (f"; too few images: {', '.join(short)}" if short else ""))
    return cameras


def library_references(library: str) -> tuple[dict[str, list[str]], list[str]]:
    """(camera -> its reference files still at hand and unchanged, notes) of the active cameras of a library:
    the references recorded in each camera's metadata, each checked against its recorded SHA-256 (a reference
    moved, deleted or changed since is left out, and said). The catalogue is checked against its version."""
    from camid_gpu._shared.jsonio import sha256_file
    from camid_gpu.library import catalogue

    con = catalogue.connect(library)
    try:
        recorded, now = catalogue.get_meta(con).get("version"), catalogue.content_version(con)
        rows = catalogue.camera_rows(con, active_only=True)
    finally:
        con.close()
    if recorded != now:
        raise CamidError(f"--library {library}: the catalogue's content is not its recorded version (camid library "
                         f"verify {library})")
    cameras, notes = {}, []
    for row in rows:
        refs = json.loads(row["metadata_json"]).get("references") or []
        kept = [r["path"] for r in refs if isinstance(r, dict) and isinstance(r.get("path"), str)
                and os.path.isfile(r["path"]) and sha256_file(r["path"]) == r.get("sha256")]
        if len(kept) < len(refs):
            notes.append(f"{row['name']}: {len(refs) - len(kept)} of {len(refs)} references no longer at hand or "
                         f"changed since they were recorded, left out")
        if kept:
            cameras[row["name"]] = sorted(kept)
    return cameras, notes


def pairs_from_references(refs: str, work: str, models: Optional[dict[str, str]], backend: str,
                          crops: Optional[float] = None,
                          cameras: Optional[dict[str, list[str]]] = None) -> tuple[RunPairs, dict[str, Any], list[str]]:
    """(pairs, source, reference files) of ``--references REFS`` (see the module docstring); with ``crops``,
    each held-out image's centre crop too (crop-searched pairs: the crop model). ``cameras`` (camera -> files):
    the references of a library instead of REFS's folders (REFS then names the library)."""
    _check_crops(crops)
    given = cameras is not None
    cameras = _enough(cameras, f"--library {refs}") if given else _reference_listing(refs)
    folds = max(len(v) for v in cameras.values())
    runs, homes = [], {}
    for k in range(folds):
        dataset, run = os.path.join(work, f"fold{k + 1:03d}"), os.path.join(work, f"run{k + 1:03d}")
        _link_fold(dataset, cameras, k, crops)
        _evaluate(dataset, run, backend)
        runs.append(run)
        homes[os.path.abspath(dataset)] = os.path.abspath(refs)
    label, found = next(((lab, m) for lab, m in (("--models", models), ("camid-synth ground truth", _synth_models(refs)),
                                                 ("folder names <model>_<n>", _folder_models(list(cameras))))
                         if m), (None, None))
    data = _renamed(read_pairs(runs, found), homes)
    if label:
        data.models_from = [label]
    source = {"from": f"the lab's reference images {'of the library' if given else 'in'} {os.path.abspath(refs)}: "
                      f"{len(cameras)} cameras, "
                      f"{sum(len(v) for v in cameras.values())} images, {folds} leave-one-image-out folds",
              "simulated": False, "references": os.path.abspath(refs), "folds": folds,
              "fold_runs": "temporary camid evaluate runs, removed after the fit (their hashes: data.runs)"}
    if crops:
        source["assumptions"] = [f"crop-searched pairs from centre crops of {crops:g} of each side of every held-out "
                                 f"image, re-saved at its own estimated JPEG quality (PNG when not a JPEG)"]
    return data, source, [p for v in cameras.values() for p in v]


# ------------------------------------------------------------------------------------------------
# --like SEIZED
# ------------------------------------------------------------------------------------------------
def _seized_facts(seized: str) -> list[dict[str, Any]]:
    """Size [rows, columns], JPEG quality (None: not a JPEG) and kind of each seized image."""
    from camid_gpu.evidence.conditions import jpeg_quality
    from camid_gpu.io.decode import read_image
    from camid_gpu.io.listing import list_images
    from camid_gpu.pipeline.prepare import guess_kind

    images = list_images(seized)
    if not images:
        raise CamidError(f"--like {seized}: no image found")
    facts = []
    for path in images:
        try:
            pixels, info = read_image(path)
        except (CamidError, OSError, ValueError) as exc:
            raise CamidError(f"--like {path}: cannot be read ({exc})") from None
        green = pixels[..., 1] if pixels.ndim == 3 else pixels
        facts.append({"path": path, "size": [info.height, info.width], "quality": jpeg_quality(path),
                      "kind": guess_kind(path, green)[0]})
        del pixels, green
    return facts


def _scaled(size: list[int], max_side: int) -> tuple[int, int, float]:
    """(rows, columns, factor) of a seized size scaled down to a long side of at most ``max_side`` (even sides,
    at least 64, the simulator's CFA period kept)."""
    factor = min(1.0, max_side / max(size))
    rows, cols = (max(64, int(round(v * factor / 2)) * 2) for v in size)
    return rows, cols, factor


def _add_crops(dataset: str, fraction: float) -> None:
    disputed = os.path.join(dataset, "disputed")
    for cam in sorted(os.listdir(disputed)):
        for name in sorted(os.listdir(os.path.join(disputed, cam))):
            write_crop(os.path.join(disputed, cam, name), os.path.join(disputed, cam), fraction)


def pairs_like(seized: str, work: str, max_side: int, backend: str,
               crops: Optional[float] = None) -> tuple[RunPairs, dict[str, Any], list[str]]:
    """(pairs, source, seized files) of ``--like SEIZED`` (see the module docstring): one simulated dataset per
    distinct (scaled size, JPEG quality) of the seized images, each evaluated, all pooled; with ``crops``, each
    simulated questioned image's centre crop too."""
    from camid_gpu.datasets.synthetic import make_dataset

    _check_crops(crops)
    if max_side < 64:
        raise ValueError(f"--like-max-side must be at least 64, got {max_side}")
    facts = _seized_facts(seized)
    groups = Counter((*_scaled(sorted(f["size"]), max_side)[:2], f["quality"] or 0) for f in facts)  # 0: PNG
    kinds = Counter(f["kind"] for f in facts)
    runs = []
    for i, (rows, cols, quality) in enumerate(sorted(groups)):
        dataset, run = os.path.join(work, f"like{i + 1:02d}"), os.path.join(work, f"run{i + 1:02d}")
        make_dataset(dataset, cameras=cfg.CALIBRATION_LIKE_CAMERAS, per_model=2, refs=cfg.CALIBRATION_LIKE_REFS,
                     disputed_flat=cfg.CALIBRATION_LIKE_DISPUTED if kinds["flat"] else 0,
                     disputed_natural=cfg.CALIBRATION_LIKE_DISPUTED if kinds["natural"] else 0,
                     height=rows, width=cols, jpeg_quality=int(quality) or 95, fmt="jpeg" if quality else "png",
                     seed=1000 + i)
        if crops:
            _add_crops(dataset, crops)
        _evaluate(dataset, run, backend)
        runs.append(run)
    data = read_pairs(runs)
    scaled = sorted({(f["size"][0], f["size"][1], *_scaled(sorted(f["size"]), max_side)) for f in facts})
    assumptions = [
        "cameras simulated by camid's sensor model (camid_gpu.datasets: multiplicative PRNU, 3 models x 2 twins "
        "sharing the model's artefacts, fixed-pattern noise, vignetting, demosaicing, JPEG), not real cameras",
        f"{len(facts)} seized images matched: {dict(kinds)} kinds; the simulated references are flats",
        "sizes scaled down to a long side of at most "
        f"{max_side} px (aspect kept): " + ", ".join(f"{h}x{w} -> {r}x{c} (x{s:.3f})" for h, w, r, c, s in scaled)
        + "; a true pair's PCE grows with the pixels compared, so at full size the true scores are larger than "
          "simulated and the LR is capped by the ELUB bounds of the simulation",
        "JPEG qualities estimated from the seized files' quantisation tables: "
        + ", ".join(f"{q}" for q in sorted({g[2] for g in groups}) if q) + "; seized files that are not JPEGs are "
        "simulated as PNG (lossless)",
        "the seized images' own processing (in-camera denoising, HDR, stabilisation) is not simulated"]
    if crops:
        assumptions.append(f"crop-searched pairs from centre crops of {crops:g} of each side of every simulated "
                           f"questioned image, re-saved at its JPEG quality")
    matched = sorted({tuple(sorted(f["size"])) for f in facts})
    source = {"from": f"simulated cameras matched to the images in {os.path.abspath(seized)}", "simulated": True,
              "assumptions": assumptions, "like": os.path.abspath(seized),
              "matched_sizes": [list(s) for s in matched]}
    return data, source, [f["path"] for f in facts]

"""Scored (image, camera) pairs with known truth, read from run folders (``camid evaluate`` runs).

Every comparable pair of an image whose camera is known is one pair: the image's own camera gives a
**same-source** pair; another camera a different-source pair, kept apart by population: **same-model** (another
camera of the image camera's model: twins sharing the model's artefacts), **other-model**, or **model-unknown**.
Flat and natural images are kept apart by their ``kind``.

The score is the search-corrected one of :mod:`.score` (from the pair's ``log10_p_fa``), and each pair carries
its search condition (geometry, clip, positions and rotations searched). Runs whose PCE clip differs are not
merged (the score does not make a 128x128 clip comparable with a 240x240 one): one calibration per clip.

Each run's ``results.jsonl`` is checked against the SHA-256 its manifest recorded before it is used; the
calibration records both hashes. Cameras are named ``<dataset>::<camera>``: the same folder name in two
datasets is two cameras. Models come, in this order, from ``--models`` (a JSON object camera -> model), from a
camid-synth dataset's ``ground_truth.json``, or from the EXIF make and model of the camera's own images.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from camid_gpu._shared.custody import check_files
from camid_gpu._shared.files import open_regular
from camid_gpu._shared.jsonio import sha256_file
from camid_gpu.errors import CamidError
from camid_gpu.evidence.conditions import Conditions, conditions_of
from camid_gpu.evidence.score import PairCondition, pair_condition, score_of
from camid_gpu.pipeline.records import final_view, inconsistent_records, is_error, truth_of
from camid_gpu.provenance import MANIFEST_NAME

SAME_SOURCE = "same-source"
SAME_MODEL, OTHER_MODEL, MODEL_UNKNOWN = "same-model", "other-model", "model-unknown"
#: the different-source populations, in report order
DIFFERENT_SOURCE = (SAME_MODEL, OTHER_MODEL, MODEL_UNKNOWN)

@dataclass(frozen=True)
class Pair:
    image: str             # the image's canonical path
    sha256: str
    image_camera: str      # <dataset>::<camera> of the image's true camera
    camera: str            # <dataset>::<camera> of the fingerprint scored
    kind: str              # flat or natural
    pce: float
    score: float
    population: str        # same-source, same-model, other-model or model-unknown
    condition: PairCondition  # the search the score was obtained under

    @property
    def search(self) -> str:
        return self.condition["search"]

    @property
    def same_source(self) -> bool:
        return self.population == SAME_SOURCE


@dataclass
class RunPairs:
    pairs: list[Pair]
    conditions: dict[str, Conditions]   # image sha256 -> its conditions
    runs: list[dict[str, Any]]          # what each run was (folder, hashes, counts)
    models_from: list[str]              # where each run's models came from
    duplicates: int                     # pairs seen in more than one run, kept once


def _read_json(path: str) -> Any:
    with open_regular(path) as handle:
        return json.loads(handle.read().decode("utf-8"))


def checked_results(run_dir: str) -> tuple[dict[str, Any], list[dict[str, Any]], str, str]:
    """(manifest, final records, manifest SHA-256, results SHA-256) of a run folder, after checking that its
    ``results.jsonl`` is the one its manifest recorded."""
    manifest_path = os.path.join(run_dir, MANIFEST_NAME)
    results_path = os.path.join(run_dir, "results.jsonl")
    for path in (manifest_path, results_path):
        if not os.path.isfile(path):
            raise CamidError(f"{run_dir}: not a finished camid run folder ({os.path.basename(path)} is missing)")
    # the run folder's own check (where it lies now; manifest.sha256 too), as the report and verify make it
    check = check_files(run_dir, ["results.jsonl"])
    if check.problems:
        raise CamidError(f"{results_path}: is not the one its manifest recorded: " + "; ".join(check.problems)
                         + f" (camid verify {run_dir})")
    # a record that contradicts its own scores (a decision forged where no manifest can tell) is no calibration data
    forged = inconsistent_records(results_path)
    if forged:
        raise CamidError(f"{results_path}: {len(forged)} record(s) contradict their own scores: "
                         + "; ".join(forged[:3]) + f" (camid verify {run_dir})")
    manifest = _read_json(manifest_path)
    if manifest.get("interrupted"):  # a part of a run: its pairs are not the run's
        raise CamidError(f"{run_dir}: the run was interrupted ({manifest['interrupted']}) and is not finished: "
                         f"resume it before calibrating on it")
    results_sha = sha256_file(results_path)
    with open_regular(results_path) as handle:
        records = [json.loads(line) for line in handle.read().decode("utf-8").splitlines() if line.strip()]
    return manifest, final_view(records), sha256_file(manifest_path), results_sha


def _models(manifest: dict[str, Any], records: list[dict[str, Any]],
            given: Optional[dict[str, str]]) -> tuple[dict[str, str], str]:
    """camera name -> model, and where the models came from."""
    if given is not None:
        return dict(given), "--models"
    dataset = manifest.get("dataset")
    truth_file = os.path.join(dataset, "ground_truth.json") if isinstance(dataset, str) else None
    if truth_file and os.path.isfile(truth_file):
        try:
            truth = _read_json(truth_file)
            if truth.get("format") == "camid-synth":
                return {c["name"]: c["model"] for c in truth["cameras"]}, f"{truth_file} (camid-synth ground truth)"
        except (OSError, ValueError, KeyError, TypeError):
            pass
    votes: dict[str, Counter] = {}
    for r in records:
        exif = r.get("exif") or {}
        if truth_of(r) and exif.get("make") and exif.get("model"):
            votes.setdefault(r["truth"], Counter())[f"{exif['make']} {exif['model']}"] += 1
    return {cam: v.most_common(1)[0][0] for cam, v in votes.items()}, "EXIF make and model of each camera's images"


def _population(image_cam: str, cam: str, models: dict[str, str]) -> str:
    if cam == image_cam:
        return SAME_SOURCE
    if image_cam not in models or cam not in models:
        return MODEL_UNKNOWN
    return SAME_MODEL if models[image_cam] == models[cam] else OTHER_MODEL


def _clip_of(params: dict[str, Any]) -> Any:
    clip = params.get("pce_clip")
    return list(clip) if clip else None


def read_pairs(run_dirs: Sequence[str], models: Optional[dict[str, str]] = None) -> RunPairs:
    """Every scored pair with known truth of the runs (see the module docstring)."""
    out = RunPairs([], {}, [], [], 0)
    seen: set[tuple[str, str, str]] = set()
    clips: dict[str, Any] = {}
    for run_dir in run_dirs:
        manifest, records, manifest_sha, results_sha = checked_results(run_dir)
        params = manifest.get("params") if isinstance(manifest.get("params"), dict) else {}
        clips[run_dir] = _clip_of(params)
        known = [r for r in records if not is_error(r) and truth_of(r) and isinstance(r.get("pce"), dict)]
        if not known:
            raise CamidError(f"{run_dir}: no record with a known camera and a PCE result (calibrate from "
                             f"'camid evaluate' runs, whose images' cameras are known)")
        cam_models, source = _models(manifest, known, models)
        home = str(manifest.get("dataset") or os.path.abspath(run_dir))
        count = 0
        for r in known:
            out.conditions.setdefault(r["sha256"], conditions_of(r))
            for cam, score in r["pce"].get("scores", {}).items():
                value = score_of(score.get("log10_p_fa"))
                if score.get("pce") is None or value is None:
                    continue
                key = (r["sha256"], f"{home}::{r['truth']}", f"{home}::{cam}")
                if key in seen:
                    out.duplicates += 1
                    continue
                seen.add(key)
                count += 1
                out.pairs.append(Pair(image=r.get("realpath") or r["path"], sha256=r["sha256"],
                                      image_camera=key[1], camera=key[2], kind=str(r["kind"]),
                                      pce=float(score["pce"]), score=value,
                                      population=_population(r["truth"], cam, cam_models),
                                      condition=pair_condition(r, score, params)))
        out.runs.append({"run_dir": os.path.abspath(run_dir), "command": manifest.get("command"),
                         "dataset": manifest.get("dataset"), "manifest_sha256": manifest_sha,
                         "results_sha256": results_sha, "images_with_truth": len(known), "pairs": count,
                         "pce_params": {k: params.get(k) for k in ("pce_clip", "sigma_query", "sigma_fingerprint",
                                                                    "shift_range", "search_scales", "rotations")},
                         "models_from": source})
        out.models_from.append(source)
    if len({str(c) for c in clips.values()}) > 1:
        raise CamidError("these runs compared different PCE clips, which the score does not make comparable (a "
                         "true pair's PCE grows with the pixels compared): " + "; ".join(
                             f"{d}: {'x'.join(map(str, c)) if c else 'full frame'}" for d, c in clips.items())
                         + "; calibrate each clip apart")
    return out

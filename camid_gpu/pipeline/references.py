"""How many references a camera has, and references stored turned by a quarter turn (issue 18, items 1 and 4).

By default every usable reference is used (``--refs all``); a count asked for is checked against the files
listed before any is decoded, and every refusal names the fix. Under ``RECOMMENDED_REFERENCES`` the fingerprint
is built with a warning that says what fewer references cost.

A reference folder may hold frames of both orientations (a camera held upright for some flats). The sensor's
orientation is the one most references have (the first file's on a tie); a reference turned by 90 or 270
degrees is turned back and used. Which way to turn it back is not in the pixels' shape: it is decided by
correlating its noise residual, turned each way, with the fingerprint of the references already in the
sensor's orientation; the way whose correlation is significant (NCC^2 x pixels above the PCE threshold, the
PCE's own scale) wins, and the record of the reference says ``turned_back_degrees``. A reference for which
neither way is significant is left out, with the reason.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import Backend
from camid_gpu.config import GRAY_WEIGHTS, MIN_REFERENCES, RECOMMENDED_REFERENCES, Params
from camid_gpu.pipeline.records import error_record
from camid_gpu.prnu.fingerprint import FingerprintAccumulator
from camid_gpu.prnu.residual import extract_residual


def count_problem(camera: str, found: int, wanted: int | None, where: str = "listed") -> dict[str, Any] | None:
    """The error entry of a camera with fewer reference files than ``--refs`` asks for (or than the fewest a
    fingerprint may be built from), naming the fix; None when there are enough."""
    if wanted is not None and found < wanted:
        return error_record(camera, "too-few-references",
                            f"camera {camera!r} has {found} {where} reference images, {wanted} required (--refs "
                            f"{wanted}); pass --refs all to use every usable one"
                            f"{f' (or --refs {found})' if found >= MIN_REFERENCES else ''}, or add flat references "
                            f"to its folder")
    if found < MIN_REFERENCES:
        return error_record(camera, "too-few-references",
                            f"camera {camera!r} has {found} {where} reference image(s); at least {MIN_REFERENCES} are "
                            f"needed (config.MIN_REFERENCES) and {RECOMMENDED_REFERENCES} recommended: add flat "
                            f"references to its folder")
    return None


def too_small(camera: str, source_shape: tuple[int, int], params: Params,
              methods: Sequence[str]) -> dict[str, Any] | None:
    """The error entry of a camera whose references (all of the first one's size) are smaller than some method's
    clipping, or None."""
    for method in methods:
        clip = params.clip_of(method)
        if clip is not None and (source_shape[0] < clip[0] or source_shape[1] < clip[1]):
            return error_record(camera, "too-small",
                                f"camera {camera!r}: references are {source_shape[0]}x{source_shape[1]}, smaller "
                                f"than the {method} method's {clip[0]}x{clip[1]} clipping (--{method}-clip)")
    return None


def few_references_warning(counts: dict[str, int]) -> str | None:
    """One warning naming the cameras (camera -> references used) whose fingerprints were built from fewer than
    the recommended references, or None."""
    few = {camera: n for camera, n in counts.items() if n < RECOMMENDED_REFERENCES}
    if not few:
        return None
    named = ", ".join(f"{camera!r} ({n})" for camera, n in sorted(few.items()))
    return (f"fingerprint(s) built from fewer than the {RECOMMENDED_REFERENCES} recommended references: {named}. "
            f"Fewer references leave more estimation noise in a fingerprint (it falls roughly as 1/N), so genuine "
            f"images score a lower PCE and more of them may fall under the threshold; add flat references and "
            f"rebuild (camid fingerprint --overwrite)")


def is_turned(shape: tuple[int, int], sensor: tuple[int, int], layout: tuple[int, ...],
              sensor_layout: tuple[int, ...]) -> bool:
    """Whether a reference of ``shape`` (rows, columns) is the sensor frame turned by a quarter turn."""
    return (sensor[0] != sensor[1] and tuple(shape) == tuple(sensor[::-1])
            and tuple(layout[:2][::-1]) + tuple(layout[2:]) == tuple(sensor_layout))


def settle_orientation(camera: str, upright: list, turned: list, bk: Backend, params: Params,
                       notes: dict[str, dict[str, Any]]) -> tuple[list, list[dict[str, Any]]]:
    """(the references as (pixels, info) in the sensor's orientation, turned-back ones last; error entries).

    ``upright`` and ``turned``: lists of (pixels, info) in the first reference's orientation and turned from
    it. The larger list is the sensor's orientation. ``notes[path]["turned_back_degrees"]`` records each turn
    (counter-clockwise) for the fingerprint's reference entries."""
    if len(turned) > len(upright):
        upright, turned = turned, upright
    if len(upright) < MIN_REFERENCES:
        return upright, [_left_out(info, f"the camera has fewer than {MIN_REFERENCES} references in the sensor's "
                                         f"orientation to decide which way to turn it back") for _, info in turned]
    acc = FingerprintAccumulator(params.sigma_fingerprint, params.levels, params.wavelet, bk)
    for start in range(0, len(upright), 4):
        acc.add(_host_stack(bk, [p for p, _ in upright[start:start + 4]]))
    k = acc.fingerprint().astype(np.float64)
    back, errors = [], []
    for pixels, info in turned:
        host = _host(bk, pixels)
        residual = extract_residual(host[None], params.sigma_fingerprint, params.levels, params.wavelet, bk)[0]
        gray = _gray(host)
        scores = {quarter * 90: _significance(np.rot90(residual, quarter), np.rot90(gray, quarter) * k)
                  for quarter in (1, 3)}
        degrees = max(scores, key=scores.get)
        if scores[degrees] > params.pce_threshold and scores[degrees] > 4 * max(scores[360 - degrees], 0.0):
            back.append((np.ascontiguousarray(np.rot90(host, degrees // 90)), info))
            notes.setdefault(info.path, {})["turned_back_degrees"] = degrees
        else:
            errors.append(_left_out(info, f"neither way of turning it back correlates with the fingerprint of the "
                                          f"{len(upright)} references in the sensor's orientation (NCC^2 x pixels "
                                          f"{scores[90]:.1f} at 90, {scores[270]:.1f} at 270 degrees; threshold "
                                          f"{params.pce_threshold:g})"))
    return upright + back, errors


def _left_out(info: Any, why: str) -> dict[str, Any]:
    return error_record(info.path, "turned-reference",
                        f"{info.height}x{info.width}: turned by a quarter turn from the camera's other references, "
                        f"and {why}; left out")


def _significance(residual: np.ndarray, template: np.ndarray) -> float:
    """NCC^2 x pixels of a residual with the template I*K (about the PCE of an unshifted peak)."""
    a = residual - residual.mean()
    b = template - template.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    ncc = float((a * b).sum()) / denom if denom > 0 else 0.0
    return float(np.sign(ncc) * ncc * ncc * a.size)


def _host(bk: Backend, pixels: Any) -> np.ndarray:
    return pixels if isinstance(pixels, np.ndarray) else np.asarray(bk.to_numpy(pixels))


def _host_stack(bk: Backend, arrays: Sequence[Any]) -> np.ndarray:
    return np.stack([_host(bk, a) for a in arrays])


def _gray(pixels: np.ndarray) -> np.ndarray:
    x = pixels.astype(np.float64) * (255.0 / 65535.0 if pixels.dtype == np.uint16 else 1.0)
    return x @ np.asarray(GRAY_WEIGHTS) if x.ndim == 3 else x

"""Membership, association and :class:`MahalanobisResult` of method 2, with its diagnostics.

The method and its notation: see :mod:`camid_gpu.mahalanobis`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from camid_gpu._shared.jsonio import json_float
from camid_gpu.config import is_finite_number
from camid_gpu.mahalanobis.constants import MODES
from camid_gpu.mahalanobis.statistics import PairStatistics


# ---------------------------------------------------------------------------------------------
# membership and association
# ---------------------------------------------------------------------------------------------
def wins(satisfied: np.ndarray, unsatisfied: np.ndarray) -> np.ndarray:
    """(D, C) int64: for each claimed camera q, the cameras j != q that q beats (satisfied > unsatisfied)."""
    satisfied, unsatisfied = np.asarray(satisfied), np.asarray(unsatisfied)
    if satisfied.ndim != 3 or satisfied.shape[1] != satisfied.shape[2] or satisfied.shape != unsatisfied.shape:
        raise ValueError(f"satisfied/unsatisfied: expected two (D, C, C) arrays, got {satisfied.shape} and "
                         f"{unsatisfied.shape}")
    beats = satisfied > unsatisfied
    n_cameras = satisfied.shape[1]
    beats[:, np.arange(n_cameras), np.arange(n_cameras)] = False
    return beats.sum(-1).astype(np.int64)


def membership(satisfied: np.ndarray, unsatisfied: np.ndarray) -> np.ndarray:
    """Membership (D, C) float64 in percent: ``100 * wins / (C - 1)``; NaN when C = 1 (no competitor)."""
    won = wins(satisfied, unsatisfied)
    n_cameras = won.shape[1]
    if n_cameras == 1:
        return np.full(won.shape, np.nan)
    return 100.0 * won / (n_cameras - 1)


def associate(won: np.ndarray, camera_names: Sequence[str]) -> list[tuple[str, ...]]:
    """For each image the camera(s) of highest membership, ties kept in camera order; () when C = 1."""
    won = np.asarray(won)
    if won.ndim != 2 or won.shape[1] != len(camera_names):
        raise ValueError(f"wins: expected (D, {len(camera_names)}), got shape {won.shape}")
    if won.shape[1] < 2:
        return [() for _ in range(won.shape[0])]
    return [tuple(camera_names[k] for k in np.flatnonzero(row == row.max())) for row in won]


def summarise_diagnostics(per_image: Sequence[Any]) -> dict[str, Any]:
    """Mean over images of :meth:`MahalanobisResult.diagnostics` (one dict per image, as in the records).

    Images with no counted pair (``closer_fraction`` None) or a malformed entry are left out; each mean is
    over the images where that value is a finite number. Returns ``{"images": 0}`` when none is left, else
    ``images``, ``closer_fraction`` (full, intensity, prnu), ``vote_agreement_with_full`` (intensity,
    prnu) and ``driver_counts`` (images per driver, by name). Used by the evaluation and the report.
    """
    usable = [d for d in per_image if isinstance(d, dict) and isinstance(d.get("closer_fraction"), dict)
              and isinstance(d.get("vote_agreement"), dict)]
    if not usable:
        return {"images": 0}

    def mean(key: str, component: str) -> float | None:
        values = [v for d in usable if is_finite_number(v := d[key].get(component))]
        return float(np.mean(values)) if values else None

    drivers = [str(d.get("driver")) for d in usable]
    return {"images": len(usable),
            "closer_fraction": {c: mean("closer_fraction", c) for c in ("full", "intensity", "prnu")},
            "vote_agreement_with_full": {c: mean("vote_agreement", c) for c in ("intensity", "prnu")},
            "driver_counts": {k: drivers.count(k) for k in sorted(set(drivers))}}


@dataclass(frozen=True, eq=False)
class MahalanobisResult(PairStatistics):
    """Outcome of method 2 for D disputed images and C cameras, shaped for the paper's tables.

    The arrays are those of :class:`PairStatistics` (NumPy, indexed ``[d, q, j]`` with q the claimed
    camera and j the compared camera), named here by ``camera_names`` and ``image_names``. Derived:
    ``unsatisfied``, ``wins`` (D, C), ``membership`` (D, C) percent (Table 5; a row is Table 4),
    ``associations`` (per image a tuple of camera names; more than one name is a tie), :meth:`pairwise`
    (Tables 2-3), :meth:`effectiveness` (Tables 7-12, needs ``true_cameras``), :meth:`diagnostics`,
    :meth:`to_dict`.
    """

    camera_names: tuple[str, ...]
    image_names: tuple[str, ...]
    mode: str
    true_cameras: tuple[str | None, ...] | None = None
    n_sigma: float | None = None
    scan_order: str | None = None

    @classmethod
    def from_statistics(cls, stats: PairStatistics, *, mode: str, camera_names: Sequence[str] | None = None,
                        image_names: Sequence[str] | None = None,
                        true_cameras: Sequence[str | None] | None = None, n_sigma: float | None = None,
                        scan_order: str | None = None) -> "MahalanobisResult":
        n_images, n_cameras = stats.selected.shape
        cams = _names(camera_names, n_cameras, "camera_names", "C")
        images = _names(image_names, n_images, "image_names", "D")
        truth = None
        if true_cameras is not None:
            truth = tuple(true_cameras)
            if len(truth) != n_images:
                raise ValueError(f"true_cameras: expected {n_images} entries (one per image), got {len(truth)}")
            unknown = sorted({t for t in truth if t is not None and t not in cams})
            if unknown:
                raise ValueError(f"true_cameras: {unknown} are not among the cameras {list(cams)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return cls(**stats.arrays(), camera_names=cams, image_names=images, mode=mode, true_cameras=truth,
                   n_sigma=n_sigma, scan_order=scan_order)

    # derived -----------------------------------------------------------------------------------
    @property
    def wins(self) -> np.ndarray:
        return wins(self.satisfied, self.unsatisfied)

    @property
    def membership(self) -> np.ndarray:
        return membership(self.satisfied, self.unsatisfied)

    @property
    def associations(self) -> list[tuple[str, ...]]:
        return associate(self.wins, self.camera_names)

    def _image_index(self, image: int | str) -> int:
        if isinstance(image, str):
            return self.image_names.index(image)
        return int(image)

    def pairwise(self, image: int | str) -> np.ndarray:
        """(C, C, 2) int64 ``[q, j] -> (satisfied, unsatisfied)`` for one image (Tables 2-3)."""
        d = self._image_index(image)
        return np.stack([self.satisfied[d], self.unsatisfied[d]], -1)

    def membership_of(self, image: int | str) -> dict[str, float]:
        """Membership of one image to every camera, percent (Table 4)."""
        d = self._image_index(image)
        return dict(zip(self.camera_names, (float(x) for x in self.membership[d])))

    def effectiveness(self) -> dict[str, dict[str, Any]]:
        """Per camera (Tables 7-12): its disputed images, their membership to every camera, the mean
        membership, and the effectiveness rate = fraction associated with that camera ALONE (a tie
        does not count as effective). Needs ``true_cameras``.
        """
        if self.true_cameras is None:
            raise ValueError("effectiveness needs true_cameras (the camera that really took each image)")
        member, assoc = self.membership, self.associations
        out: dict[str, dict[str, Any]] = {}
        for cam in self.camera_names:
            rows = [d for d, t in enumerate(self.true_cameras) if t == cam]
            effective = sum(1 for d in rows if assoc[d] == (cam,))
            out[cam] = {
                "images": [self.image_names[d] for d in rows],
                "membership": {self.image_names[d]: dict(zip(self.camera_names, map(float, member[d])))
                               for d in rows},
                "mean_membership": (dict(zip(self.camera_names, map(float, member[rows].mean(0))))
                                    if rows else {}),
                "effective": effective,
                "rate": effective / len(rows) if rows else math.nan,
            }
        return out

    def diagnostics(self) -> dict[str, Any]:
        """What drove the votes, over all pairs (d, q, j != q) with at least one pixel.

        ``closer_fraction``: mean fraction of pixels where q is closer-or-equal, by the full
        distance, by I0 alone and by PRNU alone (0.5 = a coin flip). ``vote_agreement``: how often
        the one-component vote (closer on more than half the pixels) equals the full vote.
        ``margin``: mean |fraction - 0.5|. ``driver``: the component whose votes agree more.
        """
        n_cameras = len(self.camera_names)
        off = ~np.eye(n_cameras, dtype=bool)[None] & (self.pixels > 0)
        pairs = int(off.sum())
        out: dict[str, Any] = {"pairs": pairs}
        if pairs == 0:
            out.update(closer_fraction=None, vote_agreement=None, margin=None, driver="undetermined")
            return out
        total = self.pixels[off].astype(np.float64)
        fractions = {"full": self.satisfied[off] / total, "intensity": self.intensity_satisfied[off] / total,
                     "prnu": self.prnu_satisfied[off] / total}
        votes = {k: 2 * getattr(self, a)[off] > self.pixels[off] for k, a in
                 (("full", "satisfied"), ("intensity", "intensity_satisfied"), ("prnu", "prnu_satisfied"))}
        agreement = {k: float(np.mean(votes[k] == votes["full"])) for k in ("intensity", "prnu")}
        out["closer_fraction"] = {k: float(v.mean()) for k, v in fractions.items()}
        out["margin"] = {k: float(np.abs(v - 0.5).mean()) for k, v in fractions.items()}
        out["vote_agreement"] = agreement
        if agreement["intensity"] > agreement["prnu"]:
            out["driver"] = "intensity"
        elif agreement["prnu"] > agreement["intensity"]:
            out["driver"] = "prnu"
        else:
            out["driver"] = "undetermined"
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN -> None): per image the membership, association, tie flag,
        pairwise counts with per-component closer fractions, pixels used and covariances; the
        membership matrix; effectiveness (when true cameras are known); diagnostics.
        """
        cams = self.camera_names
        member, assoc, unsat = self.membership, self.associations, self.unsatisfied
        images = []
        for d, name in enumerate(self.image_names):
            pairwise = {}
            for q, cq in enumerate(cams):
                row = {}
                for j, cj in enumerate(cams):
                    n = int(self.pixels[d, q, j])
                    row[cj] = {
                        "satisfied": int(self.satisfied[d, q, j]),
                        "unsatisfied": int(unsat[d, q, j]),
                        "pixels": n,
                        "intensity_closer_fraction": self.intensity_satisfied[d, q, j] / n if n else None,
                        "prnu_closer_fraction": self.prnu_satisfied[d, q, j] / n if n else None,
                    }
                pairwise[cq] = row
            images.append({
                "image": name,
                "true_camera": None if self.true_cameras is None else self.true_cameras[d],
                "membership": {c: json_float(m) for c, m in zip(cams, member[d])},
                "associated": list(assoc[d]),
                "tie": len(assoc[d]) > 1,
                "selected_pixels": {c: int(s) for c, s in zip(cams, self.selected[d])},
                "valid": {c: bool(v) for c, v in zip(cams, self.valid[d])},
                "covariance": {c: [[json_float(x) for x in r] for r in self.covariance[d, j]]
                               for j, c in enumerate(cams)},
                "pairwise": pairwise,
            })
        out: dict[str, Any] = {
            "method": "mahalanobis-2dof",
            "mode": self.mode,
            "selection_sigmas": self.n_sigma,
            "scan_order": self.scan_order,
            "cameras": list(cams),
            "images": images,
            "membership_matrix": [[json_float(m) for m in row] for row in member],
            "effectiveness": None,
            "diagnostics": self.diagnostics(),
            "note": ("membership is undefined with a single camera (no competitor)" if len(cams) == 1 else None),
        }
        if self.true_cameras is not None:
            eff = self.effectiveness()
            for cam in eff:
                eff[cam]["rate"] = json_float(eff[cam]["rate"])
                eff[cam]["membership"] = {i: {c: json_float(m) for c, m in row.items()}
                                          for i, row in eff[cam]["membership"].items()}
                eff[cam]["mean_membership"] = {c: json_float(m) for c, m in eff[cam]["mean_membership"].items()}
            out["effectiveness"] = eff
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)


def _names(names: Sequence[str] | None, count: int, what: str, letter: str) -> tuple[str, ...]:
    if names is None:
        width = max(2, len(str(count)))
        return tuple(f"{letter}{k + 1:0{width}d}" for k in range(count))
    names = tuple(str(n) for n in names)
    if len(names) != count:
        raise ValueError(f"{what}: expected {count} names, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: names must be unique, got {list(names)}")
    return names

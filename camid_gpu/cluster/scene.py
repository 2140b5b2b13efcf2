"""Same-scene guard: pairs of images that show the same scene are not evidence of a shared camera.

Why: the Wiener-filtered residual is not only sensor noise. The denoiser leaves part of the scene in it (fine
texture, edges, curvature, JPEG block errors of the content), and two images of one scene share that part exactly,
whatever camera took them. Rendered through four different synthetic cameras (no shared PRNU), one textured
natural scene gives residual NCCs of z ~ 200 at 256x256 (~ 550 at 1024x1024); a smooth scene with little noise and
no PRNU up to z ~ 120 (``README.md``, Clustering). No threshold on the residual NCC, and no zero-shift PCE, tells
that from a shared PRNU: both are correlations aligned at zero shift. The images themselves do: two images of one
scene look alike, two images of different scenes do not, whichever cameras took them.

The descriptor of a compared clip (:func:`scene_rows`): its gray level (0..255) averaged over blocks of
``b x b`` pixels (noise, PRNU and JPEG blocking average out; ``b`` grows with the clip so that a descriptor
has at most :data:`SCENE_MAX_VALUES` values), band-passed by subtracting a Gaussian blur of
:data:`SCENE_BLUR_BLOCKS` blocks (illumination gradients and vignetting, which cameras of one model share,
are taken out), less a border of :data:`SCENE_TRIM_BLOCKS` blocks (where the blur's padding would leave a
pattern that all smooth frames share). Two images are a *same-scene pair* when the NCC of their descriptors
(best rotation candidates, as for the residuals) is at least :data:`~camid_gpu.config.CLUSTER_SAME_SCENE_NCC`
and both descriptors have an RMS of at least :data:`~camid_gpu.config.CLUSTER_SCENE_MIN_CONTRAST` gray levels
(a flat field has next to no band-passed content: what is left there is averaged PRNU, fixed pattern and
noise, which cameras share or not; it must never be read as a scene).

What the guard does (it only ever removes links, so ``--pfa`` holds as before): a same-scene pair is not a
candidate pair (no link, similarity 0 in the average linkage, as an unconfirmed pair), and the refinement never
merges two clusters, nor attaches an image to a cluster, across a same-scene pair. The pairs are listed in
``clusters.json`` (``same_scene`` per group) and left out of the observed null spread. The cost: burst shots of
one static scene by one camera do not link with each other; they join their camera's cluster only through images
of other scenes.

Descriptors are stored per group in ``RUN/scene/<group>.f32`` at the residual row indices (written by
position, so a resumed run overwrites what an interrupted one left). Images added to a run folder before the
guard existed have none: they are listed as ``unchecked`` and never blocked (``checked: false``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from camid_gpu._shared.files import writing
from camid_gpu.cluster.linkage import image_similarity
from camid_gpu.config import CLUSTER_DUPLICATE_NCC, CLUSTER_SAME_SCENE_NCC, CLUSTER_SCENE_MIN_CONTRAST, GRAY_WEIGHTS

#: most values of one descriptor (the block side grows with the clip to keep under it: 64 x 64 blocks, so that
#: the descriptors of 10 000 images take 160 MB and their Gram 4e11 multiply-adds)
SCENE_MAX_VALUES = 4096
#: smallest block side of the descriptor, pixels
SCENE_MIN_BLOCK = 8
#: Gaussian blur subtracted from the block means (band-pass), in blocks
SCENE_BLUR_BLOCKS = 3.0
#: blocks dropped at each border after the band-pass (two blur sigmas)
SCENE_TRIM_BLOCKS = 6
#: folder of the descriptor stores in a run folder
SCENE_DIR = "scene"
#: the residual's gray weights
_GRAY = np.array(GRAY_WEIGHTS)


def scene_block(shape: Sequence[int]) -> int:
    """Block side of the descriptor of a clip of ``shape`` (h, w[, c]): SCENE_MIN_BLOCK (smaller for clips of
    under 32 blocks on the short side, down to 1), and large enough that the descriptor has at most
    SCENE_MAX_VALUES values."""
    h, w = int(shape[0]), int(shape[1])
    small = max(1, min(SCENE_MIN_BLOCK, min(h, w) // 32))
    return max(small, math.ceil(math.sqrt(h * w / SCENE_MAX_VALUES)))


def scene_shape(shape: Sequence[int]) -> tuple[int, int]:
    """Shape (rows, columns) of the descriptor of a clip of ``shape``: its blocks less a border of
    SCENE_TRIM_BLOCKS on each side (where the blur's mirror padding would leave a pattern every smooth frame
    shares); at least 1 x 1."""
    b = scene_block(shape)
    return (max(int(shape[0]) // b - 2 * SCENE_TRIM_BLOCKS, 1), max(int(shape[1]) // b - 2 * SCENE_TRIM_BLOCKS, 1))


def scene_rows(clips: Sequence[np.ndarray]) -> np.ndarray:
    """Band-passed block-mean gray descriptors ``(m, rows * columns)`` float32 (gray levels, 0..255 scale)
    of clips of one shape (uint8, uint16 or float on 0..255)."""
    out = []
    for clip in clips:
        x = np.asarray(clip, dtype=np.float64)
        if clip.dtype == np.uint16:
            x = x * (255.0 / 65535.0)
        gray = x @ _GRAY if x.ndim == 3 and x.shape[2] == 3 else (x.mean(axis=2) if x.ndim == 3 else x)
        b = scene_block(clip.shape)
        rows, cols = scene_shape(clip.shape)
        full_rows, full_cols = gray.shape[0] // b, gray.shape[1] // b
        if min(full_rows, full_cols) <= 2 * SCENE_TRIM_BLOCKS:  # too small to band-pass: no content compared
            out.append(np.zeros(rows * cols, np.float32))
            continue
        means = gray[:full_rows * b, :full_cols * b].reshape(full_rows, b, full_cols, b).mean(axis=(1, 3))
        band = means - ndimage.gaussian_filter(means, SCENE_BLUR_BLOCKS, mode="reflect")
        t = SCENE_TRIM_BLOCKS
        out.append(band[t:-t, t:-t].astype(np.float32).ravel())
    return np.stack(out)


class SceneStore:
    """Descriptors of one group, float32, at the residual row indices (``RUN/scene/<group>.f32``)."""

    def __init__(self, run_dir: str, group: str, values: int):
        self.path = os.path.join(run_dir, SCENE_DIR, f"{group}.f32")
        self.values = int(values)

    def write(self, rows: Sequence[int], descriptors: np.ndarray) -> None:
        """Descriptors of residual rows ``rows`` (written by position, durable before the row is recorded). Rows
        between the file's end and the first one written (a run folder made before the guard, resumed) are
        filled with NaN: no descriptor, never read as one."""
        d = np.ascontiguousarray(descriptors, dtype=np.float32)
        if d.shape != (len(rows), self.values):
            raise ValueError(f"{self.path}: descriptors of shape {d.shape}, expected ({len(rows)}, {self.values})")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        row_bytes = self.values * 4
        with writing(self.path), open(self.path, "r+b" if os.path.exists(self.path) else "w+b") as handle:
            end = handle.seek(0, os.SEEK_END) // row_bytes
            gap = min(rows) - end if len(rows) else 0
            if gap > 0:
                handle.seek(end * row_bytes)
                handle.write(np.full((gap, self.values), np.nan, np.float32).tobytes())
            for row, values in zip(rows, d):
                handle.seek(int(row) * row_bytes)
                handle.write(values.tobytes())
            handle.flush()
            os.fsync(handle.fileno())

    def read(self, count: int) -> np.ndarray:
        """Rows ``[0, count)``; NaN for rows the store lacks (a run folder written before the guard)."""
        out = np.full((count, self.values), np.nan, np.float32)
        if os.path.exists(self.path):
            have = min(count, os.path.getsize(self.path) // (self.values * 4))
            out[:have] = np.fromfile(self.path, dtype=np.float32, count=have * self.values).reshape(have, self.values)
        return out


def store_scene(run_dir: str, group: str, rows: Sequence[int], clips: Sequence[np.ndarray]) -> None:
    """Compute and store the descriptors of one image's rotation candidates ``clips`` at its rows ``rows``."""
    SceneStore(run_dir, group, int(np.prod(scene_shape(clips[0].shape)))).write(rows, scene_rows(clips))


@dataclass
class SceneGuard:
    """Same-scene pairs of one group: ``blocked[i, j]`` (images ``i``, ``j``), the descriptor NCC and RMS, and the
    images without a descriptor (``unchecked``: added to the run before the guard existed; never blocked)."""

    blocked: np.ndarray
    ncc: np.ndarray | None
    contrast: np.ndarray | None
    unchecked: list[int] = field(default_factory=list)
    #: pairs whose residuals correlate at NCC >= CLUSTER_DUPLICATE_NCC: one photo (a re-encode in another
    #: container), blocked like a same-scene pair (their link would be one image's evidence) and listed apart
    duplicate: np.ndarray | None = None

    def add_duplicates(self, residual_sim: np.ndarray) -> None:
        """Block the pairs whose residual NCC (``residual_sim``, images x images) says they are one photo."""
        duplicate = np.asarray(residual_sim) >= CLUSTER_DUPLICATE_NCC
        np.fill_diagonal(duplicate, False)
        self.duplicate = duplicate
        self.blocked = self.blocked | duplicate

    def duplicate_pairs(self) -> list[tuple[int, int]]:
        if self.duplicate is None:
            return []
        return [(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(self.duplicate, 1)))]

    @property
    def checked(self) -> bool:
        return not self.unchecked

    def pairs(self) -> list[tuple[int, int]]:
        """The same-scene pairs (the near-duplicates, :meth:`duplicate_pairs`, apart)."""
        scene = self.blocked if self.duplicate is None else self.blocked & ~self.duplicate
        return [(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(scene, 1)))]

    def to_json(self, records: Sequence[dict[str, Any]], residual_sim: np.ndarray) -> dict[str, Any]:
        """What ``clusters.json`` says of the guard in one group (paths, the descriptor NCC, the residual NCC
        the pair would have been judged on; the images it could not check)."""
        pairs = [{"a": records[i]["path"], "b": records[j]["path"], "scene_ncc": round(float(self.ncc[i, j]), 6),
                  "residual_ncc": round(float(residual_sim[i, j]), 6)} for i, j in self.pairs()]
        duplicates = [{"a": records[i]["path"], "b": records[j]["path"], "residual_ncc": round(float(residual_sim[i, j]), 6)}
                      for i, j in self.duplicate_pairs()]
        return {"checked": self.checked, "unchecked": [records[i]["path"] for i in self.unchecked],
                "min_scene_ncc": CLUSTER_SAME_SCENE_NCC, "min_contrast": CLUSTER_SCENE_MIN_CONTRAST, "pairs": pairs,
                "min_duplicate_ncc": CLUSTER_DUPLICATE_NCC, "near_duplicates": duplicates}

    def null_values(self, sim: np.ndarray) -> np.ndarray:
        """The upper-triangle values of ``sim`` over the pairs that are not same-scene: the sample the null
        spread is estimated from (a burst's shifted frames correlate at z down to -20 through their scene, and
        would widen it)."""
        iu = np.triu_indices(sim.shape[0], 1)
        return np.asarray(sim)[iu][~self.blocked[iu]]

    def touches(self, a: Sequence[int], b: Sequence[int]) -> bool:
        """True when an image of ``a`` and one of ``b`` are a same-scene pair."""
        return bool(a) and bool(b) and bool(self.blocked[np.ix_(list(a), list(b))].any())


def scene_guard(descriptors: np.ndarray | None, rows: Sequence[Sequence[int]],
                min_ncc: float = CLUSTER_SAME_SCENE_NCC,
                min_contrast: float = CLUSTER_SCENE_MIN_CONTRAST) -> SceneGuard:
    """The same-scene pairs among images whose rotation candidates are the descriptor rows ``rows[i]``.

    ``descriptors``: every row's descriptor; rows of NaN (or None for all) have none: their images are
    ``unchecked`` and never blocked. A pair is blocked when its best descriptor NCC over the candidates'
    combinations is at least ``min_ncc`` and both images have a descriptor RMS of at least ``min_contrast``
    gray levels.
    """
    n = len(rows)
    if descriptors is None:
        return SceneGuard(np.zeros((n, n), dtype=bool), None, None, unchecked=list(range(n)))
    d = np.array(descriptors, dtype=np.float32)
    known = np.isfinite(d).all(axis=1)
    d[~known] = 0.0
    d -= d.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    rms = np.sqrt(np.einsum("ij,ij->i", d, d, dtype=np.float64) / d.shape[1])
    d /= np.where(rms > 0, rms * math.sqrt(d.shape[1]), 1.0).astype(np.float32)[:, None]
    ncc, _ = image_similarity(d @ d.T, rows)
    contrast = np.array([min(float(rms[r]) for r in rr) for rr in rows])
    unchecked = [i for i, rr in enumerate(rows) if not known[list(rr)].all()]
    textured = contrast >= min_contrast
    textured[unchecked] = False
    blocked = (ncc >= min_ncc) & textured[:, None] & textured[None, :]
    np.fill_diagonal(blocked, False)
    return SceneGuard(blocked, ncc, contrast, unchecked)


def group_scene_guard(run_dir: str, group: str, records: Sequence[dict[str, Any]], row_count: int) -> SceneGuard:
    """The same-scene guard of one group of a run folder: its images ``records`` (with their residual ``rows``
    and ``region``), over the group's ``row_count`` descriptor rows."""
    values = int(np.prod(scene_shape(records[0]["region"])))
    return scene_guard(SceneStore(run_dir, group, values).read(row_count), [r["rows"] for r in records])


def scene_lines(result: dict[str, Any], shown: int = 5) -> list[str]:
    """Console lines naming the same-scene pairs of a run (at most ``shown`` per group, then a count)."""
    from camid_gpu.io.listing import printable

    lines = []
    for g in result.get("groups", []):
        pairs = (g.get("same_scene") or {}).get("pairs", [])
        for p in pairs[:shown]:
            lines.append(f"note: same scene, not linked (a shared scene is not a shared sensor): {printable(p['a'])} "
                         f"and {printable(p['b'])} (scene NCC {p['scene_ncc']:.3f}, residual NCC "
                         f"{p['residual_ncc']:.4g})")
        if len(pairs) > shown:
            lines.append(f"note: {len(pairs) - shown} more same-scene pairs in group {g['name']} (clusters.json, "
                         f"same_scene)")
        for p in (g.get("same_scene") or {}).get("near_duplicates", []):
            lines.append(f"note: one photo twice (residual NCC {p['residual_ncc']:.4g}: a re-encode or another "
                         f"container), not linked: {printable(p['a'])} and {printable(p['b'])}")
    return lines

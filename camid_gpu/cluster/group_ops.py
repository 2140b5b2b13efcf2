"""A geometry group's view for the refinement (:func:`camid_gpu.cluster.linkage.refine`): ML fingerprints of
member sets (members re-decoded, SHA-256 checked, in batches sized from the run's memory budget), the rows of
an image, and the zero-shift PCE of row pairs."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from camid_gpu.backend import Backend
from camid_gpu.cluster.residuals import prepare_image
from camid_gpu.cluster.rows import RowStore
from camid_gpu.cluster.similarity import normalise_rows
from camid_gpu.cluster.video import is_video_record, video_member_clips
from camid_gpu.config import ClusterParams
from camid_gpu.engine.context import RunContext
from camid_gpu.engine.scheduler import ordered_map
from camid_gpu.errors import CamidError
from camid_gpu.prnu.fingerprint import FingerprintAccumulator
from camid_gpu.prnu.pce import crosscorr, pce


class GroupOps:
    """ML fingerprints of member sets (members re-decoded, SHA-256 checked) and rows of one group."""

    def __init__(self, records: list[dict[str, Any]], store: RowStore, params: ClusterParams, ctx: RunContext):
        self.records, self.store, self.params, self.ctx = records, store, params, ctx
        self.bk = ctx.backend
        self.shape = tuple(records[0]["region"])
        # member clips per accumulation step: within the budget for this group's region (a full frame with
        # --region full), as a camera fingerprint's references
        self.batch = ctx.fingerprint_batch(self.shape[0] * self.shape[1])

    def accumulate(self, members: Sequence[tuple[int, int]]) -> FingerprintAccumulator:
        p = self.params
        acc = FingerprintAccumulator(p.sigma, p.levels, p.wavelet, self.bk)
        videos = [(i, k) for i, k in members if is_video_record(self.records[i])]  # their frames are references
        members = [(i, k) for i, k in members if not is_video_record(self.records[i])]
        tasks = [(self.records[i]["path"], p.region, self.ctx.config.limits) for i, _ in members]
        batch: list[np.ndarray] = []
        for ((path, *_), result), (i, k) in zip(ordered_map(prepare_image, tasks, self.ctx.workers,
                                                           max(2 * self.ctx.workers, 2)), members):
            if isinstance(result, BaseException):
                raise CamidError(f"{path}: cannot be read again to build its cluster's fingerprint ({result})")
            if result.info.sha256 != self.records[i]["sha256"]:
                raise CamidError(f"{path}: the file changed during the run (SHA-256 {result.info.sha256[:16]}..., "
                                 f"was {self.records[i]['sha256'][:16]}...)")
            batch.append(result.clips[k])
            if len(batch) == self.batch:
                acc.add(np.stack(batch))
                batch = []
        if batch:
            acc.add(np.stack(batch))
        return self._add_videos(acc, videos)

    def _add_videos(self, acc: FingerprintAccumulator, videos: Sequence[tuple[int, int]]) -> FingerprintAccumulator:
        """Video members' frames (luma) as references, after the stills: repeated over the colour channels
        when the stills are colour (the gray of three equal channel estimates is the luma's estimate)."""
        batch: list[np.ndarray] = []
        for i, k in videos:
            for clip in video_member_clips(self.records[i], self.params, k, self.ctx):
                batch.append(np.repeat(clip[..., None], 3, -1) if acc.shape and len(acc.shape) == 3 else clip)
                if len(batch) == self.batch:
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

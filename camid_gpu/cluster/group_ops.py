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


def _nbytes(x: Any) -> int:
    return int(getattr(x, "nbytes", 0) or x.element_size() * x.nelement())


class MemberSums:
    """The ML sums of a cluster's members: held while the group's budget allows (:meth:`GroupOps.hold`), else
    let go and built again from the members when next needed. A 12 MP cluster's sums are ~0.6 GB (float64, three
    channels, two sums): holding every cluster's made the refinement's peak grow with the number of clusters."""

    def __init__(self, ops: "GroupOps", members: Sequence[tuple[int, int]], acc: FingerprintAccumulator | None):
        self.ops, self.members, self._acc = ops, list(members), acc

    @property
    def held(self) -> bool:
        return self._acc is not None

    def accumulator(self) -> FingerprintAccumulator:
        if self._acc is None:
            self._acc = self.ops.build(self.members)
            self.ops.hold(self)
        return self._acc

    def release(self) -> None:
        self._acc = None

    def nbytes(self) -> int:
        return 0 if self._acc is None or self._acc.count == 0 else _nbytes(self._acc._weighted) + _nbytes(self._acc._norm)

    def fingerprint(self) -> np.ndarray:
        return self.accumulator().fingerprint()


class GroupOps:
    """ML fingerprints of member sets (members re-decoded, SHA-256 checked) and rows of one group."""

    def __init__(self, records: list[dict[str, Any]], store: RowStore, params: ClusterParams, ctx: RunContext,
                 held: list[MemberSums] | None = None):
        self.records, self.store, self.params, self.ctx = records, store, params, ctx
        self.bk = ctx.backend
        self.shape = tuple(records[0]["region"])
        # member clips per accumulation step: within the budget for this group's region (a full frame with
        # --region full), as a camera fingerprint's references
        self.batch = ctx.fingerprint_batch(self.shape[0] * self.shape[1])
        # the sums held, oldest first: one list for every group of a run (each group's own held up to the budget,
        # and the groups' together grew with the number of frame sizes: 4.1 GB for five sizes at 12 MP)
        self._held: list[MemberSums] = [] if held is None else held
        # the sums held at once: a quarter of the budget (one building sums of a 12 MP cluster takes ~1.2 GB more)
        self.hold_budget = ctx.host_budget // 4

    def accumulate(self, members: Sequence[tuple[int, int]]) -> MemberSums:
        """The sums of ``members``, built now and held while the budget allows."""
        sums = MemberSums(self, members, self.build(members))
        self.hold(sums)
        return sums

    def hold(self, sums: MemberSums) -> None:
        """Hold ``sums``; let the oldest others go while the sums held exceed :attr:`hold_budget` (one at least)."""
        self._held[:] = [h for h in self._held if h.held and h is not sums] + [sums]  # in place: shared
        while len(self._held) > 1 and sum(h.nbytes() for h in self._held) > self.hold_budget:
            self._held.pop(0).release()

    def build(self, members: Sequence[tuple[int, int]]) -> FingerprintAccumulator:
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

    def absorb(self, into: MemberSums, other: MemberSums) -> MemberSums:
        """The sums of both member sets (the ML sums of disjoint sets add); the two given are let go."""
        merged = into.accumulator().merge(other.accumulator())
        into.release()
        other.release()
        sums = MemberSums(self, into.members + other.members, merged)
        self.hold(sums)
        return sums

    def fingerprint_row(self, sums: MemberSums) -> np.ndarray:
        return normalise_rows(sums.fingerprint().reshape(1, -1))[0]

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

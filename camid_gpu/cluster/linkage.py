"""Clusters from the pair similarities, then merging by cluster fingerprints until stable.

1. :func:`image_similarity`: the image-level NCC matrix from the row Gram (an image stored in portrait
   has two rows, its 90 and 270 degree turns; a pair scores the best of its combinations).
2. :func:`average_linkage`: average-linkage hierarchical clustering of the NCCs, cut at the pair
   threshold, where a pair above the NCC threshold that the PCE did not confirm counts as 0. Two groups
   join only while the average NCC between them stays above the threshold, so one false pair cannot
   chain two cameras together (at worst, when it is stronger than its image's true pairs, it takes that one
   image along; false pairs pass both thresholds at the rate the pair stage's share of --pfa sets).
3. :func:`refine`: each cluster's ML fingerprint (from its members' pixels, as ``fingerprint`` does)
   is compared with every other cluster's and with every unclustered image's residual; the best pair
   above the thresholds (NCC and zero-shift PCE) is merged or attached, its fingerprint updated (the ML
   sums add), and this repeats until nothing changes. Fingerprints average out scene content and random
   noise, so images whose single pairs are too weak to link are still found; singletons stay alone.
   These are the refinement stage's thresholds, not the pair stage's: its own share of --pfa over
   :func:`refine_comparisons`, an upper bound of the comparisons it can make, fixed before it starts.

A same-scene pair (:mod:`camid_gpu.cluster.scene`) is never a link, and the refinement never merges or
attaches across one (``guard``): the scene its images share would be read as a shared sensor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from camid_gpu.cluster.similarity import GramEngine, cross_gram
from camid_gpu.cluster.threshold import PairThreshold
from camid_gpu._shared.jsonio import json_number


def image_similarity(gram: np.ndarray, rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Image-level NCC ``(N, N)`` and the chosen candidate index of each side ``(N, N, 2)``.

    ``gram``: the row Gram; ``rows[i]``: the row indices of image ``i``'s candidates (1 or 2).
    ``S[i, j] = max_{a, b} gram[rows[i][a], rows[j][b]]``; the diagonal is 1.
    """
    n = len(rows)
    width = max((len(r) for r in rows), default=1)
    best = np.full((n, n), -np.inf, dtype=np.float32)
    choice = np.zeros((n, n, 2), dtype=np.int8)
    for a in range(width):
        ra = np.array([r[min(a, len(r) - 1)] for r in rows], dtype=np.int64)
        for b in range(width):
            rb = np.array([r[min(b, len(r) - 1)] for r in rows], dtype=np.int64)
            s = gram[np.ix_(ra, rb)]
            better = s > best
            best = np.where(better, s, best)
            choice[better] = (a, b)
    np.fill_diagonal(best, 1.0)
    return best, choice


def comparisons(rows: Sequence[Sequence[int]]) -> int:
    """Number of rotation-pair comparisons among images with ``len(rows[i])`` candidates each."""
    c = np.array([len(r) for r in rows], dtype=np.float64)
    return int(round((c.sum() ** 2 - (c * c).sum()) / 2))


def refine_comparisons(clusters: int, singles: int, rotations: int, max_rounds: int) -> int:
    """Upper bound of the fingerprint comparisons :func:`refine` can make in one group, from the pair stage's
    outcome only (``clusters`` C and unclustered images S after average linkage), before any is made.

    Each comparison (an NCC against the threshold; the PCE only confirms) tries at most ``rotations`` R
    turns: 2 in a group with portrait frames (a pair with a free cluster is also compared turned 180
    degrees; a portrait image tries both its turns, a landscape one a free cluster turned), else 1. One
    round with ``c <= C`` clusters and ``s <= S`` images makes at most
    ``R * [c(c-1)/2 + (c-2) + (c-3) + ... + 0] <= R (c-1)^2`` merge comparisons (the full matrix, then the
    merged row against the rest after each merge) and ``R * s * c`` attach comparisons. Clusters and images
    only decrease; a round that changes anything merges two clusters or attaches an image, so at most
    ``C - 1 + S`` rounds change and one more ends, and never more than ``max_rounds``:
    ``T = R * min(max_rounds, C + S) * ((C - 1)^2 + C * S)`` (0 with no cluster: nothing is compared).
    """
    c, s, r = int(clusters), int(singles), int(rotations)
    if c < 1 or max_rounds < 1:
        return 0
    return r * min(int(max_rounds), c + s) * ((c - 1) ** 2 + c * s)


def average_linkage(similarity: np.ndarray, linked: np.ndarray, threshold: float) -> tuple[list[list[int]], np.ndarray]:
    """Clusters (lists of image indices, size >= 2, sorted) and scipy's linkage matrix ``Z``.

    ``linked[i, j]``: the pair passed both thresholds. Pairs above the NCC threshold but not linked
    count as similarity 0. Distance ``1 - S``; the dendrogram is cut at ``1 - threshold``.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = similarity.shape[0]
    if n < 2:
        return [], np.zeros((0, 4))
    s = np.where(~linked & (similarity > threshold), 0.0, similarity).astype(np.float64)
    np.fill_diagonal(s, 1.0)
    s = (s + s.T) / 2
    dist = np.clip(1.0 - s, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(dist, checks=False), method="average")
    labels = fcluster(z, t=1.0 - threshold, criterion="distance")
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    clusters = sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])
    return clusters, z


class PairGuard(Protocol):
    """Pairs of images that must never end in one cluster (:class:`camid_gpu.cluster.scene.SceneGuard`)."""

    blocked: np.ndarray  # (N, N) bool

    def touches(self, a: Sequence[int], b: Sequence[int]) -> bool:
        """True when an image of ``a`` and one of ``b`` are such a pair."""


class FingerprintOps(Protocol):
    """What :func:`refine` needs from the run: ML fingerprints of member sets and residual rows."""

    def accumulate(self, members: Sequence[tuple[int, int]]) -> Any:
        """ML sums of images ``(index, candidate)``."""

    def absorb(self, into: Any, other: Any) -> Any:
        """``into`` plus ``other`` (ML sums add)."""

    def fingerprint_row(self, acc: Any) -> np.ndarray:
        """The finished fingerprint of ``acc``, flattened, zero-mean, unit-norm float32 ``(n,)``."""

    def candidates(self, index: int) -> int:
        """Number of rotation candidates (rows) of image ``index``."""

    def image_rows(self, index: int) -> np.ndarray:
        """Normalised residual rows ``(candidates, n)`` of image ``index``."""

    def pce(self, a: np.ndarray, b: np.ndarray) -> float:
        """Zero-shift PCE of two flattened rows (same region)."""

    def turn_row(self, row: np.ndarray) -> np.ndarray:
        """A flattened row of the region turned 180 degrees (the other frame of a portrait image)."""


@dataclass
class Cluster:
    """A cluster during refinement: members ``(image, candidate)``, its ML sums and evidence."""

    members: list[tuple[int, int]]
    acc: Any = None
    row: np.ndarray | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def images(self) -> list[int]:
        return sorted(i for i, _ in self.members)


def _free(cluster: Cluster, ops: FingerprintOps) -> bool:
    """True when every member is a portrait frame (two turns): the cluster's frame is then only known up to a
    half turn (90 and 270 degree frames are 180 apart), and it may meet its camera's other clusters turned."""
    return all(ops.candidates(i) > 1 for i, _ in cluster.members)


def _flip(cluster: Cluster, ops: FingerprintOps) -> None:
    """Put every member of a free cluster in its other turn (the frame turned 180 degrees); new ML sums."""
    cluster.members = [(i, ops.candidates(i) - 1 - k) for i, k in cluster.members]
    cluster.acc = ops.accumulate(cluster.members)
    cluster.row = ops.fingerprint_row(cluster.acc)


def refine(clusters: list[Cluster], singles: list[int], ops: FingerprintOps, threshold: PairThreshold,
           engine: GramEngine, tile: int, max_rounds: int = 20,
           guard: PairGuard | None = None) -> tuple[list[Cluster], list[int], int]:
    """Merge clusters and attach singletons by cluster fingerprints until stable.

    ``threshold``: the refinement stage's (its share of --pfa over :func:`refine_comparisons` of the
    ``clusters`` and ``singles`` given here), never the pair stage's: these comparisons are counted there.
    Returns the clusters, the images left alone and the number of rounds run. Every merge and
    attachment is recorded in the clusters' ``events`` with the NCC and PCE that justified it.
    ``guard``: the group's same-scene pairs; no merge or attachment puts the two images of one together.
    """
    for c in clusters:
        c.acc = ops.accumulate(c.members)
        c.row = ops.fingerprint_row(c.acc)
    singles = list(singles)
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        changed = _merge_clusters(clusters, ops, threshold, engine, tile, guard)
        changed |= _attach_singletons(clusters, singles, ops, threshold, engine, tile, guard)
        if not changed:
            break
    return clusters, singles, rounds


def _merge_clusters(clusters: list[Cluster], ops: FingerprintOps, threshold: PairThreshold, engine: GramEngine,
                    tile: int, guard: PairGuard | None = None) -> bool:
    """Merge the best fingerprint pair above the thresholds, repeatedly; True when anything merged.

    The fingerprint NCC matrix is computed once; after a merge only the merged cluster's row is. A pair
    where either cluster is free (portrait members only) is also compared with one fingerprint turned 180
    degrees; when that turn is the better one, the free cluster's members are put in the other's frame.
    """
    if len(clusters) < 2:
        return False
    free = [_free(c, ops) for c in clusters]

    def scores(fp: np.ndarray, fp_free: bool) -> tuple[np.ndarray, np.ndarray]:
        rows = np.stack([c.row for c in clusters])
        plain = cross_gram(fp, rows, engine, tile).astype(np.float64)
        allowed = np.asarray(free)[None, :] | np.asarray(fp_free)[:, None]
        if not allowed.any():  # no free cluster on either side (landscape frames): no turned products
            return plain, np.zeros(plain.shape, dtype=bool)
        turned = cross_gram(fp, np.stack([ops.turn_row(r) for r in rows]), engine, tile).astype(np.float64)
        turned = np.where(allowed, turned, -np.inf)
        return np.maximum(plain, turned), turned > plain

    s, turn = scores(np.stack([c.row for c in clusters]), np.asarray(free))
    np.fill_diagonal(s, -np.inf)
    _block_same_scene(s, clusters, range(len(clusters)), guard)
    changed = False
    while len(clusters) > 1:
        a, b = sorted(np.unravel_index(int(np.argmax(s)), s.shape))
        if s[a, b] <= threshold.ncc:
            break
        ncc = float(s[a, b])
        other = ops.turn_row(clusters[b].row) if turn[a, b] else clusters[b].row
        pce = ops.pce(clusters[a].row, other)
        if pce <= threshold.pce:
            s[a, b] = s[b, a] = -np.inf  # not confirmed: never this pair again while both last
            continue
        if turn[a, b]:  # one frame for the merged cluster: turn the free one (the merged-in one when both are)
            _flip(clusters[b] if free[b] else clusters[a], ops)
        keep, gone = clusters[a], clusters.pop(b)
        keep.events.append({"kind": "fingerprint-merge", "members_before": keep.images, "merged": gone.images,
                            "ncc": json_number(ncc), "pce": json_number(pce)})
        keep.events.extend(gone.events)
        keep.members += gone.members
        keep.acc = ops.absorb(keep.acc, gone.acc)
        keep.row = ops.fingerprint_row(keep.acc)
        gone_free = free.pop(b)
        free[a] = free[a] and gone_free
        s = np.delete(np.delete(s, b, axis=0), b, axis=1)
        turn = np.delete(np.delete(turn, b, axis=0), b, axis=1)
        fresh, fresh_turn = scores(keep.row[None], np.asarray([free[a]]))
        s[a, :], s[:, a] = fresh[0], fresh[0]
        turn[a, :], turn[:, a] = fresh_turn[0], fresh_turn[0]
        s[a, a] = -np.inf
        _block_same_scene(s, clusters, [a], guard)
        changed = True
    return changed


def _block_same_scene(s: np.ndarray, clusters: list[Cluster], rows: Sequence[int], guard: PairGuard | None) -> None:
    """Set ``s[a, b]`` (and ``s[b, a]``) to -inf for ``a`` in ``rows`` where clusters a and b hold a same-scene
    pair: such a merge would rest on their shared scene."""
    if guard is None or not guard.blocked.any():
        return
    for a in rows:
        for b in range(len(clusters)):
            if b != a and guard.touches(clusters[a].images, clusters[b].images):
                s[a, b] = s[b, a] = -np.inf


def _attach_singletons(clusters: list[Cluster], singles: list[int], ops: FingerprintOps, threshold: PairThreshold,
                       engine: GramEngine, tile: int, guard: PairGuard | None = None) -> bool:
    """Attach each unclustered image to its best cluster fingerprint above the thresholds.

    The unclustered images' rows are read and multiplied ``tile`` at a time (they need not fit in memory).
    A portrait image tries both its turns; a landscape image is also compared with the fingerprint of a free
    cluster (portrait members only) turned 180 degrees, and when it attaches that way the cluster is turned
    to its frame (the landscape frame is the sensor's). An image never attaches to a cluster that holds an image
    of its scene (``guard``), and of two images of one scene only the better one attaches in a round.
    """
    if not clusters or not singles:
        return False
    free = np.array([_free(c, ops) for c in clusters])
    fp_rows = np.stack([c.row for c in clusters])
    turned_rows = np.stack([ops.turn_row(r) for r in fp_rows]) if free.any() else None
    cand = [(i, k) for i in singles for k in range(ops.candidates(i))]
    best: dict[int, tuple[float, int, int, bool]] = {}
    for start in range(0, len(cand), tile):
        part = cand[start:start + tile]
        block = np.stack([ops.image_rows(i)[k] for i, k in part])
        plain = cross_gram(block, fp_rows, engine, tile)
        turned = (cross_gram(block, turned_rows, engine, tile) if turned_rows is not None
                  else np.full_like(plain, -np.inf))
        for (i, k), p_scores, t_scores in zip(part, plain, turned):
            # a portrait image's other turn is the turned comparison already
            t_scores = np.where(free & (ops.candidates(i) == 1), t_scores, -np.inf)
            if guard is not None and guard.blocked[i].any():
                open_ = np.array([not guard.touches([i], c.images) for c in clusters])
                p_scores, t_scores = np.where(open_, p_scores, -np.inf), np.where(open_, t_scores, -np.inf)
            for scores, is_turned in ((p_scores, False), (t_scores, True)):
                c = int(np.argmax(scores))
                if i not in best or scores[c] > best[i][0]:
                    best[i] = (float(scores[c]), c, k, is_turned)
    attached: dict[int, list[tuple[int, int, float, float, bool]]] = {}
    scenes = guard is not None and bool(guard.blocked.any())
    # with same-scene pairs, the stronger of two such images is tried first (else the order of the images)
    for i, (ncc, c, k, is_turned) in (sorted(best.items(), key=lambda item: -item[1][0]) if scenes else best.items()):
        if ncc <= threshold.ncc:
            continue
        if scenes and guard.touches([i], [j for j, *_ in attached.get(c, [])]):
            continue  # an image of its scene attaches to this cluster in this round (a better one)
        fp = ops.turn_row(clusters[c].row) if is_turned else clusters[c].row
        pce = ops.pce(ops.image_rows(i)[k], fp)
        if pce > threshold.pce:
            attached.setdefault(c, []).append((i, k, ncc, pce, is_turned))
    for c, items in attached.items():
        cluster = clusters[c]
        if any(t for *_, t in items):  # landscape images met the cluster turned: turn it to their frame
            _flip(cluster, ops)
            items = [(i, ops.candidates(i) - 1 - k if ops.candidates(i) > 1 else k, ncc, pce, t)
                     for i, k, ncc, pce, t in items if t or ops.candidates(i) > 1]  # a frame contradiction waits
        for i, k, ncc, pce, _ in items:
            cluster.events.append({"kind": "attach", "image": i, "ncc": json_number(ncc), "pce": json_number(pce)})
            cluster.members.append((i, k))
            singles.remove(i)
        cluster.acc = ops.absorb(cluster.acc, ops.accumulate([(i, k) for i, k, *_ in items]))
        cluster.row = ops.fingerprint_row(cluster.acc)
    return bool(attached)


def member_candidates(cluster: list[int], sim_rows: np.ndarray, rows: list[list[int]]) -> list[tuple[int, int]]:
    """For each member, the rotation candidate that agrees best with the members already placed (summed NCC).

    The turns are chosen jointly, so that every member lies in one frame: landscape members (one candidate)
    are placed first; with none, the first member is placed at its last turn (270 degrees: a portrait frame
    stored turned 90 degrees counter-clockwise, as a camera held with its grip up writes it, is then in the
    sensor's frame; the other way round, the whole cluster is a half turn off and ``frame_known`` says so).
    Then, repeatedly, the member
    and turn with the highest summed row NCC against the placed members are placed. (Choosing each member's
    turn on its own does not: a portrait frame turned 90 and one turned 270 degrees are 180 degrees apart, and
    each agrees equally with the other in either of its turns, so independent choices mix the two frames and
    the cluster fingerprint averages a pattern with its own half turn.)
    """
    placed: dict[int, int] = {i: 0 for i in cluster if len(rows[i]) == 1}
    if not placed and cluster:
        placed[cluster[0]] = len(rows[cluster[0]]) - 1
    pending = [i for i in cluster if i not in placed]
    width = max((len(rows[i]) for i in pending), default=1)
    # score[p, a]: summed NCC of pending member p's turn a with the placed members' chosen rows
    cand = np.array([[rows[i][min(a, len(rows[i]) - 1)] for a in range(width)] for i in pending], dtype=np.int64)
    chosen = np.array([rows[j][k] for j, k in placed.items()], dtype=np.int64)
    score = (sim_rows[cand.reshape(-1)][:, chosen].astype(np.float64).sum(axis=1).reshape(len(pending), width)
             if pending else np.zeros((0, width)))
    while pending:
        p, a = np.unravel_index(int(np.argmax(score)), score.shape)
        i = pending.pop(int(p))
        placed[i] = int(a)
        row = rows[i][int(a)]
        cand = np.delete(cand, p, axis=0)
        score = np.delete(score, p, axis=0) + sim_rows[cand, row].astype(np.float64)
    return [(i, placed[i]) for i in cluster]

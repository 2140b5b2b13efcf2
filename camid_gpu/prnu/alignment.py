"""PCE with a separate correlation energy per pixel-grid alignment class, for the scale and crop search
(:mod:`camid_gpu.prnu.search`) where the fingerprint is not resampled: there a JPEG fingerprint and a JPEG
disputed image share an 8 x 8 block grid, whose blocking artefacts raise the correlation's variance at the
shifts that line the grids up (see the search's module notes, "JPEG grids")."""
from __future__ import annotations

import numpy as np

from camid_gpu.backend import Array, Backend
from camid_gpu.config import PEAK_NEIGHBOURHOOD
from camid_gpu.prnu.pce import log10_false_alarm, pce

#: period of the pixel grids (JPEG's 8 x 8 blocks, the 2 x 2 CFA) whose alignment classes get
#: their own correlation energy where the fingerprint is not resampled
GRID_PERIOD = 8


def _circular_near(n: int, start: int, step: int, centre: int, half: int) -> list[int]:
    """Indices ``start, start + step, ... < n`` within circular distance ``half`` of ``centre``."""
    return [i for i in range(start, n, step) if min((i - centre) % n, (centre - i) % n) <= half]


def pce_by_alignment(bk: Backend, corr: Array, shift_range: tuple[int, int], period: int = GRID_PERIOD,
                     neighbourhood: int = PEAK_NEIGHBOURHOOD) -> dict[str, np.ndarray]:
    """PCE of correlation planes ``(N, Hs, Ws)`` with a separate energy per grid-alignment class.

    The shifts ``d`` fall into ``period x period`` classes ``d mod period``, each with its own
    correlation energy (mean square). The peak is the largest ``C[d] / sqrt(energy(class(d)))`` over
    ``0 <= d <= shift_range``; its PCE is ``sign(peak) peak^2 / energy`` with the energy of its own
    class, leaving out the ``neighbourhood`` around the peak (circularly), as in
    :func:`camid_gpu.prnu.pce.pce`. Planes with fewer than 64 samples per class fall back to
    ``prnu.pce.pce``. Returns the same keys as ``prnu.pce.pce``.
    """
    n, hs, ws = corr.shape
    p = int(period)
    if p <= 1 or hs * ws < 64 * p * p:
        return pce(bk, corr, shift_range, neighbourhood)
    sy, sx = int(shift_range[0]), int(shift_range[1])
    if not (0 <= sy < hs and 0 <= sx < ws):
        raise ValueError(f"shift_range {shift_range} must lie within the correlation size {hs}x{ws}")
    squared = corr * corr
    energy = np.empty((n, p, p))
    for i in range(p):
        for j in range(p):
            energy[:, i, j] = bk.to_numpy(bk.mean(squared[:, i::p, j::p], (-2, -1))).reshape(n)
    energy = np.maximum(energy, np.finfo(np.float64).tiny)
    reps = (-(-(sy + 1) // p), -(-(sx + 1) // p))
    weight = np.tile(1.0 / np.sqrt(energy), (1, *reps))[:, :sy + 1, :sx + 1]
    flat = bk.argmax_flat(corr[:, :sy + 1, :sx + 1] * bk.asarray(weight))
    py, px = np.divmod(flat.reshape(n), sx + 1)
    peaks = bk.to_numpy(corr[np.arange(n), py, px]).astype(np.float64).reshape(n)
    half = neighbourhood // 2
    peak_energy = np.empty(n)
    for k in range(n):
        cy, cx = int(py[k]) % p, int(px[k]) % p
        rows = _circular_near(hs, cy, p, int(py[k]), half)
        cols = _circular_near(ws, cx, p, int(px[k]), half)
        count = len(range(cy, hs, p)) * len(range(cx, ws, p))
        near = float(bk.to_numpy(bk.sum(squared[k][rows][:, cols], (-2, -1))).sum()) if rows and cols else 0.0
        total = energy[k, cy, cx] * count
        peak_energy[k] = max(total - near, np.finfo(np.float64).tiny) / max(count - len(rows) * len(cols), 1)
    shifts = (sy + 1) * (sx + 1)
    return {
        "pce": np.sign(peaks) * peaks**2 / peak_energy,
        "peak": peaks,
        "peak_shift": np.stack([py, px], -1),
        "energy": peak_energy,
        "log10_p_fa": log10_false_alarm(peaks, peak_energy, shifts),
        "shifts": np.asarray(shifts),
    }


__all__ = ["GRID_PERIOD", "pce_by_alignment"]

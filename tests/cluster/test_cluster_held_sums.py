"""The refinement's cluster fingerprint sums held within the run's budget, one list for every group of a run:
sums let go are built again from their members, equal to the held ones."""
from __future__ import annotations

import numpy as np
from PIL import Image


def _frames(folder, count=4):
    rng = np.random.default_rng(3)
    pattern = rng.normal(0, 4, (96, 128, 3))
    paths = []
    for i in range(count):
        path = folder / f"f{i}.png"
        Image.fromarray(np.clip(128 + pattern + rng.normal(0, 8, pattern.shape), 0, 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_sums_are_held_within_the_budget_and_rebuilt(tmp_path):
    from camid_gpu.cluster.group_ops import GroupOps
    from camid_gpu.cluster.residuals import prepare_image
    from camid_gpu.config import ClusterParams, RunConfig
    from camid_gpu.engine.context import run_context

    paths = _frames(tmp_path)
    records = [{"path": p, "sha256": prepare_image(p, None).info.sha256, "region": [96, 128], "rows": [n]}
               for n, p in enumerate(paths)]
    ctx = run_context(RunConfig(backend="numpy", progress=False, max_host_memory=4 << 20))  # 1 MiB for the sums
    held: list = []
    one, two = (GroupOps(records, None, ClusterParams(region=None), ctx, held) for _ in range(2))  # two groups
    a = one.accumulate([(0, 0), (1, 0)])
    assert a.held and a.nbytes() == 2 * 3 * 96 * 128 * 8  # two float64 sums of three planes: 576 KiB
    b = two.accumulate([(2, 0)])
    assert b.held and not a.held and held == [b]  # one budget across the groups: the oldest let go
    first = one.fingerprint_row(a)  # built again from its members
    assert a.held and not b.held
    np.testing.assert_array_equal(first, one.fingerprint_row(one.accumulate([(0, 0), (1, 0)])))
    merged = one.absorb(a, one.accumulate([(3, 0)]))
    assert merged.members == [(0, 0), (1, 0), (3, 0)] and not a.held
    np.testing.assert_allclose(merged.fingerprint(), one.accumulate([(0, 0), (1, 0), (3, 0)]).fingerprint(),
                               rtol=1e-5, atol=1e-6)

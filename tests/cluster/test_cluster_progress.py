"""Progress after the residual step: a bar over the cluster stages (each group's pairs, then its refinement)."""
from __future__ import annotations

import os


def test_cluster_stages_have_a_bar(tmp_path, monkeypatch):
    from camid_gpu.cluster import ClusterParams, cluster_images
    from camid_gpu.cluster import run as cluster_run
    from camid_gpu.config import RunConfig
    from camid_gpu.datasets.synthetic import make_dataset

    bars = []
    real = cluster_run.Progress

    class Spy(real):
        def __init__(self, total, label="images", enabled=None):
            super().__init__(total, label, False)
            bars.append(self)

    monkeypatch.setattr(cluster_run, "Progress", Spy)
    data = str(tmp_path / "data")
    make_dataset(data, cameras=2, refs=2, disputed_flat=2, disputed_natural=0, height=96, width=128, workers=1)
    result = cluster_images([os.path.join(data, "disputed")], str(tmp_path / "run"), ClusterParams(),
                            RunConfig(backend="numpy", progress=False))
    assert result["clusters"] is not None
    assert [b.label for b in bars] == ["cluster stages (pairs, then refinement, per group)"]
    assert bars[0].total == bars[0].done == 2  # one group (one frame size): its pair stage and its refinement

"""Blind source clustering: which images share a camera, with no camera at hand.

>>> from camid_gpu.cluster import ClusterParams, cluster_images
>>> result = cluster_images(["seized/"], "RUN", ClusterParams(pfa=1e-6))

Stages (one module each): :mod:`~camid_gpu.cluster.similarity` (NCC of all pairs as a tiled Gram),
:mod:`~camid_gpu.cluster.threshold` (both stages' thresholds from the false-alarm probability, null check),
:mod:`~camid_gpu.cluster.linkage` (average linkage, then merging by cluster fingerprints),
:mod:`~camid_gpu.cluster.run` (the run folder on the engine, in one run context: its jobs are
:mod:`~camid_gpu.cluster.residuals`, :mod:`~camid_gpu.cluster.rows`, :mod:`~camid_gpu.cluster.stages`,
:mod:`~camid_gpu.cluster.group_ops` and :mod:`~camid_gpu.cluster.outputs`), :mod:`~camid_gpu.cluster.dask_gram`
(Gram tiles as Dask tasks, ``--dask``); the HTML report of a clustering run is :mod:`camid_gpu.report.cluster`,
and the parameters (:class:`~camid_gpu.config.ClusterParams`) and their defaults are in :mod:`camid_gpu.config`.
"""
from camid_gpu.cluster.run import cluster_images
from camid_gpu.config import ClusterParams

__all__ = ["ClusterParams", "cluster_images"]

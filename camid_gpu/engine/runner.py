"""The entry points of whole runs, one module per command (re-exported here):

- :mod:`.fingerprinting`: ``camid fingerprint`` (:func:`fingerprint_folder`, :func:`reference_listing`)
- :mod:`.identification`: ``camid identify`` (:func:`identify_files`, :func:`identify_run`)
- :mod:`.evaluation`: ``camid evaluate`` (:func:`evaluate_dataset`)
- :mod:`.residuals`: ``camid residual`` (:func:`residual_files`)

Every run keeps going past bad input: a file that cannot be used gets an error record naming the
path and the reason, and everything already computed is kept (results are appended as they come).
"""
from __future__ import annotations

from camid_gpu.engine.context import DASK_KERNELS
from camid_gpu.engine.evaluation import evaluate_dataset
from camid_gpu.engine.fingerprinting import fingerprint_folder, reference_listing
from camid_gpu.engine.identification import identify_files, identify_run
from camid_gpu.engine.residuals import residual_files

__all__ = ["DASK_KERNELS", "evaluate_dataset", "fingerprint_folder", "identify_files", "identify_run",
           "reference_listing", "residual_files"]

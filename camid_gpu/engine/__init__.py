"""Stage 5, running a batch: :mod:`.scheduler` (memory budgets, ordered worker pool, results writer),
:mod:`.runner` (fingerprint a folder, identify files, evaluate a dataset) and :mod:`.dask` (identification on Dask workers).
"""

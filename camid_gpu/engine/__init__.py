"""Stage 5, running a batch: :mod:`.context` (the run context: backend, memory budgets, workers, Dask or
local, built once per run), :mod:`.scheduler` (chunk sizing, ordered worker pool, results writer),
:mod:`.run_folder` (lock, run.json, resume, manifest), one module per command (:mod:`.fingerprinting`,
:mod:`.identification` with :mod:`.scoring`, :mod:`.evaluation`, :mod:`.residuals`; :mod:`.runner`
re-exports their entry points) and :mod:`.dask` (identification on Dask workers).
"""

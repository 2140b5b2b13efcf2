"""Stage 4, one chunk of work: :mod:`.prepare` (host work: reference folders, dataset layout, disputed
images decoded, rotated and clipped), :mod:`.identify` (fingerprints and identification of a chunk on a
backend, with both methods), :mod:`.records` (the per-image result record, typed once, and its builders) and
:mod:`.kernels` (the fused CUDA kernels of the product, for the run manifest and the selftest); :mod:`.crops` (the
crop rule: which cameras an image is crop-searched in).
"""
